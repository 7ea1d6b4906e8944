"""Print the notebooks named in _toc.yml, one per line (used by `make nbval`)."""
import re
from pathlib import Path

toc = Path(__file__).resolve().parent.parent / "_toc.yml"
for name in re.findall(r"file:\s*(\S+)", toc.read_text()):
    path = Path(name if name.endswith(".ipynb") else name + ".ipynb")
    if (toc.parent / path).exists():
        print(path)
