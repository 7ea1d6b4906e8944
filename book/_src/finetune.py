# %% [markdown]
# # Beyond the paper: fine-tuning on nullspace noise
#
# The paper's authors follow it up {cite}`liu2025approximate` with a use of the nullspace: fine-tune a ViT on
# images *with* its learned nullspace noise (§4), and it resists corruptions and small attacks better, they
# report on ImageNet. This chapter runs their method on the teaching zoo, beside two baselines that could do
# as well, from three seeds.
#
# **You will learn**
# - how nullspace-noise augmentation works: a noise learned once per round, added to every batch's tokens;
# - why it needs two baselines (plain fine-tuning, and a random noise of the same energy);
# - how to measure robustness with the field's tools: common corruptions {cite}`hendrycks2019benchmarking`
#   from `imagecorruptions` {cite}`michaelis2019imagecorruptions` and PGD {cite}`madry2018pgd` from
#   `torchattacks` {cite}`kim2020torchattacks`;
# - whether fine-tuning keeps, grows or shrinks the model's nullspace, and what carries over from ImageNet.
# %% [colab-finetune]
# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from nullspace_utils import finetune, plotting, results
from nullspace_utils.data import stack_dataset
from nullspace_utils.profiles import get_profile
from nullspace_utils.studies import claims, evidence
from nullspace_utils.studies import finetune as finetune_study

torch.manual_seed(0)
profile = get_profile()

# %% tags=[hide-input]
sweep, note = finetune_study.RESULT.chapter_result(profile.name)
table_c, note_c = finetune_study.CORRUPTIONS_RESULT.chapter_result(profile.name, device="cpu")
if sweep is not None and table_c is not None:
    display(claims.summary(finetune_study.claims(sweep, table_c)))
display(note, note_c)

# %% [markdown]
# ## Three ways to fine-tune, in one table
#
# The zoo's ViT-S is fine-tuned three ways, from three seeds each: with the authors' **nullspace noise** on its
# patch tokens (at two noise sizes, lim 2 and 4), **plain** (the same steps without noise), and with a
# **Gaussian** noise of exactly the nullspace noise's energy. Every model is then judged on clean accuracy,
# common corruptions, PGD attacks and its own nullspace. The box above sums up what the sections below find,
# each line linked to its figure.
#
# **In class.** The chapter fits one 50-minute session: the {ref}`plan on the teachers page
# <teachers-finetune-session>` gives its steps, the exercise to do in class and those to set as homework, with
# their measured run times. The notebook only reads the committed sweep and recomputes one cell of it, so it runs
# in seconds on a laptop CPU.
#
# Every verdict of the chapter for the nullspace method against its two baselines, in one table: the mean
# per-seed difference in percentage points ± its standard deviation where the seeds' ranges separate, "not
# separable" where they overlap. A positive number favours the nullspace-noise model; **(weak)** marks a
# difference smaller than twice its spread (see the clean-accuracy section for why).

# %% tags=[hide-input]
if sweep is not None and table_c is not None:
    display(finetune_study.verdict_table(sweep, table_c))

# %% [markdown]
# ## The idea, and why it follows from §4-§5
#
# The paper's §4 learns a noise $\tilde v$ for a ViT's patch tokens that barely changes its logits (eq. 6:
# minimise $\lVert f(x; \text{tokens} + \tilde v) - f(x) \rVert_2$ over training images, from a uniform
# start). §5 finds that ViTs keep their predictions under such noise far better than under random noise
# of the same size. The follow-up turns this into training. As its code does it (Liu-Hy/NS-ViT,
# {cite}`nsvit_code`), once per epoch:
#
# 1. start a noise from Uniform(-lim, lim) in token units, one value per token entry;
# 2. learn it for the *current* model with eq. 6 (so it is a nullspace-like noise of this model now);
# 3. for every batch of the epoch, add that one noise to the patch tokens (not the class token) and train
#    on the sum of the clean and the noisy cross-entropy.
#
# The picture:

