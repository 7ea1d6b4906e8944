# %% [markdown]
# # Primer: the nullspace of a linear map
#
# The whole book rests on one idea from linear algebra. This chapter builds it from scratch, with
# pictures, following §2 of the paper {cite}`nullspace2023` (textbook treatment: {cite}`strang2009`).
#
# **You will learn**
# - what the nullspace of a matrix is, and why adding one of its vectors to an input changes nothing;
# - why it is a subspace (closed under addition and scaling);
# - the rank-nullity theorem, which tells its dimension without computing it;
# - how to compute an orthonormal basis with the SVD, and why a *tolerance* is part of the answer;
# - why the first layer of a vision transformer is exactly such a linear map.
# %% [colab]
# %%
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from nullspace_utils import exact, linalg, models, plotting
from nullspace_utils.studies import claims

rng = np.random.default_rng(0)

# %% tags=[hide-input]
box_rng = np.random.default_rng(1)  # the box's numbers, computed now as the sections below compute theirs
example = box_rng.normal(size=(3, 5))
two_rows = box_rng.normal(size=(2, 3))
near = np.vstack([two_rows, two_rows.sum(axis=0) + 1e-8 * np.array([1.0, -1.0, 0.5])])  # 1e-8 from singular
W_small = exact.patch_embedding_matrix(models.load_model("zoo-vit-s"))
display(claims.findings([
    f"A $3 \\times 5$ matrix sends a {linalg.nullity(example)}-dimensional subspace of its inputs to zero: adding any "
    "vector of it to any input leaves the output exactly as it was ({ref}`see the definition <primer-definition>`).",
    f"Rank-nullity: rank {linalg.rank(example)} + nullity {linalg.nullity(example)} = {example.shape[1]} inputs, so "
    "every matrix with fewer outputs than inputs has a nullspace ({ref}`see the check <primer-rank-nullity>`).",
    f"\"Zero\" needs a tolerance: a matrix $10^{{-8}}$ away from a singular one has rank {linalg.rank(near)} by NumPy's "
    f"default rule and {linalg.rank(near, rtol=1e-6)} with `rtol=1e-6` ({{ref}}`see the table <primer-tolerance>`).",
    f"The first layer of this book's smallest ViT is a {W_small.shape[0]} × {W_small.shape[1]} matrix of rank "
    f"{linalg.rank(W_small)}: {linalg.nullity(W_small)} directions of patch space it cannot see "
    "({ref}`see the last section <primer-vit>`).",
]))

# %% [markdown]
# (primer-definition)=
# ## Definition
#
# A matrix $A$ of shape $m \times n$ maps vectors $x \in \mathbb{R}^n$ to $Ax \in \mathbb{R}^m$. Its
# **nullspace** is the set of inputs it sends to zero,
#
# $$ \operatorname{null}(A) = \{ v \in \mathbb{R}^n : A v = 0 \}. $$
#
# The reason we care: for every input $x$ and every $v$ in the nullspace,
# $A(x + v) = Ax + Av = Ax$. The output cannot tell $x$ and $x + v$ apart, *however large $v$ is*, and
# the same $v$ works for *every* $x$.
#
# The paper's Fig. 1 shows this for three maps. We redraw the first two: a projection onto the
# horizontal axis, and a linear function of two variables.

# %%
projection = np.array([[1.0, 0.0], [0.0, 0.0]])  # keeps x1, drops x2
beta = np.array([[2.0, 1.0]])  # y = 2 x1 + x2
directions = [linalg.nullspace(projection)[:, 0], linalg.nullspace(beta)[:, 0]]

# %% tags=[hide-input] alt="Two panels. Left: points on a vertical line, which differ only along the x2 axis, all project to one and the same point of the x1 axis. Right: the colour map of y = 2 x1 + x2, with two dashed lines along its nullspace direction, each staying inside one band of colour."
plotting.nullspace_walks(projection, beta, directions,
                         titles=["projection onto the $x_1$ axis: null = the $x_2$ axis",
                                 "$y = 2x_1 + x_2$: moving along null$(\\beta)$ keeps $y$"])
plt.show()

