"""Thread scaling of bcers (and torch CPU, when installed) on one large input.

For each thread count, the median time of a BCE forward (mean), a BCE-with-logits
value_and_grad (mean) and the streaming read of the same two arrays (``_stream_read``: the
memory limit), float32, side by side in one process.

    python benches/scaling.py --n 1e8 --threads 1 2 4 8 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable

import numpy as np

import bcers
from bcers import _bcers

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None


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
    print(f"cores: {os.cpu_count()}, n = {n:.0e} float32, SIMD level {_bcers.simd_level()}")
    print("threads | BCE fwd ns/el (x) | logits v&g ns/el (x) | stream ns/el | torch BCE ns/el")
    tx, ty = (torch.from_numpy(x), torch.from_numpy(y)) if torch is not None else (None, None)
    base: dict[str, float] = {}
    for k in args.threads:
        bcers.set_num_threads(k)
        t = {
            "bce": median(lambda: bcers.binary_cross_entropy(x, y), args.repeat),
            "vg": median(
                lambda: bcers.binary_cross_entropy_with_logits_value_and_grad(z, y), args.repeat
            ),
            "stream": median(lambda: _bcers._stream_read(x, y), args.repeat),
        }
        torch_col = ""
        if torch is not None:
            torch.set_num_threads(k)
            tt = median(
                lambda: torch.nn.functional.binary_cross_entropy(tx, ty), max(3, args.repeat // 2)
            )
            torch_col = f"{tt / n * 1e9:.3f}"
        base = base or t
        print(
            f"{k:7d} | {t['bce'] / n * 1e9:.3f} ({base['bce'] / t['bce']:.2f}x) | "
            f"{t['vg'] / n * 1e9:.3f} ({base['vg'] / t['vg']:.2f}x) | "
            f"{t['stream'] / n * 1e9:.3f} | {torch_col}"
        )


if __name__ == "__main__":
    main()