# %% tags=[hide-input] alt="Diagram of one round of nullspace-noise fine-tuning: a noise learned for the current model is added to the patch tokens of every batch, and the model trains on the clean plus the noisy loss"
plotting.finetune_diagram()
plt.show()

# %% [markdown]
# A noise learned to change the logits as little as possible is, by construction, a noise the model
# already nearly ignores. So the noisy loss starts small, and one may wonder what the model can learn
# from it. The authors' answer is that the noise has a large norm: it pushes the model to stay
# insensitive along directions where it is *almost* insensitive, and that insensitivity may generalise
# to corruptions. This is a hypothesis about training, and it needs controls:
#
# - **plain** fine-tuning, the same steps and batches with the clean loss only: is it just more training?
# - **gaussian**: the same schedule with a random Gaussian direction per round, scaled to *exactly* the
#   energy (RMS) of the nullspace noise of the same seed and round: is it the learned direction, or any
#   noise of that size?
#
# The library's `finetune.finetune(model, train, FinetuneConfig(method=...))` runs any of the three on a
# copy of the model; `finetune.DEPARTURES` lists where the book departs from the authors' code and why:

# %%
for departure in finetune.DEPARTURES:
    print("-", departure)

# %% [markdown]
# ## The experiment
#
# The zoo's ViT-S (its validation accuracy is the untuned row of the clean-accuracy table below) is fine-tuned with each method from three
# seeds (the seed sets the batch order, the noise subsets and starts; the three methods of one seed see the
# same batches). Nullspace noise is tried at two lims: 2, where the previous chapter found the learned
# noise keeps nearly every prediction and the uniform start still keeps most, and 4, where uniform noise
# breaks the model and the learned noise does not (the authors' scripts use 1 to 3, in the token units of
# their ViT-B/16, another model with another scale). A first run also tried lim 8; there the round noises
# did not learn (below). The sweep ran on a GPU (the "how this was made" boxes above name it):
#
# ```bash
# bash scripts/finetune_sweep.sh ../sweep python   # ten parts in parallel, merged into finetune.json
# python -m nullspace_utils.experiments finetune-corruptions   # the "-C" set, on a CPU
# ```

# %% tags=[hide-input]
if sweep is not None:
    display(finetune_study.settings_table(sweep, table_c))

# %% [markdown]
# ## Did the noise learn, and how much did it cost the model?
#
# Each round's noise is judged like the previous chapter's: its eq. 6 loss should fall well below that of
# its uniform start. The table gives, per lim, the loss at the first and the last noise step (ranges over
# seeds and rounds), the rate the probe chose, and the noise's RMS in token units (the Gaussian runs
# copy these RMS values round by round).

# %% tags=[hide-input]
first_run, note_first = results.chapter_file("benchmarks/results/finetune_first_gpu_run_lim8.json")
if sweep is not None:
    display(finetune_study.noise_table(sweep))
display(note_first)
if first_run is not None:
    print(finetune_study.first_run_line(first_run))

# %% [markdown]
# At lims 2 and 4 every round's noise learned: its loss fell several-fold within 40 steps, and the noise
# shrank only somewhat from its start (last column against the second). At lim 8 (the first run, kept in `benchmarks/results/`) the loss hardly fell, the
# probe ran to rates far outside the others, and the noise ended larger than its start (the printed RMS
# range against 4.6): that is a failed optimiser, not a nullspace noise, so lim 8 is not part of the
# comparison.
#
# What did each method train on? Clean and noisy training loss over the steps (means over 150-step windows;
# lines are the mean over seeds, bars the range):

# %% tags=[hide-input] alt="Training loss over the steps on a log scale, mean over seeds with their range: (a) the clean loss of every fine-tuning, (b) the noisy loss of the nullspace and the matched-energy Gaussian noise at both lims"
if sweep is not None:
    fig = plotting.method_panels(finetune_study.loss_panels(sweep), size=(3.6, 3.0))
    for ax in fig.axes[:2]:
        ax.set_yscale("log")
    plt.show()

