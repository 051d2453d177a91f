"""Times two builds of bcers in one process, call after call: the fairest side-by-side on a
shared machine, where load changes from second to second and runs in separate processes
(``compare_builds.py``) see different loads.

    python scripts/compare_in_process.py OLD_PACKAGE_DIR NEW_PACKAGE_DIR
        [--op forward|logits|value_and_grad|logits_value_and_grad] [--labels soft|hard]
        [--reduction mean|sum|none] [--n 1e7] [--threads 2] [--rounds 11]

``OLD_PACKAGE_DIR`` and ``NEW_PACKAGE_DIR`` are installed ``bcers`` package directories (for
example ``ENV/lib/python3.11/site-packages/bcers`` of two environments). Each is imported
under a name of its own (``bcers_old``, ``bcers_new``; see ``_builds.py``). Each round times a
batch of calls of each build in turn (batches of about 2e8 elements, at most 20,000 calls);
the script prints each build's median and fastest batch per call and their ratios to the old
build's.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _builds import stage  # scripts/_builds.py, beside this file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument(
        "--op",
        default="forward",
        choices=["forward", "logits", "value_and_grad", "logits_value_and_grad"],
    )
    parser.add_argument("--labels", default="soft", choices=["soft", "hard"])
    parser.add_argument("--reduction", default="mean", choices=["mean", "sum", "none"])
    parser.add_argument("--n", type=float, default=1e7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()

    staging, builds = stage({"old": args.old, "new": args.new}, "bcers-ab-")
    try:
        for build in builds.values():
            build.set_num_threads(args.threads)

        n = int(args.n)
        rng = np.random.default_rng(0)
        x = rng.uniform(1e-6, 1 - 1e-6, n).astype(np.float32)
        if args.labels == "hard":
            y = (rng.random(n) < 0.5).astype(np.float32)
        else:
            y = rng.random(n).astype(np.float32)

        r = args.reduction

        def call(b: Any) -> object:
            if args.op == "forward":
                return b.binary_cross_entropy(x, y, reduction=r)
            if args.op == "logits":
                return b.binary_cross_entropy_with_logits(x, y, reduction=r)
            if args.op == "value_and_grad":
                return b.binary_cross_entropy_value_and_grad(x, y, reduction=r)
            return b.binary_cross_entropy_with_logits_value_and_grad(x, y, reduction=r)

        reps = max(1, min(int(2e8 / n), 20_000))
        times: dict[str, list[float]] = {name: [] for name in builds}
        for _ in range(args.rounds):
            for name, b in builds.items():
                call(b)
                t0 = time.perf_counter()
                for _ in range(reps):
                    call(b)
                times[name].append((time.perf_counter() - t0) / reps)
        old_median, old_min = statistics.median(times["old"]), min(times["old"])
        print(
            f"{args.op}, {r}, {args.labels} labels, n = {n:.0e} float32, {args.threads} threads, "
            f"{args.rounds} rounds of {reps} calls per build, alternating in one process"
        )
        print("| build | median us | fastest us | median ratio | fastest ratio |")
        print("|---|---|---|---|---|")
        for name, t in times.items():
            median, fastest = statistics.median(t), min(t)
            print(
                f"| {name} | {median * 1e6:.2f} | {fastest * 1e6:.2f} | "
                f"{median / old_median:.3f} | {fastest / old_min:.3f} |"
            )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    main()
