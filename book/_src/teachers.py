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
from IPython.display import display

from nullspace_utils import book_pages, plotting
from nullspace_utils.results import read

timing = read("benchmarks/results/notebook_times.json")
gpu = read("benchmarks/results/imagenet_chapters_gpu.json")
print(f"teaching: {timing['cores']} cores ({timing['cpu']}), torch {timing['torch']}, commit {timing['commit'][:10]}")
print(f"imagenet: one {gpu['gpu']}, torch {gpu['torch']}")
display(plotting.table(book_pages.chapter_time_rows(timing, gpu),
                       ["chapter", "teaching, 2-core CPU", "imagenet, one GPU"]))

# %% [markdown]
# ## What each exercise practises
#
# The table is read from the chapters' sources, so it lists every exercise there is; the column on
# the right is ours.

# %%
practises = book_pages.page_data("exercises")  # book/_data/exercises.json: label -> what it practises
found = book_pages.exercises()  # every exercise in the chapters' sources, in the book's order
rows = [[exercise.chapter, exercise.title, practises.get(exercise.label, "**not described yet**")]
        for exercise in found]
missing = {exercise.label for exercise in found} - set(practises)
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
sessions = book_pages.page_data("sessions")  # book/_data/sessions.json: title, chapters, prerequisites
display(plotting.table(book_pages.session_rows(sessions, timing),
                       ["session", "chapters", "class time", "run time (CPU)", "prerequisites"]))
print("every chapter in a session:", sorted(name for session in sessions for name in session["chapters"])
      == sorted(name for name in timing["seconds"] if name not in ("benchmarks",)))

# %% [markdown]
# Sessions 1 and 3 each fill an afternoon (three chapters); session 2 fits a double lesson, session 4 (beyond the
# paper: the authors' follow-up, tested) a single one. Each
# chapter's exercises (the table above) can be set as homework between sessions.
#
# The {doc}`reproducibility` page lists every claim of the paper with our verdict: a good starting
# point for a discussion of what "reproduced" means.