# %% [markdown]
# Panel (b) is the method's mechanism in one picture. At lim 4 the learned noise's loss stays several times
# below that of a random direction of the *same energy*, throughout training; at lim 2 the two noises are
# closer. The nullspace noise is, by design, the gentler of the two noises. Whether gentle is enough to make
# the model more robust is what the rest of the chapter measures.
#
# (finetune-clean)=
# ## Clean accuracy
#
# On 2000 validation images (ranges over the three seeds):

# %% tags=[hide-input]
if sweep is not None:
    display(finetune_study.clean_table(sweep))
    display(finetune_study.verdict_box(sweep, "clean"))
    print(f"chance that two alike methods' 3 seeds separate: {100 * evidence.false_separation_rate(3, 3):.0f} %; "
          f"3 seeds against the one untuned model: {100 * evidence.false_separation_rate(1, 3):.0f} %")

# %% [markdown]
# A difference is called only where the seeds' ranges do not overlap; it is then the mean of the per-seed
# differences ± their standard deviation. How strict is that? If two methods were truly alike, their three
# seeds' ranges would still fail to overlap now and then (the first chance printed above), so among the chapter's
# dozens of verdicts a few may be chance: a difference smaller than twice its spread is marked **(weak)**.
# Against the untuned model, a single model whose "range" is one number, the test is far weaker (the second
# chance printed), so read those verdicts by the size of the difference.
#
# (finetune-corruptions)=
# ## Common corruptions ("-C")
#
# The teaching set's first validation images, each corrupted by the 11 ImageNet-C corruptions that need no
# weather assets (noise, blur and digital ones) at severities 1 to 5, with one seed per image so that every
# model sees the same corrupted images. One validation image under each corruption at severity 3:

# %% tags=[hide-input] alt="One validation image, clean and under each corruption of the set at severity 3"
example = stack_dataset(profile.dataset("val", n=1))[0]
plotting.show_images(*finetune_study.corruption_gallery(example, severity=3), ncols=6, size=1.2)
plt.show()

# %% [markdown]
# Accuracy against severity, averaged over the 11 corruptions (panel a: lim 2 and its baselines; panel b:
# lim 4), then the generated verdicts on mean corruption accuracy (the mean over corruptions and
# severities, the accuracy counterpart of ImageNet-C's unnormalised error), collapsed:

# %% tags=[hide-input] alt="Accuracy against corruption severity, averaged over the corruptions, for the untuned, plain, nullspace-noise and Gaussian models, per seed: (a) lim 2, (b) lim 4"
if sweep is not None and table_c is not None:
    plotting.method_panels(finetune_study.severity_panels(sweep, table_c))
    plt.show()
    display(finetune_study.verdict_box(sweep, "corruptions", table_c))

# %% [markdown]
# Per corruption (mean over severities; ranges over seeds, in %):

# %% tags=[hide-input]
if sweep is not None and table_c is not None:
    display(finetune_study.corruption_table(sweep, table_c))

# %% [markdown]
# (finetune-pgd)=
# ## Adversarial robustness: PGD-L∞
#
# `torchattacks.PGD` with 10 steps of size $2.5\,\epsilon/10$ (Madry's rule), a random start in the
# $\epsilon$-ball, on the first 500 validation images, at $\epsilon$ = 0.5/255, 1/255 and 2/255 (small:
# the zoo was never trained against attacks):

# %% tags=[hide-input] alt="PGD accuracy at each attack radius for the untuned, plain, nullspace-noise and Gaussian models, per seed: (a) lim 2, (b) lim 4"
if sweep is not None:
    plotting.method_panels(finetune_study.pgd_panels(sweep))
    plt.show()
    display(finetune_study.verdict_box(sweep, "pgd"))