# %% [markdown]
# On the right, colour is the output $y$. The dashed lines run along the nullspace direction
# $v \propto (1, -2)$: walking along one never changes the colour.

# %% [markdown]
# ## A subspace
#
# The nullspace contains $0$, and it is closed under addition and scaling: if $Au = 0$ and $Av = 0$
# then $A(u + v) = 0$ and $A(cu) = 0$. So it is a **subspace**, and it has a *basis*: a few vectors
# whose combinations give all of it. `linalg.nullspace` returns an orthonormal basis as the columns of
# a matrix. Let us check the two closure properties on a random $3 \times 5$ matrix.

# %%
A = rng.normal(size=(3, 5))
N = linalg.nullspace(A)
print("basis shape:", N.shape, "(5 inputs, a 2-dimensional nullspace)")
u, v = N @ rng.normal(size=2), N @ rng.normal(size=2)
for label, vector in [("u", u), ("v", v), ("u + v", u + v), ("-3.7 u", -3.7 * u)]:
    print(f"|A ({label})| below 1e-12: {np.linalg.norm(A @ vector) < 1e-12}")
print("columns orthonormal:", np.allclose(N.T @ N, np.eye(2)))

# %% [markdown]
# (primer-rank-nullity)=
# ## Rank-nullity
#
# How large is the nullspace? The **rank** of $A$ is the number of independent directions its output
# can take. The *rank-nullity theorem* says
#
# $$ \operatorname{rank}(A) + \dim \operatorname{null}(A) = n \quad (\text{the number of inputs}). $$
#
# Since the rank is at most $\min(m, n)$, a matrix with **fewer outputs than inputs** ($m < n$)
# always has a nullspace of dimension at least $n - m$. This single fact is the paper's §3: a ViT's
# patch embedding has fewer outputs than inputs. The check below builds matrices of chosen rank and
# compares.

# %%
rows = []
for (m, n), r in [((3, 5), 3), ((5, 3), 3), ((6, 6), 4), ((10, 40), 7), ((96, 768), 96)]:
    M = rng.normal(size=(m, r)) @ rng.normal(size=(r, n))  # rank r by construction
    rows.append([f"{m} × {n}", r, linalg.rank(M), linalg.nullity(M), n])
display(plotting.table(rows, ["shape", "built rank", "rank", "null dim", "n"]))

# %% [markdown]
# A picture in three dimensions: the $1 \times 3$ matrix $A = (1, 1, 1)$ has rank 1, so its nullspace
# is a plane (dimension 2), the plane $x_1 + x_2 + x_3 = 0$. Any point moved within a copy of that
# plane keeps its output $x_1 + x_2 + x_3$.

# %%
row = np.array([[1.0, 1.0, 1.0]])
plane = linalg.nullspace(row)  # (3, 2)

# %% tags=[hide-input] alt="A three-dimensional plot of the plane x1 + x2 + x3 = 0, the nullspace of the row (1, 1, 1), spanned by two arrows inside it, and the row itself as a third arrow at right angles to the plane."
plotting.nullspace_plane(row, plane, title="null$(1\\;1\\;1)$: a plane; coloured: the row, orthogonal to it")
plt.show()

# %% [markdown]
# (primer-tolerance)=
# ## Computing it: the SVD and a tolerance
#
# Write $A = U \Sigma V^\top$ (the singular value decomposition). The columns of $V$ whose singular
# values are zero span the nullspace. In floating point, "zero" has to be decided: a matrix that is
# singular on paper comes out with singular values like $10^{-16}$, and a matrix that is *nearly*
# singular has a tiny but genuine one. `linalg.rank` and `linalg.nullspace` count a singular value as
# zero when it is below `rtol` times the largest, with `rtol` defaulting to $\max(m, n)\,\varepsilon$,
# the rule of `numpy.linalg.matrix_rank` {cite}`harris2020numpy`.
#
# Below, the third row of a $3 \times 3$ matrix is the sum of the first two plus a perturbation of
# size $\delta$. For $\delta = 0$ the matrix is singular. For $\delta = 10^{-8}$ it is not, but a
# tolerance of $10^{-6}$ treats it as if it were.

