# The README's two commands are `make book` and `make test`; the rest are their parts.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
NOTEBOOKS = $(shell $(PYTHON) scripts/toc_notebooks.py)

.PHONY: install book book-check test unit nbval clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

PROFILE ?= teaching

# Renders the committed (nbval-checked) notebook outputs; -W -n: any warning fails the build.
# `make book PROFILE=imagenet` executes a copy of the chapters under that profile instead
# (scripts/build_profile.py; needs the profile's weights and data) and builds it in _build/profile-imagenet.
book: $(STAMP)
ifeq ($(PROFILE),teaching)
	rm -rf _build/html _build/.doctrees
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book is built: open $(CURDIR)/_build/html/index.html"
else
	$(PY) scripts/build_profile.py $(PROFILE)
endif

unit: $(STAMP)
	$(PY) -m pytest tests

# Re-executes every notebook named in _toc.yml and compares its outputs with the committed ones.
nbval: $(STAMP)
	$(PY) -m pytest --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg --ignore=_build $(NOTEBOOKS)

test: unit nbval book

clean:
	rm -rf _build