# %% [markdown]
# (finetune-nullspace)=
# ## Does fine-tuning change the nullspace?
#
# Two measures per model. **Approximate**: the previous chapter's Fig. 2 point at the encoder, redone
# for each fine-tuned model with the same recipe (rate probe, 200 steps, three noise seeds): the share of
# predictions kept under its own learned noise and under the uniform noise it starts from, at lim 4. (The
# file also holds lim 8. There no model's noise learned, by the book's one learning-failure rule: the line
# under the table gives how far their training loss fell, so lim 8 says nothing about the models.)
# **Exact**: the *untuned* model's exact nullspace noise (§3, at the pixel RMS of Uniform(-0.5, 0.5)) added to
# the fine-tuned model's images. Fine-tuning moves the patch embedding, so this noise could start to leak;
# every model keeps all predictions under its *own* exact nullspace noise by construction.

# %% tags=[hide-input]
if sweep is not None:
    display(finetune_study.nullspace_table(sweep))
    print(finetune_study.last_lim_line(sweep))
    display(finetune_study.verdict_box(sweep, "uniform"))

# %% [markdown]
# The learned noise at lim 4 keeps nearly every prediction for every model, fine-tuned or not: there was
# already an approximate nullspace at that size, and fine-tuning neither destroys nor visibly enlarges it
# (the measure is at its ceiling). The *uniform* column is where the methods part. A model trained on a
# random direction of matched energy (gaussian) becomes much more tolerant of random token noise; the
# nullspace-noise model much less so, plausibly because its training noise was, by design, one it already
# tolerated. The untuned model's exact nullspace noise still leaves the fine-tuned models' predictions
# alone (the last column): fine-tuning at this rate barely moves the patch embedding's nullspace.
#
# ## Recomputed here
#
# One cell of the "-C" table, redone on this machine from the committed seed-0 weights: Gaussian noise at
# severity 3, on the same images. It must agree with the file to within one image per model. Outside a checkout
# the weights are fetched from the repository (checked by sha256); offline, the cell says what it skips.

# %%
if sweep is not None and table_c is not None:
    for line in finetune_study.recomputed_lines(profile, sweep, table_c, corruption="gaussian_noise", severity=3):
        print(line)
else:
    print("skipped: the recomputation needs both result files above (see their notes)")

