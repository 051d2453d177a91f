"""``bcers.metrics``: ``LossMetric`` against one call over all the data, and the exact sums.

Every CPU reduction adds exactly and rounds once, so a result depends only on the multiset of
per-element values: the same bits under any permutation of the elements, layout, thread
count, batch split, batch order and tree of merges, and the correctly rounded sum
(``math.fsum``) of the per-element values.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss as sk_log_loss

import bcers
from bcers import _bcers
from bcers.metrics import LossMetric, log_loss

SLOW = os.environ.get("HYPOTHESIS_PROFILE") == "slow"
DTYPES = (np.float16, np.float32, np.float64)
KINDS = ("bce", "logits", "focal")
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "bce": bcers.binary_cross_entropy,
    "logits": bcers.binary_cross_entropy_with_logits,
    "focal": bcers.sigmoid_focal_loss,
}
# Loss weights with at most two significant bits and per-update weights k / 8 (k < 32): their
# products are exact in every dtype, so "the product of both weights" is one array whatever
# dtype computes it.
LOSS_WEIGHTS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
POS_WEIGHTS = (0.5, 1.0, 2.0, 3.5)
LOSSES: dict[str, Callable[[], Any]] = {
    "bce": bcers.BCELoss,
    "logits": bcers.BCEWithLogitsLoss,
    "focal": bcers.SigmoidFocalLoss,  # the function's defaults: alpha 0.25, gamma 2
}
# Shapes large enough for the parallel path (two to three times its threshold).
PARALLEL = _bcers.PARALLEL_MIN
LARGE = [(2 * PARALLEL // 997 + 1, 997), (300, 3 * PARALLEL // 300 + 7)]


def examples(n: int) -> int:
    return 20 * n if SLOW else n


def compute_dtype(dtype: Any) -> Any:
    """The dtype bcers computes in (float16 is computed in float32)."""
    return np.float32 if dtype is np.float16 else dtype


def same(ours: Any, theirs: Any) -> None:
    """The same type, dtype, shape and bits (any NaN equals any NaN: its sign is not part of
    the contract)."""
    assert type(ours) is type(theirs), (type(ours), type(theirs), ours, theirs)
    a, b = np.asarray(ours), np.asarray(theirs)
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    assert a.shape == b.shape, (a.shape, b.shape)
    nan = np.isnan(a)
    assert np.array_equal(nan, np.isnan(b)), (ours, theirs)
    assert a[~nan].tobytes() == b[~nan].tobytes(), (ours, theirs)


def same_sum(metric_sum: float, theirs: Any, dtype: Any) -> None:
    """A metric's float64 ``sum`` against a call's ``reduction="sum"`` in ``dtype`` (the
    float64 sum rounded once more)."""
    assert type(metric_sum) is float
    with np.errstate(over="ignore"):
        same(dtype(metric_sum), theirs)


def fsum(values: Any) -> float:
    return math.fsum(np.asarray(values, dtype=np.float64).ravel().tolist())


def divide(a: float, b: float) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


def inputs(kind: str, shape: Any, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Probabilities (with exact 0 and 1, and values down to 1e-30) for BCE, logits in
    [-60, 60] otherwise."""
    u = rng.random(shape)
    if kind == "bce":
        tiny = 10.0 ** rng.uniform(-30, 0, shape)
        ends = rng.integers(0, 2, shape).astype(np.float64)
        return np.where(u < 0.35, tiny, np.where(u < 0.45, ends, rng.random(shape)))
    return np.where(u < 0.5, rng.uniform(-60, 60, shape), 3 * rng.standard_normal(shape))


