import numpy as np
import torch

from nullspace_utils import linalg

matrix = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])  # rank 1: row 2 is twice row 1
sigma = linalg.singular_values(matrix)  # float64, largest first: [8.37, ~5e-16]
tolerance = linalg.default_rtol(matrix.shape)  # max(m, n) * eps: relative to sigma[0], below is 0
assert linalg.rank(matrix) == 1 and linalg.nullity(matrix) == 2  # rank + nullity = 3 columns
basis = linalg.nullspace(matrix)  # orthonormal columns spanning {v : matrix @ v = 0}
assert basis.shape == (3, 2) and np.allclose(matrix @ basis, 0)
projector = linalg.nullspace_projector(matrix)  # P = basis @ basis.T
v = np.array([1.0, 1.0, 1.0])
projected = linalg.project_onto_nullspace(matrix, v)  # P v: the part of v the matrix cannot see
assert np.allclose(matrix @ v, matrix @ (v - projected))  # so it sees v and v - P v alike
rows = np.array([[1.0, 1.0, 1.0], [0.0, 3.0, -1.0]])  # two vectors as rows
seen, hidden = linalg.split_by_nullspace(matrix, rows)  # per row: x - P x and P x
assert np.allclose(seen + hidden, rows)
assert isinstance(linalg.nullspace(torch.from_numpy(matrix)), torch.Tensor)  # torch in, torch out