# %% [markdown]
# ## What the teaching setting says, and what it cannot
#
# On the teaching zoo, at this budget and with three seeds:
#
# - **Corruptions.** Nullspace-noise fine-tuning is not separable from plain fine-tuning at either lim,
#   and the matched-energy Gaussian control beats it at both (the verdicts above; the per-corruption
#   table shows the Gaussian model's gain sits in the noise family). So on "-C" the teaching setting does
#   not reproduce the follow-up's claim; what helps here is noise of that energy, not its nullspace
#   direction.
# - **Attacks.** Every fine-tuning, plain included, *lowers* PGD accuracy against the untuned model at the
#   larger radii. The nullspace models never beat plain fine-tuning; at 1/255 and 2/255 they trail it in
#   all four comparisons (three of them weak), and at lim 2 they also trail the Gaussian control at 1/255
#   (weak). They beat the Gaussian control only at lim 4 and the smallest radius. The Gaussian models beat
#   plain fine-tuning in no PGD comparison that is not weak (the verdicts above): against PGD, neither noise
#   helps here. The zoo was trained with label smoothing and image
#   augmentation, while all three fine-tunings here use plain cross-entropy (the authors' loss) without
#   augmentation (a departure: they augment); that may sharpen the model's confidence. We did not test
#   this explanation ({ref}`ex-ft-2` does).
# - **Clean accuracy.** The nullspace noise is the gentler of the two noises (panel b of the loss
#   figure): it costs no clean accuracy that the seeds can tell from plain fine-tuning, while the Gaussian
#   noise at lim 4 clearly does (at lim 2, weakly).
# - **The nullspace.** Fine-tuning on nullspace noise makes the model a little more tolerant of random
#   token noise than plain fine-tuning (at lim 2 a weak difference), far less than the Gaussian control;
#   the learned-noise match at lim 4 stays at its ceiling, and the exact nullspace of the untuned model
#   still holds.
#
# What does **not** carry over. The authors fine-tune a ViT-B/16 that was already trained for robustness
# (their code loads a DAT checkpoint) on ImageNet at 224 pixels, and evaluate on ImageNet-C and with their own
# attacks (FGSM and AutoAttack options in their code). The teaching set has 10 synthetic classes
# at 112 pixels, so ImageNet-C's severities (set for 224-pixel photos) are harsher here, and a model that
# is 99 % accurate has little room to gain on clean data. The budget is 5 rounds of one pass over 20 000
# images, against their 10 epochs of ImageNet; their noise learning (AdamW, early stop) is replaced by the
# book's `learn_noise`. A null or negative result here does not refute theirs: it says the effect, if any,
# is not large enough to show on a small model, a small budget and three seeds.
#
# ## Under the imagenet profile
#
# The same code runs the paper's own models: `finetune_study.SETTINGS["imagenet"]` fine-tunes timm's ViT-S/32 on
# ImageNette at lim 3 (the top of the authors' range, in this model's token units) for 10 rounds of one pass, and the "-C" set is ImageNette's validation
# images corrupted the same way (`experiments finetune-corruptions --profile imagenet`). It was not run here
# (no ImageNet weights or data on this machine). Its GPU cost, estimated from the H100 step times measured by
# `benchmarks/learned_noise_cost.py` (assumed linear in batch size; a lower bound for the fine-tuning part,
# since a weight update also computes the weights' gradients, which a noise step does not):

# %% tags=[hide-input]
cost, note_cost = results.chapter_file("benchmarks/results/learned_noise_cost_gpu.json")
display(note_cost)
if cost is not None:
    print("\n".join(finetune_study.cost_lines(finetune_study.SETTINGS["imagenet"], cost)))