def targets(shape: Any, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Hard and soft targets."""
    hard = rng.integers(0, 2, shape).astype(np.float64)
    return np.where(rng.random(shape) < 0.5, hard, rng.random(shape))


@dataclass(frozen=True)
class Spec:
    """A loss's parameters: ``make`` builds as many equal loss objects as wanted."""

    kind: str
    c: int
    label_smoothing: float
    weight: npt.NDArray[np.float64] | None
    pos_weight: Any
    alpha: float
    gamma: float

    @property
    def arrays(self) -> bool:
        return self.weight is not None or self.pos_weight is not None

    def make(
        self, reduction: str = "mean", weight: Any = "own", axis: Any = None
    ) -> bcers.BCELoss | bcers.BCEWithLogitsLoss | bcers.SigmoidFocalLoss:
        w = self.weight if isinstance(weight, str) else weight
        kw: dict[str, Any] = {"label_smoothing": self.label_smoothing, "axis": axis}
        if self.kind == "bce":
            return bcers.BCELoss(weight=w, reduction=reduction, **kw)  # type: ignore[arg-type]
        if self.kind == "logits":
            return bcers.BCEWithLogitsLoss(
                weight=w,
                reduction=reduction,  # type: ignore[arg-type]
                pos_weight=self.pos_weight,
                **kw,
            )
        return bcers.SigmoidFocalLoss(
            self.alpha,
            self.gamma,
            reduction,  # type: ignore[arg-type]
            weight=w,
            **kw,
        )


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    kind = draw(st.sampled_from(KINDS), label="loss")
    c = draw(st.integers(1, 4), label="classes")
    shape = draw(st.sampled_from([None, (c,), (1, c)]), label="loss weight shape")
    weight = None
    if shape is not None:
        values = draw(st.lists(st.sampled_from(LOSS_WEIGHTS), min_size=c, max_size=c))
        weight = np.array(values).reshape(shape)
    pos_weight: Any = None
    if kind == "logits":
        pos_weight = draw(
            st.sampled_from(
                [
                    None,
                    2.5,
                    np.array(draw(st.lists(st.sampled_from(POS_WEIGHTS), min_size=c, max_size=c))),
                ]
            ),
            label="pos_weight",
        )
    alpha, gamma = 0.0, 0.0
    if kind == "focal":
        alpha = draw(st.sampled_from([0.25, 0.6, 1.0, -1.0]), label="alpha")
        gamma = draw(st.sampled_from([0.0, 0.5, 2.0, 3.7]), label="gamma")
    label_smoothing = draw(st.sampled_from([0.0, 0.1, 0.3]), label="label_smoothing")
    return Spec(kind, c, label_smoothing, weight, pos_weight, alpha, gamma)


def ship(metric: LossMetric, how: str, spec: Spec) -> LossMetric:
    """``metric`` as another process would receive it."""
    if how == "bytes":
        data = metric.to_bytes()
        if spec.arrays:
            with pytest.raises(ValueError, match="pass it as loss="):
                LossMetric.from_bytes(data)
            return LossMetric.from_bytes(data, spec.make())
        return LossMetric.from_bytes(data)
    if how == "bytes, loss given":
        return LossMetric.from_bytes(metric.to_bytes(), spec.make())
    if how == "pickle":
        copy: LossMetric = pickle.loads(pickle.dumps(metric))
        return copy
    assert how == "as is"
    return metric


SHIPPING = st.sampled_from(["as is", "bytes", "bytes, loss given", "pickle"])


def merge_tree(metrics: list[LossMetric], data: st.DataObject, spec: Spec) -> LossMetric:
    """The metrics merged in a random tree, each node merging two to four metrics, some of
    them shipped first."""
    pool = list(metrics)
    while len(pool) > 1:
        k = data.draw(st.integers(2, min(4, len(pool))), label="merge arity")
        order = data.draw(st.permutations(range(len(pool))), label="merge order")
        group = [ship(pool[i], data.draw(SHIPPING, label="shipping"), spec) for i in order[:k]]
        merged = group[0].merge(*group[1:])
        assert merged is group[0]
        pool = [*(pool[i] for i in order[k:]), merged]
    return ship(pool[0], data.draw(SHIPPING, label="shipping"), spec)


# --- 1. LossMetric gives the bits of one call over all the data ------------------------------


@settings(max_examples=examples(150))
@given(data=st.data())
def test_metric_equals_one_call_over_all_the_data(data: st.DataObject) -> None:
    spec = data.draw(specs())
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    target_dtype = data.draw(st.sampled_from([dtype, np.float64]), label="target dtype")
    n = data.draw(st.integers(0, 40), label="rows")
    c = spec.c
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = inputs(spec.kind, (n, c), rng).astype(dtype)
    y = targets((n, c), rng).astype(target_dtype)

    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=6), label="cuts"))
    bounds = list(zip([0, *cuts], [*cuts, n]))

    # Per-update weights: general ones when the loss has none, else exact products; in
    # float16, weights that float16 holds exactly (for the rounding of the others, see
    # test_float16_metric_rounds_update_weights_to_float16).
    def draw_weight(shape: Any) -> npt.NDArray[np.float64]:
        if spec.weight is None and dtype is not np.float16:
            return rng.random(shape) * 2
        return rng.integers(0, 32, shape) / 8

    weighting = data.draw(
        st.sampled_from(["none", "elementwise", "per row", "per batch"]), label="weighting"
    )
    batch_weights: list[Any] = [None] * len(bounds)
    all_weights: Any = None
    if weighting in ("elementwise", "per row"):
        all_weights = draw_weight((n, c) if weighting == "elementwise" else (n, 1))
        batch_weights = [all_weights[a:b] for a, b in bounds]
    elif weighting == "per batch":
        scalars = draw_weight(len(bounds))
        batch_weights = [float(s) for s in scalars]
        all_weights = np.concatenate([np.full((b - a, 1), s) for (a, b), s in zip(bounds, scalars)])

    masking = data.draw(
        st.sampled_from(
            ["none", "mask", "row mask", "masked input", "masked target", "mask and masked input"]
        ),
        label="masking",
    )
    keep_given = rng.random((n, 1) if masking == "row mask" else (n, c)) < 0.7
    keep_ma = rng.random((n, c)) < 0.7
    if masking == "none":
        keep = np.ones((n, c), dtype=bool)
    elif masking in ("mask", "row mask"):
        keep = np.broadcast_to(keep_given, (n, c))
    elif masking == "mask and masked input":
        keep = keep_given & keep_ma
    else:
        keep = keep_ma
    # Dropped elements hold values that are out of range (BCE) or NaN: they must not count.
    x = np.where(keep, x, 7.0 if spec.kind == "bce" else np.nan).astype(dtype)
    y = np.where(keep, y, 255.0).astype(target_dtype)

    def batch(i: int) -> tuple[Any, Any, dict[str, Any]]:
        a, b = bounds[i]
        xb, yb = x[a:b], y[a:b]
        kw: dict[str, Any] = {}
        if batch_weights[i] is not None:
            kw["weight"] = batch_weights[i]
        if masking in ("mask", "row mask", "mask and masked input"):
            kw["mask"] = keep_given[a:b]
        if masking in ("masked input", "mask and masked input"):
            xb = np.ma.MaskedArray(xb, mask=~keep_ma[a:b])
        if masking == "masked target":
            yb = np.ma.MaskedArray(yb, mask=~keep_ma[a:b])
        return xb, yb, kw

    # The one call over all the data.
    kw = {} if masking == "none" else {"mask": np.array(keep)}
    weighted = all_weights is not None or spec.weight is not None
    if weighted:
        w = all_weights
        if spec.weight is not None:
            w = spec.weight if w is None else w * spec.weight
        expected = spec.make("weighted_mean", weight=w)(x, y, **kw)
        expected_sum = spec.make("sum", weight=w)(x, y, **kw)
    else:
        expected = spec.make("mean")(x, y, **kw)
        expected_sum = spec.make("sum")(x, y, **kw)
        # Without weights the weighted mean is the mean.
        same(spec.make("weighted_mean")(x, y, **kw), expected)
    assert type(expected) is dtype
    # The weights each kept element carries, as bcers computes them.
    effective = np.ones((n, c))
    if all_weights is not None:
        effective = effective * all_weights.astype(dtype).astype(compute_dtype(dtype))
    if spec.weight is not None:
        effective = effective * spec.weight.astype(dtype).astype(compute_dtype(dtype))

    # The metric's loss: its reduction and axis are not used.
    reduction = data.draw(st.sampled_from(["mean", "sum", "weighted_mean", "none"]))
    axis = None if reduction == "none" else data.draw(st.sampled_from([None, 0, -1]))

    # In order, into one metric.
    single = LossMetric(spec.make(reduction, axis=axis))
    for i in range(len(bounds)):
        xb, yb, kwb = batch(i)
        single.update(xb, yb, **kwb)

    # In a random order, into several metrics, merged in a random tree.
    order = data.draw(st.permutations(range(len(bounds))), label="batch order")
    workers = data.draw(st.integers(1, 4), label="workers")
    metrics = [LossMetric(spec.make(reduction, axis=axis)) for _ in range(workers)]
    for i in order:
        xb, yb, kwb = batch(i)
        metrics[data.draw(st.integers(0, workers - 1), label="worker")].update(xb, yb, **kwb)
    merged = merge_tree(metrics, data, spec)

    for metric in (single, merged):
        same(metric.compute(), expected)
        same_sum(metric.sum, expected_sum, dtype)
        assert metric.count == int(keep.sum())
        assert metric.weight_sum == fsum(effective[keep])
        if not weighted:
            assert metric.weight_sum == metric.count
    # Equal sums, equal states.
    assert merged.to_bytes() == single.to_bytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("how", ["as is", "bytes", "bytes, loss given", "pickle"])
