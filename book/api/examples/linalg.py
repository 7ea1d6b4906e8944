import numpy as np
import torch

from nullspace_utils import linalg

matrix = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])  # rank 1: the second row is twice the first
sigma = linalg.singular_values(matrix)  # float64, largest first
assert np.allclose(sigma, [np.sqrt(70), 0.0])  # [8.37, ~5e-16]: one non-zero singular value
assert linalg.default_rtol(matrix.shape) == 3 * np.finfo(np.float64).eps  # max(m, n) * eps: below it counts as 0
assert linalg.rank(matrix) == 1 and linalg.nullity(matrix) == 2  # rank + nullity = 3 columns
basis = linalg.nullspace(matrix)  # orthonormal columns spanning {v : matrix @ v = 0}
assert basis.shape == (3, 2) and np.allclose(matrix @ basis, 0) and np.allclose(basis.T @ basis, np.eye(2))
projector = linalg.nullspace_projector(matrix)  # P = basis @ basis.T, and P @ P = P
assert projector.shape == (3, 3) and np.allclose(projector, basis @ basis.T)
assert np.allclose(projector @ projector, projector)
v = np.array([1.0, 1.0, 1.0])
projected = linalg.project_onto_nullspace(matrix, v)  # P @ v: the part of v that the matrix cannot see
assert np.allclose(projected, projector @ v) and np.allclose(matrix @ projected, 0)
assert np.allclose(matrix @ v, matrix @ (v - projected))  # so the matrix sees v and v - P @ v alike
assert isinstance(linalg.nullspace(torch.from_numpy(matrix)), torch.Tensor)  # torch in, torch out
rows = np.array([[1.0, 1.0, 1.0], [0.0, 3.0, -1.0]])  # two vectors as the rows of one array
seen, hidden = linalg.split_by_nullspace(matrix, rows)  # per row: x - P x (what the matrix sees) and P x
assert np.allclose(seen + hidden, rows) and np.allclose(hidden[0], projected)
assert np.allclose(matrix @ hidden.T, 0) and np.allclose(matrix @ seen.T, matrix @ rows.T)
