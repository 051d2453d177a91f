"""Streaming against one call: ``LossMetric.update`` over batches of 65,536 elements against
one ``binary_cross_entropy`` call on the whole array (float32, n = 1e7 by default), side by
side, several alternating rounds; prints the medians and their ratio.

    python benches/bench_metrics.py [--n 10000000] [--batch 65536] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import bcers
from bcers.metrics import LossMetric


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=65_536)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random(args.n, dtype=np.float32)
    y = (rng.random(args.n) < 0.5).astype(np.float32)
    loss = bcers.BCELoss()

    def one_call() -> object:
        return bcers.binary_cross_entropy(x, y)

    def streamed() -> object:
        m = LossMetric(loss)
        for i in range(0, args.n, args.batch):
            m.update(x[i : i + args.batch], y[i : i + args.batch])
        return m.compute()

    assert one_call() == streamed(), "the streamed loss differs from the one call's"
    times: dict[str, list[float]] = {"one call": [], "streamed": []}
    for _ in range(args.rounds):
        for name, f in (("one call", one_call), ("streamed", streamed)):
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    one = statistics.median(times["one call"])
    streamed_t = statistics.median(times["streamed"])
    print(
        f"n = {args.n:.0e} float32, batches of {args.batch}, {bcers.get_num_threads()} threads, "
        f"median of {args.rounds} alternating rounds"
    )
    print("| case | ms | ratio |")
    print("|---|---|---|")
    print(f"| one call | {one * 1e3:.1f} | 1.00 |")
    print(
        f"| LossMetric, batches of {args.batch} | {streamed_t * 1e3:.1f} | {streamed_t / one:.2f} |"
    )


if __name__ == "__main__":
    main()