def test_shipped_metric_keeps_its_dtype_and_value(dtype: Any, how: str) -> None:
    spec = Spec("focal", 3, 0.1, None, None, 0.4, 1.5)
    rng = np.random.default_rng(7)
    x = inputs("focal", (9, 3), rng).astype(dtype)
    y = targets((9, 3), rng).astype(dtype)
    metric = LossMetric(spec.make())
    metric.update(x, y)
    copy = ship(metric, how, spec)
    expected = spec.make()(x, y)
    same(copy.compute(), expected)
    assert isinstance(copy.loss, bcers.SigmoidFocalLoss)
    loss = copy.loss
    assert (loss.alpha, loss.gamma, loss.label_smoothing) == (0.4, 1.5, 0.1)
    # Merged into an empty metric, the result keeps the dtype.
    fresh = LossMetric(spec.make())
    same(fresh.merge(copy).compute(), expected)


def test_metric_of_float16_beyond_its_range_is_inf() -> None:
    loss = bcers.BCEWithLogitsLoss(pos_weight=100.0)
    x = np.array([-60000.0], np.float16)
    y = np.array([1.0])
    metric = LossMetric(loss)
    metric.update(x, y)
    assert metric.sum == 6e6
    same(metric.compute(), loss(x, y))
    same(metric.compute(), np.float16(np.inf))
    same(LossMetric.from_bytes(metric.to_bytes(), loss).compute(), np.float16(np.inf))


def test_unpickled_metric_of_float16_beyond_its_range_is_inf() -> None:
    loss = bcers.BCEWithLogitsLoss(pos_weight=100.0)
    metric = LossMetric(loss)
    metric.update(np.array([-60000.0], np.float16), np.array([1.0]))
    copy: LossMetric = pickle.loads(pickle.dumps(metric))
    same(copy.compute(), np.float16(np.inf))


def test_float16_metric_rounds_update_weights_to_float16() -> None:
    x = np.array([0.1, 0.5], np.float16)
    y = np.array([1.0, 1.0], np.float16)
    w = np.array([0.1, 0.7])
    metric = LossMetric(bcers.BCELoss())
    metric.update(x, y, weight=w)
    assert metric.weight_sum == fsum(w.astype(np.float16))
    same(metric.compute(), bcers.binary_cross_entropy(x, y, weight=w, reduction="weighted_mean"))


