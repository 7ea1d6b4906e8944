# The README's two commands are `make book` and `make test`; the rest are their parts.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
NOTEBOOKS = $(shell $(PYTHON) scripts/toc_notebooks.py)

.PHONY: install book book-check test lint unit nbval site-test outside chromium publish clean

install: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || { $(PYTHON) scripts/check_disk.py $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

PROFILE ?= teaching

# matplotlib's font cache lives in the checkout, built from this venv's own fonts: a cache in ~/.cache
# written by another venv (or by a process whose venv was being deleted) lists fonts that are not there,
# and every figure then prints 'findfont' warnings to stderr, which nbval counts as a changed output.
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib

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

# Lint and type check, configured in pyproject.toml: ruff (pyflakes, import order, bugbear) on the library,
# the chapters' sources (book/_src), tests, scripts, benchmarks and the API examples; mypy on the library.
# Seconds, so it runs first.
lint: $(STAMP)
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy nullspace_utils

unit: $(STAMP)
	$(PY) -m pytest tests --ignore=tests/site

# Re-executes every notebook named in _toc.yml and compares its outputs with the committed ones, twice:
# as this machine runs by default, then with other CPU kernels (torch's and MKL's AVX2 paths instead of
# AVX-512) and one thread instead of several. An output that only holds on the machine that executed the
# notebook (rounding-level digits, backend-dependent int8 or float16 results) fails the second run even
# where CI's CPU happens to match that machine's. Either run failing fails `make test`.
NBVAL = $(PY) -m pytest --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg --ignore=_build $(NOTEBOOKS)
OTHER_KERNELS = ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

nbval: $(STAMP)
	$(NBVAL)
	@echo "nbval again, under other kernels and one thread: $(OTHER_KERNELS)"
	env $(OTHER_KERNELS) $(NBVAL)

# Every page of the built site in headless Chromium (Debian's package; Playwright never downloads a
# browser): console errors, images, maths, links, Colab/download buttons, search; screenshots in
# _build/screenshots/.
site-test: $(STAMP) chromium
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest tests/site

CHROMIUM ?= /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium (apt)"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  $(if $(filter 0,$(shell id -u)),,sudo) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Every chapter of _toc.yml executed as a reader outside the checkout runs it (#32): the package installed from a
# copy of the checkout into a fresh venv, from pyproject.toml's dependencies with constraints.txt as the lock (the
# wheels kept in .cache/wheels, so only the first run downloads), then each chapter run from a folder outside the
# checkout with the network off (unshare -rn) and an empty cache; a chapter that raises fails it.
outside: $(STAMP)
	$(PY) scripts/outside_checkout.py

test: lint unit nbval book site-test outside

# Publish _build/html to the gh-pages branch (what .github/workflows/book.yml does on GitHub).
publish: book
	$(VENV)/bin/ghp-import --no-jekyll --force --push _build/html

clean:
	rm -rf _build
