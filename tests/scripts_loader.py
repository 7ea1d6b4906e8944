"""Import a file of scripts/ or benchmarks/ (not packages) as a module, for the tests of those scripts."""
import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str, folder: Path = SCRIPTS) -> ModuleType:
    """``folder/name.py`` as a module (``folder``: scripts/ unless given, e.g. benchmarks/)."""
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