def test_metrics_of_losses_with_other_parameter_arrays_do_not_merge() -> None:
    x, y = np.array([0.5, 0.25]), np.array([1.0, 0.0])
    pairs = [
        (bcers.BCEWithLogitsLoss(pos_weight=2.0), bcers.BCEWithLogitsLoss(pos_weight=3.0)),
        (bcers.BCEWithLogitsLoss(pos_weight=2.0), bcers.BCEWithLogitsLoss()),
        (bcers.BCELoss(weight=np.array([1.0, 2.0])), bcers.BCELoss()),
        (bcers.BCELoss(weight=np.array([1.0, 2.0])), bcers.BCELoss(weight=np.array([1.0, 3.0]))),
    ]
    for a, b in pairs:
        ma, mb = LossMetric(a), LossMetric(b)
        ma.update(x, y)
        mb.update(x, y)
        with pytest.raises(ValueError, match="different losses"):
            ma.merge(mb)
    same_params = LossMetric(bcers.BCELoss(weight=np.array([1.0, 2.0])))
    same_params.update(x, y)
    other = LossMetric(bcers.BCELoss(weight=[1.0, 2.0]))
    other.update(x, y)
    assert same_params.merge(other).count == 4


# --- 2. Sums do not depend on order, threads or layout ---------------------------------------


@pytest.fixture
def threads() -> Iterator[Callable[[int], None]]:
    """``bcers.set_num_threads``, with the thread count restored afterwards."""
    before = bcers.get_num_threads()
    try:
        yield bcers.set_num_threads
    finally:
        bcers.set_num_threads(before)


def big_weights(kind: str, n: int, rng: np.random.Generator) -> npt.NDArray[np.float64] | None:
    """None, positive weights from 1e-30 to 1e30, or signed ones whose large terms cancel."""
    if kind == "none":
        return None
    w = 10.0 ** rng.uniform(-30, 30, n)
    if kind == "signed":
        w *= rng.choice([-1.0, 1.0], n)
    return w


def cancelling(
    x: npt.NDArray[Any], y: npt.NDArray[Any], w: npt.NDArray[Any] | None, rng: np.random.Generator
) -> tuple[Any, Any, Any]:
    """With signed weights, 40% of the elements repeated with the opposite weight (their
    weighted losses cancel exactly), all shuffled together."""
    if w is not None and (w < 0).any():
        k = int(0.4 * x.size)
        x[k : 2 * k], y[k : 2 * k], w[k : 2 * k] = x[:k], y[:k], -w[:k]
    perm = rng.permutation(x.size)
    return x[perm], y[perm], None if w is None else w[perm]


def call(fn: Callable[..., Any], x: Any, y: Any, w: Any, **kw: Any) -> Any:
    return fn(x, y, **kw) if w is None else fn(x, y, weight=w, **kw)


def layouts(a: npt.NDArray[Any], shape: tuple[int, int]) -> dict[str, npt.NDArray[Any]]:
    """The same 2-D data in other layouts: C and Fortran order, strided views of both, a view
    with negative strides."""
    c_order = a.reshape(shape)
    big = np.full((2 * shape[0], 3 * shape[1]), np.nan, dtype=a.dtype)
    big[1::2, ::3] = c_order
    return {
        "C": c_order,
        "Fortran": np.asfortranarray(c_order),
        "strided": big[1::2, ::3],
        "Fortran strided": np.asfortranarray(big)[1::2, ::3],
        "reversed": np.ascontiguousarray(c_order[::-1, ::-1])[::-1, ::-1],
    }


@settings(
    max_examples=examples(16),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(KINDS),
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=st.sampled_from([(1, 1), (40, 25), *LARGE]),
    weighting=st.sampled_from(["none", "positive", "signed"]),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_full_sums_ignore_order_threads_and_layout(
    threads: Callable[[int], None],
    kind: str,
    dtype: Any,
    shape: tuple[int, int],
    weighting: str,
    seed: int,
    data: st.DataObject,
) -> None:
    rng = np.random.default_rng(seed)
    n = shape[0] * shape[1]
    x, y, w = cancelling(inputs(kind, n, rng), targets(n, rng), big_weights(weighting, n, rng), rng)
    x, y = x.astype(dtype), y.astype(dtype)
    w = None if w is None else w.astype(dtype)
    fn = FUNCTIONS[kind]

    threads(1)
    values = call(fn, x, y, w, reduction="none")
    expected = {r: call(fn, x, y, w, reduction=r) for r in ("sum", "mean", "weighted_mean")}
    # The sum is the correctly rounded sum of the per-element values, rounded to the dtype.
    exact = fsum(values)
    same(expected["sum"], dtype(exact))
    if dtype is np.float64:
        assert float(expected["sum"]) == exact
    same(expected["mean"], dtype(exact / n))

    perm = rng.permutation(n)
    variants: dict[str, tuple[Any, Any, Any]] = {
        "as given": (x, y, w),
        "permuted": (x[perm], y[perm], None if w is None else w[perm]),
    }
    xs, ys = layouts(x, shape), layouts(y, shape)
    ws = None if w is None else layouts(w, shape)
    for name in xs:
        variants[name] = (xs[name], ys[name], None if ws is None else ws[name])
    for count in (1, 2, 3):
        threads(count)
        for name, (xv, yv, wv) in variants.items():
            for reduction, value in expected.items():
                got = call(fn, xv, yv, wv, reduction=reduction)
                assert got.tobytes() == value.tobytes(), (name, count, reduction, got, value)

    # Through LossMetric: the permuted data, in random batches, in random order, two threads.
    threads(2)
    xp, yp, wp = variants["permuted"]
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=5), label="cuts"))
    bounds = list(zip([0, *cuts], [*cuts, n]))
    order = data.draw(st.permutations(range(len(bounds))), label="batch order")
    metric = LossMetric(LOSSES[kind]())
    for i in order:
        a, b = bounds[i]
        metric.update(xp[a:b], yp[a:b], weight=None if wp is None else wp[a:b])
    same_sum(metric.sum, expected["sum"], dtype)
    assert metric.sum == exact
    same(metric.compute(), expected["weighted_mean" if w is not None else "mean"])
    assert metric.count == n


