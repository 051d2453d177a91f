"""The cost of the options beyond torch, side by side with what they replace.

    python benches/bench_options.py [--n 10000000] [--threads 2] [--reps 11]

Cases (float32, ``mean`` unless stated):

- BCE forward with a mask (90% kept) and label smoothing 0.1, against the plain call on the
  same arrays: the options' overhead (target: within 1.3x);
- BCE with logits, ``derivatives(value=False, grad=True, hess=True)``, against the NumPy
  expression a gradient-boosting objective computes (``p = sigmoid(z)``, ``p - y``,
  ``p (1 - p)``; target: at least 10x);
- the same with outputs that are not fresh: bcers writing into ``out=`` arrays, and the NumPy
  expression with its own ``out=`` buffers (the ratio is to the plain NumPy expression);
- per-row means (``axis=1`` over a (n / 1000, 1000) array) against the full mean.

Every figure is the median of ``--reps`` batches, the implementations of a case timed in
turn (``measure`` of ``bench.py``); the ratios are of figures measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

import bcers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import measure


def numpy_grad_hess(z: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> object:
    p = 1 / (1 + np.exp(-z))
    n = z.size
    return (p - y) / n, p * (1 - p) / n


def numpy_grad_hess_into(
    z: np.ndarray[Any, Any], y: np.ndarray[Any, Any], out: tuple[Any, ...]
) -> object:
    """``numpy_grad_hess`` with NumPy's own ``out=``: no fresh memory either."""
    p, grad, hess = out
    n = z.size
    np.negative(z, out=p)
    np.exp(p, out=p)
    p += 1
    np.reciprocal(p, out=p)
    np.subtract(p, y, out=grad)
    grad /= n
    np.subtract(1, p, out=hess)
    hess *= p
    hess /= n
    return grad, hess


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=float, default=1e7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--min-batch", type=float, default=0.05)
    args = ap.parse_args(argv)
    n = int(args.n)
    bcers.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.uniform(1e-6, 1 - 1e-6, n).astype(np.float32)
    y = (rng.random(n) < 0.5).astype(np.float32)
    z = (3 * rng.standard_normal(n)).astype(np.float32)
    keep = rng.random(n) < 0.9
    rows = n // 1000
    x2, y2 = x[: rows * 1000].reshape(rows, 1000), y[: rows * 1000].reshape(rows, 1000)

    logits = bcers.BCEWithLogitsLoss()
    scratch = tuple(np.empty_like(z) for _ in range(3))
    into = bcers.Derivatives(None, np.empty_like(z), None, np.empty_like(z))
    cases: list[tuple[str, dict[str, Any], str, str, str]] = [
        (
            "BCE forward: mask + label_smoothing vs plain",
            {
                "plain": lambda: bcers.binary_cross_entropy(x, y),
                "options": lambda: bcers.binary_cross_entropy(x, y, mask=keep, label_smoothing=0.1),
            },
            "options",
            "plain",
            "<= 1.3x",
        ),
        (
            "logits derivatives (grad, hess) vs NumPy",
            {
                "numpy": lambda: numpy_grad_hess(z, y),
                "bcers": lambda: logits.derivatives(z, y, value=False, grad=True, hess=True),
            },
            "numpy",
            "bcers",
            ">= 10x",
        ),
        (
            "the same, both writing into arrays they are given (out=)",
            {
                "numpy": lambda: numpy_grad_hess(z, y),
                "numpy_out": lambda: numpy_grad_hess_into(z, y, scratch),
                "bcers_out": lambda: logits.derivatives(
                    z, y, value=False, grad=True, hess=True, out=into
                ),
            },
            "numpy",
            "bcers_out",
            "-",
        ),
        (
            "BCE forward: per-row mean (axis=1) vs full mean",
            {
                "full": lambda: bcers.binary_cross_entropy(x2, y2),
                "axis": lambda: bcers.binary_cross_entropy(x2, y2, axis=1),
            },
            "axis",
            "full",
            "-",
        ),
    ]
    print(f"n = {n:.0e}, float32, {args.threads} threads, median of {args.reps} batches")
    print("| case | times (ns/element) | ratio | target |")
    print("|---|---|---|---|")
    for title, funcs, num, den, target in cases:
        with np.errstate(all="ignore"):
            times = measure(funcs, args.reps, args.min_batch)
        ns = ", ".join(f"{k} {t / n * 1e9:.3f}" for k, t in times.items())
        print(f"| {title} | {ns} | {times[num] / times[den]:.2f}x | {target} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
