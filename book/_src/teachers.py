# %% [markdown]
# # For teachers
#
# This book was written to be taught from: every chapter runs offline on a laptop CPU in well under two
# minutes, opens with what the student will learn, and ends with exercises whose solutions are hidden behind a
# button. This page gathers what you need to plan a session; every time on it is measured, and each table says
# how.
#
# **On this page:** how long each chapter runs; every exercise with the number students see, what it practises
# and how long its solution runs; a measured plan for teaching the fine-tuning chapter in one 50-minute session;
# how to run the book in a classroom without internet; and four suggested sessions.
# %% [colab-install]
# %% tags=["hide-input"]
from IPython.display import display

from nullspace_utils import book_pages, plotting, results

timing, timing_note = book_pages.benchmark_file("benchmarks/results/notebook_times.json")
gpu, gpu_note = book_pages.benchmark_file("benchmarks/results/imagenet_chapters_gpu.json")
exercise_time, exercise_note = book_pages.benchmark_file("benchmarks/results/exercise_times.json")
toc, toc_note = results.chapter_file("_toc.yml", text=True)
numbers = book_pages.chapter_numbers(toc) if toc is not None else {}
found = book_pages.exercises(toc) if toc is not None else []  # every exercise of the chapters, in the book's order
practises, practises_note = results.chapter_file("book/_data/exercises.json")  # label -> what it practises (ours)
plan, plan_note = results.chapter_file("book/_data/finetune_plan.json")  # the fine-tuning session, step by step
sessions, sessions_note = results.chapter_file("book/_data/sessions.json")  # each session's chapters and prerequisites
for content, note in [(toc, toc_note), (practises, practises_note), (plan, plan_note), (sessions, sessions_note)]:
    if content is None:
        display(note)  # a file this page reads could not be had (offline, outside the repository): its tables are skipped

# %% [markdown]
# (teachers-chapters)=
# ## How long each chapter takes to run
#
# Measured by `python benchmarks/notebook_times.py`: each chapter executed top to bottom, kernel start
# included, on a 2-core CPU. Reading and discussing takes far longer than running: plan 30 to 60 minutes per
# chapter in class. The right-hand column is the `imagenet` profile (the paper's models at 224 px) on one GPU,
# from `bash scripts/gpu_smoke.sh`, with random weights, so only its times mean something ("not run": the
# fine-tuning chapter reads GPU results there and was not timed). On Colab add the first download of the
# weights and of ImageNette (about 2 GB: ViT-L/32's weights alone are 1.2 GB, ImageNette 0.3 GB).

# %% tags=["hide-input"]
display(timing_note, gpu_note)
if timing is not None and gpu is not None:
    display(plotting.table(book_pages.chapter_time_rows(timing, gpu, numbers),
                           ["chapter", "teaching, 2-core CPU", "imagenet, one GPU"]))

# %% [markdown]
# (teachers-exercises)=
# ## Every exercise: what it practises, how long it takes
#
# Students see each exercise as "Exercise *chapter*.*n*", and so does this table; it is read from the chapters'
# sources, so it lists every exercise there is. What each practises is ours (`book/_data/exercises.json`). The
# solution's run time is measured by `python benchmarks/exercise_times.py`, which runs each chapter and then
# each solution's code in the same kernel. The class time is an estimate, not a measurement: 10 minutes to read,
# try and discuss an exercise, plus three runs of its solution (a first try, a fix, the answer), rounded up to
# 5 minutes.

# %% tags=["hide-input"]
display(exercise_note)
if exercise_time is not None and found and practises is not None:
    display(plotting.table(book_pages.exercise_rows(found, practises, exercise_time),
                           ["exercise", "chapter", "title", "practises", "solution runs", "class time"]))
    print(book_pages.exercise_time_line(exercise_time))

# %% [markdown]
# (teachers-finetune-session)=
# ## The fine-tuning chapter in one 50-minute session
#
# The {doc}`finetune` chapter reads committed results and recomputes one cell of its sweep, so it runs in
# seconds; its first two exercises train models and belong at home. The plan below (`book/_data/finetune_plan.json`)
# gives each step's minutes, our estimate, beside what was measured for it.

# %% tags=["hide-input"]
if timing is not None and exercise_time is not None and found and plan is not None:
    display(plotting.table(book_pages.session_plan_rows(plan, found, timing, exercise_time),
                           ["minutes", "step", "measured"]))
    print(book_pages.homework_line(plan, found, exercise_time))

# %% [markdown]
# ## Running the book offline in a classroom
#
# Everything in the default `teaching` profile runs without a network: the images are drawn by code,
# the six models and the fingerprint chapter's three extra ones ship with the library (about 27 MB), and the
# site serves its own MathJax.
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
#    and takes the times above.
#
# Colab needs internet but no installation: the rocket button on each chapter opens it there, and the
# notebook's first (hidden) cell installs the library.
#
# (teachers-sessions)=
# ## Suggested sessions
#
# Four sessions, each a group of chapters that builds on the one before (`book/_data/sessions.json`; every
# chapter is in one). The class time is the plan of 30 to 60 minutes per chapter from the top of this page;
# the run time is the measured time of the session's notebooks on the 2-core CPU (students running them
# alongside the discussion).

# %% tags=["hide-input"]
if timing is not None and sessions is not None:
    display(plotting.table(book_pages.session_rows(sessions, timing),
                           ["session", "chapters", "class time", "run time (CPU)", "prerequisites"]))

# %% [markdown]
# Sessions 1 and 3 each fill an afternoon (three chapters); session 2 fits a double lesson, session 4 (beyond the
# paper: the authors' follow-up, tested) a single one, as planned above. Each chapter's exercises can be set as
# homework between sessions.
#
# The {doc}`reproducibility` page lists every claim of the paper with our verdict: a good starting
# point for a discussion of what "reproduced" means.
