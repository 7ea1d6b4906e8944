"""Regenerate the two claim tables of ``book/reproducibility.md`` from the committed result files
(:mod:`nullspace_utils.studies.claims`); the prose around them is kept as written:

    python scripts/reproducibility_page.py           # rewrite the tables
    python scripts/reproducibility_page.py --check   # exit 1 if the committed page differs from the data
"""

from __future__ import annotations

import argparse
import sys

from nullspace_utils.files import REPOSITORY_ROOT, atomic_write
from nullspace_utils.studies import claims

PAGE = REPOSITORY_ROOT / "book" / "reproducibility.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the page is out of date")
    arguments = parser.parse_args(argv)
    page = PAGE.read_text()
    rendered = claims.render(page)
    if arguments.check:
        if rendered != page:
            print(f"{PAGE} is out of date with the result files: run python scripts/reproducibility_page.py")
            return 1
        return 0
    with atomic_write(PAGE) as temporary:
        temporary.write_text(rendered)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