def permute_within(arrays: list[Any], axes: tuple[int, ...], rng: np.random.Generator) -> list[Any]:
    """The arrays with the same permutation within each slot of a reduction over ``axes``."""
    shape = arrays[0].shape
    if len(axes) == 2:
        perm = rng.permutation(arrays[0].size)
        return [a.reshape(-1)[perm].reshape(shape) for a in arrays]
    (axis,) = axes
    if axis == 1:
        idx = rng.permuted(np.tile(np.arange(shape[1]), (shape[0], 1)), axis=1)
    else:
        idx = rng.permuted(np.tile(np.arange(shape[0])[:, None], (1, shape[1])), axis=0)
    return [np.take_along_axis(a, idx, axis=axis) for a in arrays]


@settings(
    max_examples=examples(20),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(KINDS),
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=st.sampled_from([(7, 5), *LARGE]),
    axis=st.sampled_from([0, 1, -1, (0, 1), (1, 0)]),
    reduction=st.sampled_from(["sum", "mean", "weighted_mean"]),
    weighting=st.sampled_from(["none", "positive", "signed"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_axis_sums_ignore_order_threads_and_layout(
    threads: Callable[[int], None],
    kind: str,
    dtype: Any,
    shape: tuple[int, int],
    axis: Any,
    reduction: str,
    weighting: str,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    n = shape[0] * shape[1]
    x, y, w = cancelling(inputs(kind, n, rng), targets(n, rng), big_weights(weighting, n, rng), rng)
    x, y = x.reshape(shape).astype(dtype), y.reshape(shape).astype(dtype)
    w = None if w is None else w.reshape(shape).astype(dtype)
    fn = FUNCTIONS[kind]
    axes = tuple(sorted(a % 2 for a in ((axis,) if isinstance(axis, int) else axis)))

    threads(1)
    kw = {"reduction": reduction, "axis": axis}
    expected = call(fn, x, y, w, **kw)
    assert isinstance(expected, np.ndarray) if len(axes) == 1 else isinstance(expected, dtype)

    # Each slot is the correctly rounded sum of its per-element values.
    values = call(fn, x, y, w, reduction="none").astype(np.float64)
    slots = values.sum(axis=axes, keepdims=True)  # only for its shape
    moved = np.moveaxis(values, axes, range(2 - len(axes), 2)).reshape(slots.size, -1)
    exact = np.array([fsum(row) for row in moved])
    if reduction == "sum":
        same(np.asarray(expected), exact.astype(dtype).reshape(np.shape(expected)))
    elif reduction == "mean":
        count = n // slots.size
        same(np.asarray(expected), (exact / count).astype(dtype).reshape(np.shape(expected)))
    else:
        if w is None:
            weights = np.full(slots.size, float(n // slots.size))
        else:
            moved_w = np.moveaxis(w, axes, range(2 - len(axes), 2)).reshape(slots.size, -1)
            weights = np.array([fsum(row) for row in moved_w])
        with np.errstate(divide="ignore", invalid="ignore"):
            quotient = (exact / weights).astype(dtype)
        same(np.asarray(expected), quotient.reshape(np.shape(expected)))

    operands = [x, y] if w is None else [x, y, w]
    permuted = permute_within(operands, axes, rng)
    reversed_ = [a[::-1, ::-1] for a in operands]
    fortran = [np.asfortranarray(a) for a in operands]
    strided = [layouts(a.ravel(), shape)["strided"] for a in operands]
    cases = {
        "as given": operands,
        "permuted within slots": permuted,
        "Fortran": fortran,
        "strided": strided,
        "reversed": reversed_,
    }
    for count in (1, 2):
        threads(count)
        for name, ops in cases.items():
            got = call(fn, ops[0], ops[1], ops[2] if w is not None else None, **kw)
            if name == "reversed" and len(axes) == 1:
                got = got[::-1]  # reversing both axes reverses the order of the slots
            same(got, expected)


# --- 3. Accuracy: correctly rounded sums -----------------------------------------------------


@settings(max_examples=examples(80))
@given(
    kind=st.sampled_from(KINDS),
    dtype=st.sampled_from([np.float32, np.float64]),
    n=st.integers(0, 3000),
    weighting=st.sampled_from(["none", "positive", "signed"]),
    masked=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_sums_are_correctly_rounded(
    kind: str, dtype: Any, n: int, weighting: str, masked: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x, y, w = cancelling(inputs(kind, n, rng), targets(n, rng), big_weights(weighting, n, rng), rng)
    x, y = x.astype(dtype), y.astype(dtype)
    w = None if w is None else w.astype(dtype)
    keep = rng.random(n) < 0.6 if masked else np.ones(n, dtype=bool)
    kw: dict[str, Any] = {"mask": keep} if masked else {}
    fn = FUNCTIONS[kind]
    values = call(fn, x, y, w, reduction="none", **kw)
    assert values.dtype == dtype
    exact = fsum(values)
    kept = int(keep.sum())
    weight_sum = float(kept) if w is None else fsum(w[keep])

    total = call(fn, x, y, w, reduction="sum", **kw)
    if dtype is np.float64:
        assert float(total) == exact
    same(total, dtype(exact))
    same(call(fn, x, y, w, reduction="mean", **kw), dtype(divide(exact, kept)))
    same(call(fn, x, y, w, reduction="weighted_mean", **kw), dtype(divide(exact, weight_sum)))

    # The metric holds the float64 sums, whatever the dtype.
    metric = LossMetric(LOSSES[kind]())
    half = n // 2
    for part in (slice(half, None), slice(0, half)):
        metric.update(x[part], y[part], weight=None if w is None else w[part], mask=keep[part])
    assert metric.sum == exact
    assert metric.weight_sum == weight_sum
    assert metric.count == kept


# --- 4. The API ---------------------------------------------------------------------------------


P = np.array([[0.9, 0.2, 0.7], [0.4, 0.5, 0.1]], dtype=np.float32)
T = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=np.float32)


def test_attributes_and_reset() -> None:
    loss = bcers.BCELoss()
    metric = LossMetric(loss)
    assert metric.loss is loss
    assert (metric.count, metric.sum, metric.weight_sum) == (0, 0.0, 0.0)
    empty = metric.to_bytes()
    w = np.array([1.0, 2.0, 0.5], dtype=np.float32)
    metric.update(P, T, weight=w)
    values = bcers.binary_cross_entropy(P, T, weight=w, reduction="none")
    assert type(metric.count) is int
    assert metric.count == 6
    assert type(metric.sum) is float
    assert metric.sum == fsum(values)
    assert type(metric.weight_sum) is float
    assert metric.weight_sum == 7.0
    same(metric.compute(), bcers.binary_cross_entropy(P, T, weight=w, reduction="weighted_mean"))
    metric.reset()
    assert (metric.count, metric.sum, metric.weight_sum) == (0, 0.0, 0.0)
    assert metric.to_bytes() == empty
    same(metric.compute(), np.float64(np.nan))
    # Usable again, with another dtype.
    metric.update(P.astype(np.float64), T)
    same(metric.compute(), bcers.binary_cross_entropy(P.astype(np.float64), T))


def test_compute_is_nan_without_elements() -> None:
    metric = LossMetric(bcers.BCEWithLogitsLoss())
    same(metric.compute(), np.float64(np.nan))
    metric.update(np.zeros((0, 3), np.float32), np.zeros((0, 3)))
    same(metric.compute(), np.float32(np.nan))
    assert metric.count == 0
    # Everything masked: nothing counts, not even the NaN that stands there.
    x = np.array([np.nan, 1.0, 2.0], np.float32)
    metric.update(x, np.ones(3), mask=np.zeros(3, dtype=bool))
    metric.update(np.ma.MaskedArray(x, mask=True), np.ones(3))
    same(metric.compute(), np.float32(np.nan))
    assert (metric.count, metric.sum, metric.weight_sum) == (0, 0.0, 0.0)
    metric.update(x[1:], np.ones(2))
    assert metric.count == 2
    assert not np.isnan(metric.compute())


def test_repr() -> None:
    metric = LossMetric(bcers.BCELoss())
    assert repr(metric) == "LossMetric(BCELoss(), count=0)"
    metric.update(P, T)
    assert repr(metric) == "LossMetric(BCELoss(), count=6)"
    focal = LossMetric(bcers.SigmoidFocalLoss(0.5, 1.0, label_smoothing=0.1))
    assert repr(focal) == (
        "LossMetric(SigmoidFocalLoss(alpha=0.5, gamma=1.0, reduction='mean', "
        "label_smoothing=0.1), count=0)"
    )


@pytest.mark.parametrize(
    "loss", ["bce", None, bcers.binary_cross_entropy, bcers.BCELoss, LossMetric(bcers.BCELoss())]
)
def test_a_non_loss_is_a_type_error(loss: Any) -> None:
    with pytest.raises(TypeError, match="LossMetric takes a bcers loss object"):
        LossMetric(loss)


@pytest.mark.parametrize(
    "mask", [np.array([1, 0, 1]), np.array([1.0, 0.0, 1.0]), [1, 0, 1], np.array(["a", "b", "c"])]
)
def test_a_non_bool_mask_is_a_type_error(mask: Any) -> None:
    metric = LossMetric(bcers.BCELoss())
    metric.update(P, T)
    before = metric.to_bytes()
    with pytest.raises(TypeError, match="mask must be an array of booleans"):
        metric.update(P, T, mask=mask)
    assert metric.to_bytes() == before


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (bcers.BCELoss(), bcers.BCEWithLogitsLoss()),
        (bcers.BCEWithLogitsLoss(), bcers.SigmoidFocalLoss()),
        (bcers.BCEWithLogitsLoss(), bcers.SigmoidFocalLoss(alpha=-1.0, gamma=0.0)),
        (bcers.SigmoidFocalLoss(0.25, 2.0), bcers.SigmoidFocalLoss(0.25, 1.0)),
        (bcers.SigmoidFocalLoss(0.25, 2.0), bcers.SigmoidFocalLoss(0.5, 2.0)),
        (bcers.BCELoss(), bcers.BCELoss(label_smoothing=0.1)),
        (bcers.BCEWithLogitsLoss(label_smoothing=0.2), bcers.BCEWithLogitsLoss()),
    ],
)
def test_merging_metrics_of_different_losses_is_a_value_error(a: Any, b: Any) -> None:
    x = np.array([0.3, 0.6])
    first, good, other = LossMetric(a), LossMetric(a), LossMetric(b)
    first.update(x, [1.0, 0.0])
    good.update(x, [0.0, 1.0])
    other.update(x, [1.0, 1.0])
    before = first.to_bytes()
    for metrics in ([other], [good, other]):
        with pytest.raises(ValueError, match="cannot merge metrics of different losses"):
            first.merge(*metrics)
        # Nothing was merged, not even the metrics before the bad one.
        assert first.to_bytes() == before
    with pytest.raises(ValueError, match="cannot merge metrics of different losses"):
        other.merge(first)
    with pytest.raises(TypeError, match="merge takes LossMetric objects"):
        first.merge(a)  # type: ignore[arg-type]
    assert first.to_bytes() == before
    # The same loss's metrics merge.
    assert first.merge(good).count == 4


def test_merge_of_many_and_of_none() -> None:
    loss = bcers.BCELoss()
    parts = [LossMetric(loss) for _ in range(4)]
    for i, m in enumerate(parts):
        m.update(P[:, i : i + 1] if i < 3 else P[:0], T[:, i : i + 1] if i < 3 else T[:0])
    total = parts[0].merge(*parts[1:])
    same(total.compute(), loss(P, T))
    assert total.count == 6
    before = total.to_bytes()
    assert total.merge() is total
    assert total.to_bytes() == before


def test_merging_a_metric_with_itself_doubles_it() -> None:
    loss = bcers.BCEWithLogitsLoss()
    m = LossMetric(loss)
    z = np.linspace(-4.0, 4.0, 11, dtype=np.float32)
    y = (np.arange(11) % 2).astype(np.float32)
    m.update(z, y)
    elementwise = bcers.binary_cross_entropy_with_logits(z, y, reduction="none")
    once = math.fsum(float(v) for v in elementwise)
    assert m.sum == once
    assert m.merge(m) is m
    assert (m.sum, m.weight_sum, m.count) == (2 * once, 22.0, 22)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_and_general_updates_hold_the_same_state(dtype: Any) -> None:
    """A plain batch (ndarrays of one float dtype, no weight or mask) is summed as it is; the
    same batch through the general path (a mask keeping everything, a list target) gives the
    same state, bit for bit."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0.01, 0.99, (7, 9)).astype(dtype)
    y = (rng.random((7, 9)) < 0.5).astype(dtype)
    for loss in (bcers.BCELoss(), bcers.SigmoidFocalLoss(label_smoothing=0.1)):
        plain, general, listed = LossMetric(loss), LossMetric(loss), LossMetric(loss)
        plain.update(x, y)
        general.update(x, y, mask=np.ones((7, 9), bool))
        listed.update(x, y.tolist())
        assert plain.to_bytes() == general.to_bytes() == listed.to_bytes()
        same(plain.compute(), loss(x, y))


def test_from_bytes_refuses_garbage() -> None:
    metric = LossMetric(bcers.SigmoidFocalLoss(0.25, 2.0))
    metric.update(np.array([1.0, -2.0]), np.array([1.0, 0.0]))
    good = metric.to_bytes()
    head = struct.calcsize("<4sBH")
    (length,) = struct.unpack_from("<H", good, 5)
    header = good[head : head + length]
    state = good[head + length :]

    def with_header(h: dict[str, Any] | bytes) -> bytes:
        raw = h if isinstance(h, bytes) else json.dumps(h).encode()
        return struct.pack("<4sBH", b"bclm", 1, len(raw)) + raw + state

    recorded = json.loads(header)
    bad = [
        b"",
        b"bcl",
        b"bclm",
        b"\x00" * 64,
        b"not a metric at all, just some bytes",
        bytes(np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8)),
        b"xxxx" + good[4:],
        good[:4] + b"\x02" + good[5:],
        good[: head + length],
        good[:-1],
        good + b"\x00",
        with_header(b"{not json"),
        with_header(b"[]"),
        with_header({**recorded, "loss": "hinge"}),
        with_header({k: v for k, v in recorded.items() if k != "loss"}),
        good[: head + length] + b"bcls\x01" + b"\xff" * 30,
    ]
    for data in bad:
        with pytest.raises(ValueError, match=r"LossMetric('s)? state|bcers: "):
            LossMetric.from_bytes(data)
    # And the good bytes give the metric back, also from a bytearray or a memoryview.
    for data in (good, bytearray(good), memoryview(good)):
        same(LossMetric.from_bytes(data).compute(), metric.compute())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "other",
    [
        bcers.BCELoss(),
        bcers.BCEWithLogitsLoss(),
        bcers.SigmoidFocalLoss(0.25, 3.0),
        bcers.SigmoidFocalLoss(0.3, 2.0),
        bcers.SigmoidFocalLoss(0.25, 2.0, label_smoothing=0.1),
    ],
)
def test_from_bytes_refuses_another_loss(other: Any) -> None:
    metric = LossMetric(bcers.SigmoidFocalLoss(0.25, 2.0))
    metric.update(np.array([1.0, -2.0]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="is not the loss this state was computed with"):
        LossMetric.from_bytes(metric.to_bytes(), other)
    # The loss it was computed with is taken (its reduction does not matter).
    copy = LossMetric.from_bytes(
        metric.to_bytes(), bcers.SigmoidFocalLoss(0.25, 2.0, reduction="sum")
    )
    same(copy.compute(), metric.compute())
    assert copy.count == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda r: bcers.BCEWithLogitsLoss(pos_weight=np.array([2.0, 3.0]), reduction=r),
        lambda r: bcers.BCEWithLogitsLoss(pos_weight=2.0, reduction=r),
        lambda r: bcers.BCELoss(weight=np.array([1.0, 0.5]), reduction=r),
        lambda r: bcers.SigmoidFocalLoss(weight=np.array([[2.0], [1.0]]), reduction=r),
    ],
)
def test_from_bytes_needs_the_loss_for_its_arrays(make: Callable[[str], Any]) -> None:
    loss = make("mean")
    metric = LossMetric(loss)
    x, y = np.array([[0.5, -1.0], [0.25, 2.0]]), np.array([[1.0, 0.0], [1.0, 1.0]])
    if isinstance(loss, bcers.BCELoss):
        x = 1 / (1 + np.exp(-x))
    metric.update(x, y)
    data = metric.to_bytes()
    with pytest.raises(ValueError, match="pass it as loss="):
        LossMetric.from_bytes(data)
    copy = LossMetric.from_bytes(data, loss)
    assert copy.loss is loss
    same(copy.compute(), make("weighted_mean")(x, y))


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.array([0.5, 1.5], np.float32), np.array([1.0, 0.0], np.float32), "input"),
        (np.array([0.5, np.nan]), np.array([1.0, 0.0]), "input"),
        (np.array([-0.0, -1e-300]), np.array([1.0, 0.0]), "input"),
        (np.array([0.5, 0.5], np.float16), np.array([1.0, 2.0]), "target"),
        (np.array([0.5, 0.5]), np.array([1.0, -0.25]), "target"),
    ],
)
def test_an_out_of_range_update_raises_and_adds_nothing(x: Any, y: Any, message: str) -> None:
    metric = LossMetric(bcers.BCELoss())
    with pytest.raises(ValueError, match=f"elements of {message} should be between 0 and 1"):
        metric.update(x, y)
    # Not even the dtype: the metric is as new.
    assert metric.to_bytes() == LossMetric(bcers.BCELoss()).to_bytes()
    same(metric.compute(), np.float64(np.nan))
    metric.update(P, T)
    before = metric.to_bytes()
    with pytest.raises(ValueError, match="should be between 0 and 1"):
        metric.update(x, y)
    assert metric.to_bytes() == before
    same(metric.compute(), bcers.binary_cross_entropy(P, T))


def test_a_weight_that_does_not_broadcast_is_a_value_error() -> None:
    metric = LossMetric(bcers.BCEWithLogitsLoss())
    metric.update(P, T)
    before = metric.to_bytes()
    for weight in (np.ones(2), np.ones((3, 3)), np.ones((2, 3, 1)), np.ones((2, 1, 3))):
        with pytest.raises(ValueError, match="weight"):
            metric.update(P, T, weight=weight)
        assert metric.to_bytes() == before
    # The loss's own weight must broadcast to each batch.
    own = LossMetric(bcers.BCEWithLogitsLoss(weight=np.ones(3)))
    own.update(P, T)
    before = own.to_bytes()
    with pytest.raises(ValueError, match="weight"):
        own.update(P[:, :2], T[:, :2])
    assert own.to_bytes() == before
    with pytest.raises(ValueError, match="pos_weight"):
        LossMetric(bcers.BCEWithLogitsLoss(pos_weight=np.ones(2))).update(P, T)


# --- 5. log_loss ---------------------------------------------------------------------------------


def test_log_loss_is_scikit_learns() -> None:
    from bcers import metrics

    assert "log_loss" in metrics.__all__
    y = [0, 1, 1, 0, 1]
    p = [0.1, 0.8, 0.65, 0.3, 0.99]
    ours, theirs = log_loss(y, p), sk_log_loss(y, p)
    assert type(ours) is float
    assert abs(ours - theirs) <= 1e-12 * theirs
    w = [1.0, 2.0, 0.5, 1.0, 3.0]
    ours, theirs = log_loss(y, p, sample_weight=w), sk_log_loss(y, p, sample_weight=w)
    assert abs(ours - theirs) <= 1e-12 * theirs
    assert abs(log_loss(y, p) - log_loss(y, p, sample_weight=w)) > 1e-3


def test_metric_refuses_gpu_arrays(device: dict[str, Any]) -> None:
    from bcers import gpu

    metric = LossMetric(bcers.BCELoss())
    x = np.full(4, 0.5, np.float32)
    with pytest.raises(TypeError, match=r"^LossMetric takes NumPy arrays"):
        metric.update(gpu.asarray(x), x)
    with pytest.raises(TypeError, match=r"^LossMetric takes NumPy arrays"):
        metric.update(x, x, mask=gpu.asarray(np.ones(4, bool)))
    assert metric.count == 0
