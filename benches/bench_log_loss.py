"""bcers's ``log_loss`` against ``sklearn.metrics.log_loss`` on binary problems.

The cases, each at n = 1e6 and 1e7 (float64 probabilities of the positive class, uniform in
(0, 1), labels drawn from them):

- ``0/1``: labels 0.0/1.0 (float64), probabilities of shape (n,);
- ``0/1 weighted``: the same with sample weights uniform in [0, 1);
- ``spam/ham``: string labels;
- ``0/1, (n, 2)``: probabilities of both classes, shape (n, 2);
- ``near-perfect``: probabilities within 1e-9 of the labels (mean loss ~5e-10), where bcers
  recomputes the loss from the probability of the true class to stay within 1e-12 of
  scikit-learn (a temporary array, a second pass).

The two are timed side by side in one process (batches in turn, the median kept: ``measure``
of ``benches/bench.py``), after checking that they agree. bcers runs at its default thread
count; scikit-learn is NumPy's single thread.

    python benches/bench_log_loss.py                 # n = 1e6 and 1e7, 5 rounds
    python benches/bench_log_loss.py --n 1e6 --reps 3

Needs numpy, bcers and scikit-learn (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import platform
from functools import partial
from typing import Any, Callable

import numpy as np
import sklearn
from bench import measure  # benches/bench.py, beside this file
from sklearn.metrics import log_loss as sk_log_loss

import bcers
from bcers._log_loss import log_loss


def cases(n: int) -> dict[str, tuple[Any, ...]]:
    """Each case's arguments (y_true, y_pred, sample_weight)."""
    rng = np.random.default_rng(n)
    p = rng.random(n)
    y = (rng.random(n) < p).astype(np.float64)
    r = rng.random(n) * 1e-9
    return {
        "0/1": (y, p, None),
        "0/1 weighted": (y, p, rng.random(n)),
        "spam/ham": (np.where(y == 1, "spam", "ham"), p, None),
        "0/1, (n, 2)": (y, np.stack([1 - p, p], axis=1), None),
        "near-perfect": (y, np.where(y == 1, 1 - r, r), None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--reps", type=int, default=5, help="rounds per case (median kept)")
    args = parser.parse_args()
    print(
        f"bcers {bcers.__version__} ({bcers.get_num_threads()} threads), scikit-learn "
        f"{sklearn.__version__}, numpy {np.__version__}, {platform.machine()}, "
        f"{args.reps} rounds, median ms per call"
    )
    print(f"{'case':<14} {'n':>6} {'bcers':>9} {'sklearn':>9} {'speed-up':>9} {'rel diff':>9}")
    for n in (int(v) for v in args.n):
        for name, (y, p, w) in cases(n).items():
            ours, theirs = log_loss(y, p, sample_weight=w), sk_log_loss(y, p, sample_weight=w)
            diff = abs(ours / theirs - 1)
            assert diff <= 1e-12, (name, n, ours, theirs)
            funcs: dict[str, Callable[[], object]] = {
                "bcers": partial(log_loss, y, p, sample_weight=w),
                "sklearn": partial(sk_log_loss, y, p, sample_weight=w),
            }
            t = measure(funcs, args.reps, 0.05)
            print(
                f"{name:<14} {n:>6.0e} {t['bcers'] * 1e3:>9.1f} {t['sklearn'] * 1e3:>9.1f} "
                f"{t['sklearn'] / t['bcers']:>8.1f}x {diff:>9.1e}"
            )


if __name__ == "__main__":
    main()
