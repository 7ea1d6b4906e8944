import numpy as np

from nullspace_utils import linalg

matrix = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])  # rank 1: two equal rows up to a factor
basis = linalg.nullspace(matrix)  # (3, 2): orthonormal columns spanning {v : matrix @ v = 0}
print(linalg.rank(matrix), linalg.nullity(matrix))  # 1 2  (rank + nullity = 3 columns)
assert np.allclose(matrix @ basis, 0)
projected = linalg.project_onto_nullspace(matrix, np.array([[1.0], [1.0], [1.0]]))
assert np.allclose(matrix @ projected, 0)