# %% [markdown]
# Most of it is the nullspace-match yardstick; add data loading and the "-C" set on a CPU. The authors' own
# run, ImageNet-1k for 10 epochs with a ViT-B/16 and noise learned on a tenth of it each epoch, is far larger.
#
# ## Exercises
#
# ```{exercise} A third control: the shuffled noise
# :label: ex-ft-1
# The previous chapters compared a learned noise with its *shuffled* copy (same values, same energy, no
# learned structure). Train three copies of the zoo ViT-S for 100 steps with `finetune.augmentation_loss`:
# one with a learned noise at lim 4, one with its shuffled copy, one with a Gaussian direction of the same
# RMS (`finetune.gaussian_noise`). Compare the noisy loss of the first and the last ten steps. Before you
# run it: which of the two controls do you expect to behave like the Gaussian one, and why?
# ```
#
# ```{solution} ex-ft-1
# :class: dropdown
# ~~~python
# import copy
# import numpy as np
# from torch.utils.data import TensorDataset
# from nullspace_utils import approximate
# vit = profile.load_model("zoo-vit-s")
# train = TensorDataset(*stack_dataset(profile.dataset("train", n=2000)))
# learned = approximate.learn_noise(vit, train, level="encoder", lim=4.0, steps=40, lr=100.0, milestones=(30,),
#                                   batch_size=128, seed=0).noise
# rms = learned.pow(2).mean().sqrt().item()
# noises = {"learned": learned, "shuffled": approximate.shuffle_noise(learned, seed=0),
#           "gaussian": finetune.gaussian_noise(tuple(learned.shape), rms=rms, seed=0)}
# images, labels = train.tensors
# for label, noise in noises.items():
#     model = copy.deepcopy(vit).train()  # a trainable copy; vit stays as it is
#     optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
#     noisy = []
#     for step in range(100):
#         index = torch.randint(len(images), (64,), generator=torch.Generator().manual_seed(step))
#         loss, parts = finetune.augmentation_loss(model, images[index], labels[index], noise)
#         optimiser.zero_grad(); loss.backward(); optimiser.step()
#         noisy.append(parts["noisy_loss"])
#     print(f"{label}: noisy loss, first 10 steps {np.mean(noisy[:10]):.3f}, last 10 {np.mean(noisy[-10:]):.3f}")
# ~~~
# The shuffled copy keeps the learned noise's values and energy but loses its arrangement, so if the learned
# noise is gentle because of its direction, the shuffled copy should cost about as much as the Gaussian one.
# Check that prediction against your numbers, and repeat with `seed=1` before you trust it.
# ```
#
# ```{exercise} Is it the missing label smoothing?
# :label: ex-ft-2
# Every fine-tuned model lost PGD accuracy against the untuned one. Test the explanation offered above:
# train copies of the zoo ViT-S with plain cross-entropy and with `label_smoothing=0.1` (write the loop with
# `torch.nn.functional.cross_entropy`), then compare `finetune.pgd_accuracy` at 2/255 on 200 images with the
# untuned model's on the same images. Use two seeds each before concluding.
# ```
#
# ```{solution} ex-ft-2
# :class: dropdown
# ~~~python
# import copy
# import torch.nn.functional as F
# vit = profile.load_model("zoo-vit-s")
# images, labels = stack_dataset(profile.dataset("train", n=2000))
# val_images, val_labels = stack_dataset(profile.dataset("val", n=200))
# print("untuned", finetune.pgd_accuracy(vit, val_images, val_labels, epsilons=(2 / 255,)))
# for smoothing in (0.0, 0.1):
#     for seed in (0, 1):
#         model = copy.deepcopy(vit).train()
#         optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
#         generator = torch.Generator().manual_seed(seed)
#         for step in range(300):
#             index = torch.randint(len(images), (64,), generator=generator)
#             loss = F.cross_entropy(model(images[index]), labels[index], label_smoothing=smoothing)
#             optimiser.zero_grad(); loss.backward(); optimiser.step()
#         model.eval()
#         print(smoothing, seed, finetune.pgd_accuracy(model, val_images, val_labels, epsilons=(2 / 255,)))
# ~~~
# This is a short run (300 steps at a constant rate on 2000 images, not the sweep's 1565 cosine steps on
# 20 000), so first check that the plain runs lose PGD accuracy at all. If they do and the smoothed runs keep
# the untuned model's, the loss was the cause; if both lose it, look elsewhere (the missing flips and
# rotations, or the extra training).
# ```
#
# ```{exercise} Corruptions by family
# :label: ex-ft-3
# ImageNet-C groups its corruptions into noise, blur and digital families. From `table_c`, compute each
# group's mean accuracy per family and seed. Does nullspace-noise fine-tuning help one family and hurt
# another? Which family would you expect token noise to help with, and why?
# ```
#
# ```{solution} ex-ft-3
# :class: dropdown
# ~~~python
# import numpy as np
# groups = finetune_study.group_runs(sweep["runs"])
# families = {"noise": finetune.CORRUPTIONS[:3], "blur": finetune.CORRUPTIONS[3:7],
#             "digital": finetune.CORRUPTIONS[7:]}
# for group, names in groups.items():
#     print(group, {family: [round(float(np.mean([table_c["models"][name]["per_corruption"][c] for c in members])) * 100, 1)
#                            for name in names] for family, members in families.items()})
# ~~~
# A noise added to every token is closest to the *noise* family (pixel noise reaches the tokens as a
# spread-out perturbation); blurs remove high frequencies, which a token noise never imitates. Compare
# each family's ranges across seeds before reading a difference.
# ```