# %%
base = rng.normal(size=(2, 3))
# the smallest singular value grows in proportion to delta: printed divided by delta, that shows at a glance
rows = []
for delta in [0.0, 1e-12, 1e-8, 1e-3]:
    third = base[0] + base[1] + delta * np.array([1.0, -1.0, 0.5])
    M = np.vstack([base, third])
    smallest = linalg.singular_values(M)[-1]
    ratio = "(sigma < 1e-14)" if delta == 0 else f"{smallest / delta:.2f}"
    rows.append([f"{delta:.0e}", ratio, linalg.rank(M), linalg.rank(M, rtol=1e-6)])
display(plotting.table(rows, ["delta", "smallest sigma / delta", "rank (default)", "rank (rtol=1e-6)"]))

# %% [markdown]
# The tolerance is part of the answer: "the nullspace" of a measured or learned matrix always means
# "the directions it shrinks below a threshold we chose". For the trained ViTs in this book the gap
# is wide (the next chapter shows their singular values), so the default tolerance is safe.
#
# (primer-vit)=
# ## A ViT's first layer is a linear map
#
# The right panel of the paper's Fig. 1 is the teaser for the rest of the book. A ViT cuts an image
# into patches and multiplies each flattened patch by one matrix. For the smallest model of this
# book's zoo, that matrix has 96 rows (the embedding width) and $3 \cdot 16 \cdot 16 = 768$ columns.

# %%
vit = models.load_model("zoo-vit-s")
W = exact.patch_embedding_matrix(vit)
print("patch embedding matrix:", tuple(W.shape))
print("rank:", linalg.rank(W), " nullspace dimension:", linalg.nullity(W))

# %% [markdown]
# A 672-dimensional space of patch patterns that this network cannot see. The next chapter,
# {doc}`exact_nullspace`, turns that into images.
#
# ## Exercises
#
# ```{exercise} A nullspace by hand
# :label: ex-primer-1
# Find, by hand, a basis of the nullspace of $\begin{pmatrix}1 & 2 & 0\\ 0 & 0 & 1\end{pmatrix}$,
# then check it with `linalg.nullspace`. Why is the library's vector a multiple of yours?
# ```
#
# ```{solution} ex-primer-1
# :class: dropdown
# $x_3 = 0$ and $x_1 = -2x_2$, so $(-2, 1, 0)$ spans it. `linalg.nullspace` returns a unit vector,
# $\pm(-2, 1, 0)/\sqrt 5$: a basis is only unique up to scale (and, in higher dimensions, rotation).
# ~~~python
# linalg.nullspace(np.array([[1.0, 2, 0], [0, 0, 1]]))
# ~~~
# ```
#
# ```{exercise} More outputs than inputs
# :label: ex-primer-2
# Draw a random $768 \times 96$ matrix (more outputs than inputs). What is its nullspace dimension?
# What does that say about a ViT whose embedding width is at least its patch size, such as ViT-B/16
# ($d = 768 = 3 \cdot 16^2$)?
# ```
#
# ```{solution} ex-primer-2
# :class: dropdown
# Zero: a random tall matrix has full column rank, so `linalg.nullity` gives 0. A ViT with
# $d \ge 3r^2$ generically has no exact nullspace in its patch embedding; the paper's §4 learns an
# approximate one instead.
# ```
#
# ```{exercise} Projector
# :label: ex-primer-3
# `linalg.nullspace_projector(A)` returns $P = NN^\top$. Check numerically that $P^2 = P$, that
# $AP = 0$, and that $A(x - Px) = Ax$ for a random $x$. Which part of $x$ does $A$ actually see?
# ```
#
# ```{solution} ex-primer-3
# :class: dropdown
# ~~~python
# A = rng.normal(size=(3, 5)); P = linalg.nullspace_projector(A); x = rng.normal(size=5)
# print(np.allclose(P @ P, P), np.allclose(A @ P, 0), np.allclose(A @ (x - P @ x), A @ x))
# ~~~
# $A$ only sees $x - Px$, the part of $x$ in the row space of $A$, orthogonal to the nullspace.
# ```
