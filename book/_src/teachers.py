# %% [markdown]
# # For teachers
#
# This book was written to be taught from: every chapter runs offline on a laptop CPU in a couple of
# minutes, opens with what the student will learn, and ends with exercises whose solutions are hidden
# behind a button. This page gathers what you need to plan a session.
#
# ## How long each chapter takes to run
#
# Measured by `python benchmarks/notebook_times.py`: each chapter executed top to bottom, kernel start
# included, on a 2-core CPU with nothing else running. Reading and discussing takes far longer than
# running; plan 30 to 60 minutes per chapter in class. The right-hand column is the `imagenet` profile
# (the paper's models at 224 px) on one GPU, from `bash scripts/gpu_smoke.sh`: random weights, so only
# its times mean something. On Colab add the first download of the weights and of ImageNette
# (about 2 GB: ViT-L/32's weights alone are 1.2 GB, ImageNette 0.3 GB).

# %% [colab-install]
# %%
import re

import matplotlib.pyplot as plt
from IPython.display import display

from nullspace_utils import plotting
from nullspace_utils.results import read

timing = read("benchmarks/results/notebook_times.json")
gpu = read("benchmarks/results/imagenet_chapters_gpu.json")
gpu_seconds = {entry["notebook"].removeprefix("book/").removesuffix(".ipynb"): entry["seconds"]
               for entry in gpu["chapters"]}
rows = [[name, f"{seconds:.0f} s", f"{gpu_seconds[name]:.0f} s"] for name, seconds in timing["seconds"].items()]
print(f"teaching: {timing['cores']} cores ({timing['cpu']}), torch {timing['torch']}, commit {timing['commit'][:10]}")
print(f"imagenet: one {gpu['gpu']}, torch {gpu['torch']}")
display(plotting.table(rows, ["chapter", "teaching, 2-core CPU", "imagenet, one GPU"]))

# %% [markdown]
# ## What each exercise practises
#
# The table is read from the chapters' sources, so it lists every exercise there is; the column on
# the right is ours.

# %%
practises = {
    "ex-setting-1": "loading your own image at the models' input size and reading a prediction",
    "ex-setting-2": "rank-nullity on the patch embedding's shape, before any code",
    "ex-primer-1": "computing a nullspace from the reduced row echelon form and checking it numerically",
    "ex-primer-2": "why a tall matrix has only the trivial nullspace, and what the SVD says",
    "ex-primer-3": "building and testing the orthogonal projector onto a nullspace",
    "ex-exact-1": "applying the method to another ViT (dimensions, invariance)",
    "ex-exact-2": "why the noise must be aligned with the patch grid",
    "ex-exact-3": "a nullspace restricted to one colour channel (a smaller linear system)",
    "ex-approx-1": "learning noise at the input instead of the tokens, and comparing the two",
    "ex-approx-2": "recognising trivial minima of the objective (shrinking noise)",
    "ex-approx-3": "testing whether learned noise transfers between models",
    "ex-robust-1": "optimising one noise for two models at once",
    "ex-robust-2": "uniform against Gaussian reference noise of equal variance",
    "ex-wm-1": "the watermark on a wider ViT: fewer free dimensions, a fainter mark",
    "ex-wm-2": "breaking the invariance on purpose (clipping, resizing) and measuring it",
    "ex-wm-3": "the solver's accuracy against its iteration budget",
    "ex-fool-1": "freeing another colour channel: the counting of equations and unknowns",
    "ex-fool-2": "occlusion windows aligned with patches, and why the maps then agree",
    "ex-fool-3": "an over-determined system: least squares and its residual",
    "ex-fingerprint-1": "the noise amplitude against rounding in derived copies",
    "ex-fingerprint-2": "the label test's bracket width: robustness against false positives",
    "ex-fingerprint-3": "averaging repeated queries against a randomised defence",
}
exercise = re.compile(r"```\{exercise\} (.+)\n# :label: (\S+)")
rows, found = [], set()
for line in read("_toc.yml", text=True).splitlines():
    name = line.strip().removeprefix("- file: book/")
    if not line.strip().startswith("- file: book/") or "/" in name:  # chapters only, not the API pages
        continue
    source = read(f"book/_src/{name}.py", text=True, missing_ok=True)
    if source is not None:
        for title, label in exercise.findall(source):
            found.add(label)
            rows.append([name, title, practises.get(label, "**not described yet**")])
missing = found - set(practises)
display(plotting.table(rows, ["chapter", "exercise", "practises"]))
print(f"{len(rows)} exercises; without a description here: {sorted(missing) or 'none'}")

# %% [markdown]
# ## Running the book offline in a classroom
#
# Everything in the default `teaching` profile runs without a network: the images are drawn by code,
# the six models and the fingerprint chapter's three extra ones ship with the library (about 27 MB), and the site serves its own MathJax.
#
# 1. **Prepare once, with internet.** On one machine, `make book` creates `.venv`, installs the pinned
#    requirements and builds the site. To install on machines without internet later, keep the
#    wheels: `.venv/bin/pip download -r requirements.txt -d wheels` (6.4 GB, most of it torch and its
#    CUDA libraries; `requirements.txt` reads `constraints.txt`, so these are exactly the tested versions).
# 2. **Install on each student machine** (Linux, Python 3.11, x86-64), in a copy of the repository:
#    `python3 -m venv .venv && .venv/bin/pip install --no-index --find-links wheels -r requirements.txt`
#    (about 2 minutes, 6.2 GB; we ran these two commands as written, in a fresh clone).
# 3. **Serve the site** to the room from one machine: `python3 -m http.server -d _build/html 8000`;
#    students open `http://<that machine>:8000`. Or open `_build/html/index.html` directly.
# 4. **Run the chapters** with `.venv/bin/jupyter lab book/`. Each notebook starts from a clean state
#    and takes the times above; `make test` checks everything in 10 to 15 minutes on two cores.
#
# Colab needs internet but no installation: the rocket button on each chapter opens it there, and the
# notebook's first (hidden) cell installs the library.
#
# ## Suggested sessions
#
# | session | chapters | prerequisites |
# |---|---|---|
# | 1. Linear algebra in a network | {doc}`setting`, {doc}`primer`, {doc}`exact_nullspace` | rank, SVD, PyTorch basics |
# | 2. Beyond the linear part | {doc}`approximate`, {doc}`robustness` | gradient descent |
# | 3. Applications | {doc}`watermark`, {doc}`fooling`, {doc}`fingerprint` | sessions 1 and 2; for fooling, what saliency maps are |
#
# The {doc}`reproducibility` page lists every claim of the paper with our verdict: a good starting
# point for a discussion of what "reproduced" means.
