"""GPU throughput of the forward (``mean``) of BCE with logits, BCE and the sigmoid focal loss
(``alpha`` 0.25, ``gamma`` 2, targets in {0, 1}), in GB/s of input read.

Two figures per size:

- **resident**: input and target already on the GPU (``bcers.gpu.asarray``), only the result
  scalar (with the per-workgroup partial sums) comes back;
- **end to end**: NumPy arrays in, uploaded by the call, the scalar out.

GB/s counts the bytes of ``input`` and ``target`` read (8 bytes an element, float32), over the
median time of ``--repeat`` calls after warm-up calls (at least 5 and 0.25 s). The CPU path
on the same NumPy arrays is timed alongside for scale.

    python benches/gpu_bench.py --n 1e6 1e7 1e8
    python benches/gpu_bench.py --n 1e6 --loss focal
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

import bcers

LOSSES = ("logits", "bce", "focal")


def median_seconds(call: Callable[..., Any], args: tuple[Any, ...], repeat: int) -> float:
    # Warm-up: the pipelines, the pool of result buffers, the uploads' transfers (submitted
    # with the first call after them) and the release of their staging memory, which slows
    # the next few calls; at least 5 calls and 0.25 s.
    start = time.perf_counter()
    for i in range(1000):
        call(*args)
        if i >= 4 and time.perf_counter() - start > 0.25:
            break
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        call(*args)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(f: Callable[..., Any], x: Any, y: Any, repeat: int) -> tuple[float, float, float]:
    """Median seconds of ``f`` resident on the GPU, end to end, and on the CPU."""
    dx, dy = bcers.gpu.asarray(x), bcers.gpu.asarray(y)
    resident = median_seconds(f, (dx, dy), repeat)
    del dx, dy

    def end_to_end(x: Any, y: Any) -> Any:
        return f(bcers.gpu.asarray(x), bcers.gpu.asarray(y))

    return resident, median_seconds(end_to_end, (x, y), repeat), median_seconds(f, (x, y), repeat)


def focal_mean(x: Any, y: Any) -> Any:
    return bcers.sigmoid_focal_loss(x, y, alpha=0.25, gamma=2.0, reduction="mean")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n", type=float, nargs="+", default=[1e6, 1e7, 1e8], help="element counts"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per figure")
    parser.add_argument(
        "--loss",
        choices=(*LOSSES, "both", "all"),
        default="all",
        help="which loss (both: logits and bce; all: the three)",
    )
    args = parser.parse_args()

    if not bcers.gpu.is_available():
        try:
            bcers.gpu.adapter_info()
        except RuntimeError as e:
            print(f"no GPU: {e}", file=sys.stderr)
        return 1
    info = bcers.gpu.adapter_info()
    print(
        f"device: {info['name']} ({info['backend']}, {info['device_type']}; "
        f"{info['driver_info']}); {args.repeat} calls per figure, median"
    )
    losses = {"both": ["logits", "bce"], "all": list(LOSSES)}.get(args.loss, [args.loss])
    header = f"{'loss':<7} {'n':>11} {'resident GB/s':>14} {'end-to-end GB/s':>16} {'CPU GB/s':>9}"
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for n in (int(v) for v in args.n):
        for loss in losses:
            if loss == "logits":
                x = rng.standard_normal(n, dtype=np.float32)
                f: Any = bcers.binary_cross_entropy_with_logits
                y = rng.random(n, dtype=np.float32)
            elif loss == "bce":
                x = rng.random(n, dtype=np.float32)
                f = bcers.binary_cross_entropy
                y = rng.random(n, dtype=np.float32)
            else:
                x = 3 * rng.standard_normal(n, dtype=np.float32)
                f = focal_mean
                y = (rng.random(n, dtype=np.float32) < 0.5).astype(np.float32)
            resident, end_to_end, cpu = measure(f, x, y, args.repeat)
            nbytes = 8 * n
            print(
                f"{loss:<7} {n:>11,} {nbytes / resident / 1e9:>14.2f} "
                f"{nbytes / end_to_end / 1e9:>16.2f} {nbytes / cpu / 1e9:>9.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
