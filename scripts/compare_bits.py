"""Compares two builds of bcers bit for bit, in one process: every output (and every error
message) of the losses over special values, for every SIMD level, 1 and 2 threads, float32 and
float64. A change meant to be a pure speed-up must show no mismatch.

    python scripts/compare_bits.py OLD_PACKAGE_DIR NEW_PACKAGE_DIR [SEED]

``OLD_PACKAGE_DIR`` and ``NEW_PACKAGE_DIR`` are installed ``bcers`` package directories (for
example ``ENV/lib/python3.11/site-packages/bcers`` of two environments), imported under names
of their own (``_builds.py``, as ``compare_in_process.py`` does). The inputs: logits from normal to
every magnitude the type has, infinities, NaNs with a sign or a payload, signed zeros,
subnormals; soft, hard and special targets; weights and pos_weight with 0, inf and NaN; every
reduction, every combination of derivatives, grad_outputs of 2.5, NaN, -inf and 0, masks,
label smoothing, reductions over an axis; BCE, BCE with logits and sigmoid focal loss. Prints
the number of comparisons and of mismatches (the first ten shown); exits 1 on any mismatch.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _builds import stage  # scripts/_builds.py, beside this file

if len(sys.argv) < 3:
    raise SystemExit(__doc__)
ref_dir, new_dir = Path(sys.argv[1]), Path(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
staging, _modules = stage({"ref": ref_dir, "new": new_dir}, "bcers-bits-")
atexit.register(shutil.rmtree, staging, True)
R: Any = _modules["ref"]
N: Any = _modules["new"]
rng = np.random.default_rng(seed)


def specials(dt):
    """Special values of the float type ``dt``, with a NaN payload and a negative NaN."""
    fi = np.finfo(dt)
    v = [
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        -np.nan,
        1.0,
        -1.0,
        0.5,
        2.0,
        1e-30,
        -1e-30,
        1e30,
        -1e30,
        fi.tiny,
        -fi.tiny,
        fi.tiny / 4,
        -fi.tiny / 4,
        fi.smallest_subnormal,
        -fi.smallest_subnormal,
        fi.max,
        -fi.max,
        88.0,
        -88.0,
        103.9,
        -103.9,
        104.0,
        -104.0,
        745.0,
        -745.0,
        1 + fi.eps,
        1 - fi.eps / 2,
        20.0,
        -20.0,
        1e-7,
        17.0,
    ]
    a = np.array(v, dtype=dt)
    nanpay = np.array(
        [0x7FA00001 if dt == np.float32 else 0x7FF4000000000001],
        dtype=np.uint32 if dt == np.float32 else np.uint64,
    ).view(dt)
    negnan = np.array(
        [0xFFC00000 if dt == np.float32 else 0xFFF8000000000000],
        dtype=np.uint32 if dt == np.float32 else np.uint64,
    ).view(dt)
    return np.concatenate([a, nanpay, negnan])


def logit_x(n, dt, mode):
    """``n`` inputs of ``dt``: ``normal``, ``sparse`` (three non-finite), ``unit`` (probabilities),
    ``wide`` (every magnitude, a few specials) or ``special`` (30% specials)."""
    if mode == "normal":
        return rng.normal(0, 4, n).astype(dt)
    if mode == "sparse":
        x = rng.normal(0, 4, n).astype(dt)
        k = rng.integers(0, n, 3)
        x[k] = rng.choice(np.array([np.nan, np.inf, -np.inf], dtype=dt), 3)
        return x
    if mode == "unit":
        return rng.uniform(1e-6, 1 - 1e-6, n).astype(dt)
    mag = 10.0 ** rng.uniform(-45 if dt == np.float32 else -320, 38 if dt == np.float32 else 308, n)
    x = (mag * rng.choice([-1, 1], n)).astype(dt)
    sp = specials(dt)
    k = rng.random(n) < (0.3 if mode == "special" else 0.001)
    x[k] = rng.choice(sp, k.sum())
    return x


def target(n, dt, mode):
    """``n`` targets: ``hard``, ``soft`` or ``special`` (30% specials)."""
    if mode == "hard":
        return (rng.random(n) < 0.5).astype(dt)
    if mode == "soft":
        return rng.random(n).astype(dt)
    y = rng.random(n).astype(dt)
    k = rng.random(n) < 0.3
    y[k] = rng.choice(specials(dt), k.sum())
    return y


def weightlike(n, dt, mode):
    """A weight or pos_weight: absent (``None``), ``scalar`` (a special), ``plain`` or
    ``special``."""
    if mode is None:
        return None
    if mode == "scalar":
        return np.array(rng.choice(specials(dt)), dtype=dt)
    w = rng.uniform(0, 3, n).astype(dt)
    if mode == "special":
        k = rng.random(n) < 0.3
        w[k] = rng.choice(specials(dt), k.sum())
    return w


def same(a, b):
    """Whether two results are the same type, shape, dtype and bytes."""
    if type(a).__name__ != type(b).__name__:
        return False
    if isinstance(a, tuple) or (hasattr(a, "_fields")):
        return len(a) == len(b) and all(same(p, q) for p, q in zip(a, b))
    if a is None or b is None:
        return a is b
    if isinstance(a, (np.ndarray, np.generic)):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()
    return a == b


def run(mod, name, *args, **kw):
    """``mod.name(*args, **kw)``: ``("ok", result)`` or ``("err", its exception)``."""
    try:
        return ("ok", getattr(mod, name)(*args, **kw))
    except Exception as e:
        return ("err", type(e).__name__ + str(e))


count = 0
bad = 0


def check(name, *args, **kw):
    """Calls ``name`` in both builds and counts a mismatch of results or errors."""
    global count, bad
    count += 1
    r = run(R, name, *args, **kw)
    m = run(N, name, *args, **kw)
    if r[0] != m[0] or not same(r[1], m[1]):
        bad += 1
        if bad <= 10:
            print(
                "MISMATCH",
                name,
                {k: v for k, v in kw.items() if not isinstance(v, np.ndarray)},
                r[0],
                m[0],
                str(r[1])[:200],
                str(m[1])[:200],
            )


levels = list(R._bcers.available_simd_levels())
for level in levels:
    R._bcers.set_simd_level(level)
    N._bcers.set_simd_level(level)
    for threads in (1, 2):
        R.set_num_threads(threads)
        N.set_num_threads(threads)
        for dt in (np.float32, np.float64):
            for n in (1, 7, 33, 1000, 5000, 70001):
                if level != levels[-1] and n > 5000:
                    continue
                for xm, ym in [
                    ("normal", "hard"),
                    ("unit", "soft"),
                    ("wide", "soft"),
                    ("special", "special"),
                    ("special", "hard"),
                    ("wide", "special"),
                    ("sparse", "hard"),
                    ("sparse", "soft"),
                ]:
                    x = logit_x(n, dt, xm)
                    y = target(n, dt, ym)
                    pws = (
                        [None, "plain", "special"]
                        if n <= 5000 or xm == "special"
                        else [None, "special"]
                    )
                    for pwm in pws:
                        pw = weightlike(n, dt, pwm)
                        for wm in [None, "special"]:
                            w = weightlike(n, dt, wm)
                            for red in ("none", "mean", "sum"):
                                check(
                                    "binary_cross_entropy_with_logits_value_and_grad",
                                    x,
                                    y,
                                    weight=w,
                                    pos_weight=pw,
                                    reduction=red,
                                )
                                check(
                                    "binary_cross_entropy_with_logits",
                                    x,
                                    y,
                                    weight=w,
                                    pos_weight=pw,
                                    reduction=red,
                                )
                        if n <= 5000:
                            for flags in itertools.product([False, True], repeat=4):
                                if not any(flags):
                                    continue
                                check(
                                    "binary_cross_entropy_with_logits_derivatives",
                                    x,
                                    y,
                                    pos_weight=pw,
                                    reduction="mean",
                                    value=flags[0],
                                    grad=flags[1],
                                    grad_target=flags[2],
                                    hess=flags[3],
                                )
                        mask = rng.random(n) < 0.7
                        for go in (
                            None,
                            np.array(2.5, dt),
                            np.array(np.nan, dt),
                            np.array(-np.inf, dt),
                            np.array(0.0, dt),
                        ):
                            check(
                                "binary_cross_entropy_with_logits_backward",
                                x,
                                y,
                                pos_weight=pw,
                                reduction="mean",
                                grad_output=go,
                            )
                            check(
                                "binary_cross_entropy_with_logits_derivatives",
                                x,
                                y,
                                pos_weight=pw,
                                reduction="sum",
                                grad_output=go,
                                grad_target=True,
                                hess=True,
                            )
                        check(
                            "binary_cross_entropy_with_logits_value_and_grad",
                            x,
                            y,
                            pos_weight=pw,
                            mask=mask,
                            reduction="mean",
                        )
                        check(
                            "binary_cross_entropy_with_logits_value_and_grad",
                            x,
                            y,
                            pos_weight=pw,
                            label_smoothing=0.1,
                            reduction="none",
                        )
                        check(
                            "binary_cross_entropy_with_logits_derivatives",
                            x,
                            y,
                            pos_weight=pw,
                            mask=mask,
                            label_smoothing=0.2,
                            reduction="mean",
                            grad_target=True,
                            hess=True,
                        )
                        if n % 7 == 0 and n > 1:
                            x2, y2 = x.reshape(7, -1), y.reshape(7, -1)
                            check(
                                "binary_cross_entropy_with_logits_value_and_grad",
                                x2,
                                y2,
                                reduction="mean",
                                axis=1,
                            )
                            check(
                                "binary_cross_entropy_with_logits_value_and_grad",
                                x2.T,
                                y2.T,
                                reduction="sum",
                                axis=0,
                            )
                    # BCE and focal
                    xb = np.clip(np.abs(x), 0, 1).astype(dt)
                    xb[np.isnan(xb)] = 0.5
                    yb = np.clip(np.abs(y), 0, 1).astype(dt)
                    yb[np.isnan(yb)] = 0.25
                    for red in ("none", "mean", "sum"):
                        check("binary_cross_entropy_value_and_grad", xb, yb, reduction=red)
                        check("binary_cross_entropy", xb, yb, reduction=red)
                        check(
                            "binary_cross_entropy_value_and_grad", x, y, reduction=red
                        )  # out of range
                        check("sigmoid_focal_loss_value_and_grad", x, y, reduction=red)
                    check(
                        "binary_cross_entropy_derivatives",
                        xb,
                        yb,
                        grad_target=True,
                        hess=True,
                        mask=rng.random(n) < 0.5,
                    )
print(f"{count} comparisons, {bad} mismatches")
sys.exit(1 if bad else 0)
