"""Thread scaling of bcers (and torch CPU, when installed) on one large input.

For each thread count, the median time of a BCE forward (mean), a BCE-with-logits
value_and_grad (mean), a sigmoid focal loss forward (mean, alpha 0.25, gamma 2, targets in
{0, 1}) and the streaming read of two such arrays (the memory limit: the two arrays read once
by NumPy in as many Python threads, each thread ``np.add.reduce`` of its contiguous slice of
both, as in ``benches/bench.py``), float32, side by side in one process. In brackets: the
speed-up over the first thread count. The last column but one is the BCE forward's time over
the streaming read's (1.00x would be the memory limit).

    python benches/scaling.py --n 1e8 --threads 1 2 4 8 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable

import numpy as np
from bench import StreamRead  # benches/bench.py, beside this file

import bcers
from bcers import _bcers

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

ALPHA, GAMMA = 0.25, 2.0


def median(call: Callable[[], Any], repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1e8)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    n = int(args.n)
    rng = np.random.default_rng(0)
    x = rng.random(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    z = rng.standard_normal(n, dtype=np.float32)
    t01 = (rng.random(n, dtype=np.float32) < 0.5).astype(np.float32)
    stream = StreamRead(x, y)
    print(f"cores: {os.cpu_count()}, n = {n:.0e} float32, SIMD level {_bcers.simd_level()}")
    print(
        "threads | BCE fwd ns/el (x) | logits v&g ns/el (x) | focal fwd ns/el (x) | "
        "stream ns/el (x) | BCE fwd/stream | torch BCE ns/el"
    )
    tx, ty = (torch.from_numpy(x), torch.from_numpy(y)) if torch is not None else (None, None)
    base: dict[str, float] = {}
    for k in args.threads:
        bcers.set_num_threads(k)
        t = {
            "bce": median(lambda: bcers.binary_cross_entropy(x, y), args.repeat),
            "vg": median(
                lambda: bcers.binary_cross_entropy_with_logits_value_and_grad(z, y), args.repeat
            ),
            "focal": median(
                lambda: bcers.sigmoid_focal_loss(z, t01, ALPHA, GAMMA, "mean"), args.repeat
            ),
            "stream": median(stream, args.repeat),
        }
        torch_col = ""
        if torch is not None:
            torch.set_num_threads(k)
            tt = median(
                lambda: torch.nn.functional.binary_cross_entropy(tx, ty), max(3, args.repeat // 2)
            )
            torch_col = f"{tt / n * 1e9:.3f}"
        base = base or t
        cases = ("bce", "vg", "focal", "stream")
        cols = " | ".join(f"{t[c] / n * 1e9:.3f} ({base[c] / t[c]:.2f}x)" for c in cases)
        print(f"{k:7d} | {cols} | {t['bce'] / t['stream']:.2f}x | {torch_col}", flush=True)


if __name__ == "__main__":
    main()
