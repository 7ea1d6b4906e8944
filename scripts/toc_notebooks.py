"""Print the notebooks named in _toc.yml, one per line (used by `make nbval`)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def notebooks(root: Path = ROOT) -> list[Path]:
    """The chapters of ``root/_toc.yml`` that are notebooks, in book order, as paths under ``root``."""
    toc = root / "_toc.yml"
    found = []
    for name in re.findall(r"file:\s*(\S+)", toc.read_text()):
        path = root / (name if name.endswith(".ipynb") else name + ".ipynb")
        if path.exists():
            found.append(path)
    return found


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    for path in notebooks(root):
        print(path.relative_to(root))
