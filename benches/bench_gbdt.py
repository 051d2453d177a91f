"""``bcers.gbdt``'s objectives against the NumPy objectives of the libraries' own tutorials.

One boosting round's objective call, as each library makes it, on ``n`` samples (margins ~
N(0, 2^2), labels in {0, 1}):

- XGBoost: ``obj(predt, dtrain)`` with float32 margins, as ``xgboost.train`` calls it. The
  NumPy objective is ``logregobj`` of XGBoost's custom-objective demo
  (``demo/guide-python/custom_objective.py``): ``labels = dtrain.get_label(); preds = 1.0 /
  (1.0 + np.exp(-preds)); grad = preds - labels; hess = preds * (1.0 - preds)``, which
  computes in float32 from XGBoost's float32 margins. The weighted case multiplies both by
  ``dtrain.get_weight()``, as a custom objective must.
- LightGBM: ``objective(preds, train_data)`` with float64 margins, as ``lightgbm.train``
  calls it; the NumPy objective is the same expression (``loglikelihood`` of LightGBM's
  ``examples/python-guide/advanced_example.py``), float64, which LightGBM then converts to
  float32. bcers rounds the margins to float32 and returns float32.

Both objectives read the labels (and weights) from the library's dataset in each call, as in
training (XGBoost's ``get_label`` copies them out each time; LightGBM's returns a cached
array). The implementations of a case are timed side by side in one process (batches in turn,
median kept: ``measure`` of ``benches/bench.py``), bcers at its default thread count and at
one thread (NumPy's single thread). The results are checked to agree before timing.

    python benches/bench_gbdt.py                 # n = 1e7
    python benches/bench_gbdt.py --n 1e6 --reps 5

Needs numpy, bcers, xgboost and lightgbm (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import platform
from functools import partial
from typing import Any, Callable

import lightgbm as lgb
import numpy as np
import xgboost as xgb
from bench import measure  # benches/bench.py, beside this file

import bcers
from bcers.gbdt import lightgbm_objective, xgboost_objective

Objective = Callable[[np.ndarray[Any, Any], Any], tuple[Any, Any]]


def xgboost_tutorial(preds: np.ndarray[Any, Any], dtrain: Any) -> tuple[Any, Any]:
    """XGBoost's demo ``logregobj``, verbatim."""
    labels = dtrain.get_label()
    preds = 1.0 / (1.0 + np.exp(-preds))
    grad = preds - labels
    hess = preds * (1.0 - preds)
    return grad, hess


def xgboost_tutorial_weighted(preds: np.ndarray[Any, Any], dtrain: Any) -> tuple[Any, Any]:
    """The same, with the sample weights applied."""
    labels = dtrain.get_label()
    weights = dtrain.get_weight()
    preds = 1.0 / (1.0 + np.exp(-preds))
    grad = (preds - labels) * weights
    hess = preds * (1.0 - preds) * weights
    return grad, hess


def lightgbm_tutorial(preds: np.ndarray[Any, Any], train_data: Any) -> tuple[Any, Any]:
    """LightGBM's example ``loglikelihood`` (with the weights, when the dataset has them)."""
    labels = train_data.get_label()
    weights = train_data.get_weight()
    preds = 1.0 / (1.0 + np.exp(-preds))
    grad = preds - labels
    hess = preds * (1.0 - preds)
    if weights is not None:
        grad, hess = grad * weights, hess * weights
    return grad, hess


def check(a: tuple[Any, Any], b: tuple[Any, Any]) -> None:
    """The two objectives agree (float32 rounding apart)."""
    for x, y in zip(a, b):
        np.testing.assert_allclose(np.asarray(x, np.float64), y, rtol=1e-4, atol=1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=float, default=1e7, help="samples (default 1e7)")
    parser.add_argument("--reps", type=int, default=9, help="batches per implementation")
    parser.add_argument("--min-batch", type=float, default=0.2, help="seconds per batch")
    args = parser.parse_args()
    n = int(args.n)
    threads = bcers.get_num_threads()

    rng = np.random.default_rng(0)
    margin64 = rng.normal(0.0, 2.0, n)
    margin32 = margin64.astype(np.float32)
    label = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-margin64))).astype(np.float32)
    weight = rng.uniform(0.2, 3.0, n).astype(np.float32)
    feature = np.zeros((n, 1), np.float32)  # the datasets only carry the labels and weights

    cases: list[tuple[str, Objective, Objective, Any, Any]] = []
    bce = bcers.BCEWithLogitsLoss()
    for weighted in (False, True):
        w = weight if weighted else None
        dtrain = xgb.DMatrix(feature, label, weight=w, nthread=threads)
        tutorial: Objective = xgboost_tutorial_weighted if weighted else xgboost_tutorial
        name = f"xgboost, float32{', weighted' if weighted else ''}"
        cases.append((name, tutorial, xgboost_objective(bce), margin32, dtrain))
    for weighted in (False, True):
        w = weight if weighted else None
        data = lgb.Dataset(feature, label, weight=w, params={"verbose": -1}).construct()
        name = f"lightgbm, float64{', weighted' if weighted else ''}"
        cases.append((name, lightgbm_tutorial, lightgbm_objective(bce), margin64, data))

    print(
        f"n = {n:,}; bcers {bcers.__version__} ({threads} threads by default), xgboost "
        f"{xgb.__version__}, lightgbm {lgb.__version__}, numpy {np.__version__}; "
        f"{platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}; median of {args.reps} batches"
    )
    head = (
        f"{'objective call':28} {'NumPy tutorial':>15} {f'bcers ({threads} thr)':>15} "
        f"{'bcers (1 thr)':>15} {'NumPy/bcers':>12} {'NumPy/bcers 1 thr':>18}"
    )
    print(head)
    print("-" * len(head))
    for name, tutorial, objective, margin, dataset in cases:
        check(objective(margin, dataset), tutorial(margin, dataset))
        bcers.set_num_threads(threads)
        times = measure(
            {
                "numpy": partial(tutorial, margin, dataset),
                "bcers": partial(objective, margin, dataset),
            },
            args.reps,
            args.min_batch,
        )
        bcers.set_num_threads(1)
        one = measure(
            {"bcers": partial(objective, margin, dataset)},
            args.reps,
            args.min_batch,
        )["bcers"]
        bcers.set_num_threads(threads)
        print(
            f"{name:28} {times['numpy'] * 1e3:12.2f} ms {times['bcers'] * 1e3:12.2f} ms "
            f"{one * 1e3:12.2f} ms {times['numpy'] / times['bcers']:11.2f}x "
            f"{times['numpy'] / one:17.2f}x"
        )


if __name__ == "__main__":
    main()
