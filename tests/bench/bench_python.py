"""The Python side of `mlxd-bench --python`: the 8-byte all_sum (2 float32)
through `import mlxd`, timed like bench_client times it (a barrier before
each iteration, the slowest rank's time of each, the median over the
iterations), printed as bench_client prints its results.

Usage (every rank, under mlxctl launch): bench_python.py ITERS WARMUP"""

import sys
import time

import numpy as np

import mlxd


def main():
    iters, warmup = int(sys.argv[1]), int(sys.argv[2])
    g = mlxd.init(strict=True)
    rank, size = g.rank(), g.size()
    x = np.full(2, rank + 1, np.float32)
    times = np.empty(iters)
    all_sum, barrier, clock = mlxd.all_sum, mlxd.barrier, time.perf_counter
    for i in range(warmup + iters):
        barrier(g)
        t0 = clock()
        y = all_sum(x, group=g)
        t1 = clock()
        if i >= warmup:
            times[i - warmup] = (t1 - t0) * 1e6
    want = size * (size + 1) / 2
    if not np.all(y == want):
        sys.exit(f"bench_python: rank {rank}: all_sum gave {y}, expected {want}")
    times = mlxd.all_max(times, group=g)
    if rank == 0:
        print(f"result impl=python op=all_sum bytes=8 ranks={size} iters={iters} "
              f"median_us={np.median(times):.3f} min_us={times.min():.3f}", flush=True)


if __name__ == "__main__":
    main()
