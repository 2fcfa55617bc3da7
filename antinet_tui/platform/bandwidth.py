"""Streaming memory bandwidth as numpy sees it: the ceiling for single-stream decode.

Decode reads every weight once per token, so tokens/s <= read bandwidth / weight bytes.
The measure is a STREAM-style read: `np.add.reduce` over a buffer far larger than the
caches, split across N Python threads (numpy releases the GIL inside the reduction).
Best of several repetitions, as STREAM reports.
"""

from __future__ import annotations

import threading
import time

import numpy as np


def read_bandwidth_gbs(threads: int, size_mib: int = 512, repeats: int = 7) -> float:
    buffer = np.ones(size_mib * 2**20 // 4, dtype=np.float32)  # touched: pages resident
    parts = np.array_split(buffer, threads)
    best = float("inf")
    for _ in range(repeats):
        barrier = threading.Barrier(threads + 1)
        workers = [threading.Thread(target=lambda p=p, barrier=barrier: (barrier.wait(), np.add.reduce(p)))
                   for p in parts]
        for w in workers:
            w.start()
        barrier.wait()
        started = time.perf_counter()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - started)
    return buffer.nbytes / best / 1e9
