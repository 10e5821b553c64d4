"""The peer for benches/search.rs: numpy brute force over the same vectors.

Matrix-vector product (BLAS) + argpartition for the top 10 + a sort of those 10,
the usual way to do exact search in numpy. Threads come from OMP_NUM_THREADS /
OPENBLAS_NUM_THREADS, set by the caller.
"""
import sys
import time

import numpy as np

vectors, queries, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])
X = np.fromfile(vectors, dtype="<f4").reshape(-1, dim)
Q = np.fromfile(queries, dtype="<f4").reshape(-1, dim)
k = 10


def search(q):
    s = X @ q
    top = np.argpartition(-s, k)[:k]
    return top[np.argsort(-s[top])]


search(Q[0])
times = []
for q in Q:
    t = time.perf_counter()
    search(q)
    times.append((time.perf_counter() - t) * 1e3)
ms = float(np.median(times))
print(f"numpy  f32: {ms:8.2f} ms/query  {X.shape[0] / ms / 1e3:6.1f} M vectors/s  {X.nbytes / X.shape[0]:5.0f} MB per 1M entries")
print(f"numpy_ms {ms}")
