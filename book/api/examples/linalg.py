import numpy as np

from nullspace_utils import linalg

matrix = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])  # rank 1: two equal rows up to a factor
print(linalg.singular_values(matrix))  # [8.37, ~5e-16]: one non-zero singular value
print(linalg.default_rtol(matrix.shape))  # max(2, 3) * machine epsilon: smaller singular values count as 0
print(linalg.rank(matrix), linalg.nullity(matrix))  # 1 2  (rank + nullity = 3 columns)
basis = linalg.nullspace(matrix)  # (3, 2): orthonormal columns spanning {v : matrix @ v = 0}
assert np.allclose(matrix @ basis, 0)
projector = linalg.nullspace_projector(matrix)  # (3, 3): P = basis @ basis.T, P @ P = P
assert np.allclose(projector @ projector, projector)
projected = linalg.project_onto_nullspace(matrix, np.array([[1.0], [1.0], [1.0]]))  # P @ v
assert np.allclose(matrix @ projected, 0)
