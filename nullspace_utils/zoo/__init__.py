"""The teaching zoo: weights (safetensors), ``manifest.json`` and the script that trains them.

Run ``python -m nullspace_utils.zoo --help``. Loading lives in :mod:`nullspace_utils.models`.
"""
