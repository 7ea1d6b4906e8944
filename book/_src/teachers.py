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
# its times mean something ("not run": the fine-tuning chapter reads GPU results there and was not timed). On Colab add the first download of the weights and of ImageNette
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
rows = [[name, f"{seconds:.0f} s", f"{gpu_seconds[name]:.0f} s" if name in gpu_seconds else "not run"]
        for name, seconds in timing["seconds"].items()]
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
    "ex-setting-1": "drawing an image of a chosen class, classifying it, and testing a rotation",
    "ex-setting-2": "rank-nullity on the patch embedding's shape, before any code",
    "ex-primer-1": "a nullspace basis by hand, checked against the SVD-based one (unique up to scale)",
    "ex-primer-2": "a matrix with more outputs than inputs, and what it means for a ViT with d ≥ 3r²",
    "ex-primer-3": "the orthogonal projector onto a nullspace: its properties, checked numerically",
    "ex-exact-1": "repeating the invariance check on a wider ViT with a smaller nullspace",
    "ex-exact-2": "noise shifted off the patch grid, and why the invariance needs alignment",
    "ex-exact-3": "the nullspace of one colour channel's columns, model by model",
    "ex-approx-1": "variance: repeating a learned noise over seeds before calling a difference",
    "ex-approx-2": "telling a real gain from a trivial minimum (a noise that shrinks): comparing at equal energy",
    "ex-approx-3": "reading the error of a token-noise transfer, and designing a fair transfer test",
    "ex-robust-1": "optimising one noise for two models at once, judged against its shuffled copy",
    "ex-robust-2": "variance over seeds: does the shape of a noise's distribution (Gaussian, uniform) matter at equal RMS",
    "ex-robust-3": "what a ViT sees of a noise: its row-space part, by construction as harmful as the whole",
    "ex-wm-1": "the watermark on a wider ViT: quality (objective, PSNR) against the nullspace dimension",
    "ex-wm-2": "lossy compression (JPEG) of a watermarked image, compared with 8-bit rounding",
    "ex-wm-3": "the solver's objective against its iteration budget, and what the budget cannot change",
    "ex-fool-1": "the disguise through another channel's columns: tint and share of out-of-range values",
    "ex-fool-2": "predicting from the patch grid which occlusion windows see the disguise",
    "ex-fool-3": "an over-determined system: the least-squares residual and how many free channels it would take",
    "ex-fool-4": "where LRP carried to the pixels sees the disguise, argued from its last propagation step",
    "ex-fingerprint-1": "choosing the noise amplitude: a rounded copy against an unrelated model",
    "ex-fingerprint-2": "the label test's bracket width: robustness against false positives",
    "ex-fingerprint-3": "averaging repeated queries against a randomised defence",
    "ex-ft-1": "a third control for an augmentation: the learned noise's shuffled copy, same values and energy",
    "ex-ft-2": "testing a stated explanation (label smoothing) for a measured loss of adversarial accuracy",
    "ex-ft-3": "reading a corruption benchmark by family, and predicting which family token noise can help",
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
# Four sessions, each a group of chapters that builds on the one before. The class time below is the
# plan of 30 to 60 minutes per chapter from the top of this page; the run time is the measured time of
# the session's notebooks on the 2-core CPU (students running them in parallel with the discussion).

# %%
sessions = [
    ("1. Linear algebra in a network", ["setting", "primer", "exact_nullspace"], "rank, SVD, PyTorch basics"),
    ("2. Beyond the linear part", ["approximate", "robustness"], "gradient descent"),
    ("3. Applications", ["watermark", "fooling", "fingerprint"],
     "sessions 1 and 2; for fooling, what saliency maps are"),
    ("4. Beyond the paper", ["finetune"], "session 2; cross-entropy training, what an adversarial attack is"),
]
rows = [[title, ", ".join(chapters), f"{30 * len(chapters)}–{60 * len(chapters)} min",
         f"{sum(timing['seconds'][name] for name in chapters) / 60:.0f} min", needs]
        for title, chapters, needs in sessions]
display(plotting.table(rows, ["session", "chapters", "class time", "run time (CPU)", "prerequisites"]))
print("every chapter in a session:", sorted(name for _, chapters, _ in sessions for name in chapters)
      == sorted(name for name in timing["seconds"] if name not in ("benchmarks",)))

# %% [markdown]
# Sessions 1 and 3 each fill an afternoon (three chapters); session 2 fits a double lesson, session 4 (beyond the
# paper: the authors' follow-up, tested) a single one. Each
# chapter's exercises (the table above) can be set as homework between sessions.
#
# The {doc}`reproducibility` page lists every claim of the paper with our verdict: a good starting
# point for a discussion of what "reproduced" means.
