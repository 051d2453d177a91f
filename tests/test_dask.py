"""bcers.dask: lazy Dask graphs whose results are bitwise those of the in-memory calls, on a
real distributed cluster (two worker processes) and on the synchronous scheduler."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import bcers  # noqa: E402
import bcers.dask as bd  # noqa: E402
import bcers.metrics as bm  # noqa: E402

FLOATS = [np.float32, np.float64, np.float16]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Two single-threaded worker processes."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


def same(a: Any, b: Any) -> bool:
    """The same shape, dtype and bits (NaN included)."""
    if a is None or b is None:
        return a is None and b is None
    if np.shape(a) != np.shape(b) or np.asarray(a).dtype != np.asarray(b).dtype:
        return False
    a = np.ascontiguousarray(np.atleast_1d(a))
    b = np.ascontiguousarray(np.atleast_1d(b))
    return np.array_equal(a.view(np.uint8), b.view(np.uint8))


def data(dtype: Any, loss: str, shape: tuple[int, ...] = (37, 23), seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    if loss == "bce":
        x = rng.random(shape).astype(dtype)
    else:
        x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.random(shape).astype(dtype)
    w = (rng.random(shape[-1]) * 3).astype(dtype)
    pw = (rng.random(shape[-1]) * 2).astype(dtype)
    m = rng.random(shape) < 0.8
    return x, y, w, pw, m


DERIVATIVES = {
    "bce": (bcers.binary_cross_entropy_derivatives, bd.binary_cross_entropy_derivatives),
    "logits": (
        bcers.binary_cross_entropy_with_logits_derivatives,
        bd.binary_cross_entropy_with_logits_derivatives,
    ),
    "focal": (bcers.sigmoid_focal_loss_derivatives, bd.sigmoid_focal_loss_derivatives),
}


def cases(loss: str) -> Iterator[dict[str, Any]]:
    """Every reduction, axis, keepdims, mask and weight combination (with the loss's own
    parameters), as keyword arguments."""
    extra: dict[str, Any] = {}
    if loss == "focal":
        extra = {"alpha": 0.3, "gamma": 1.5}
    for reduction in ("mean", "sum", "weighted_mean", "none"):
        axes: list[Any] = [None] if reduction == "none" else [None, 0, -1, (0, 1)]
        for axis in axes:
            for keepdims in (False, True) if axis is not None else (False,):
                for masked in (False, True):
                    for weighted in (False, True):
                        yield dict(
                            extra,
                            reduction=reduction,
                            axis=axis,
                            keepdims=keepdims,
                            masked=masked,
                            weighted=weighted,
                        )


def every_option(loss: str, dtype: Any, step: int = 1) -> tuple[list[Any], list[Any], list[Any]]:
    """The cases (every ``step``-th), the in-memory derivatives, and their graphs: values,
    gradients, target gradients and second derivatives of every reduction, over chunkings of
    the input, target, weight and mask that do not align, NumPy operands mixed in."""
    x, y, w, pw, m = data(dtype, loss)
    xd = da.from_array(x, chunks=(19, 12))
    yd = da.from_array(y, chunks=(10, 11))
    wd = da.from_array(w, chunks=9)
    md = da.from_array(m, chunks=(20, 9))
    memory, lazy = DERIVATIVES[loss]
    chosen, expected, graphs = [], [], []
    for i, case in enumerate(cases(loss)):
        if i % step:
            continue
        kw = dict(case)
        masked, weighted = kw.pop("masked"), kw.pop("weighted")
        kw["label_smoothing"] = 0.1 if i % 2 else 0.0
        if loss == "logits" and i % 3 == 0:
            kw["pos_weight"] = pw
        ref_kw = dict(kw, mask=m if masked else None, weight=w if weighted else None)
        lazy_w = (wd if i % 2 else w) if weighted else None
        lazy_kw = dict(kw, mask=md if masked else None, weight=lazy_w)
        chosen.append(case)
        expected.append(memory(x, y, grad_target=True, hess=True, **ref_kw))
        graphs.append(lazy(xd, yd if i % 2 else y, grad_target=True, hess=True, **lazy_kw))
        assert all(g is None or isinstance(g, da.Array) for g in graphs[-1])
    return chosen, expected, graphs


def check_all(chosen: list[Any], expected: list[Any], computed: list[Any]) -> None:
    assert len(computed) == len(expected)
    for case, ref, got in zip(chosen, expected, computed):
        for k, (a, b) in enumerate(zip(ref, got)):
            assert same(a, b), (case, bcers.Derivatives._fields[k], a, b)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("loss", ["bce", "logits", "focal"])
def test_every_option_bitwise(loss: str, dtype: Any) -> None:
    chosen, expected, graphs = every_option(loss, dtype)
    check_all(chosen, expected, dask.compute(graphs, scheduler="sync")[0])


@pytest.mark.parametrize("loss", ["bce", "logits", "focal"])
def test_options_bitwise_on_a_cluster(client: Any, loss: str) -> None:
    chosen, expected, graphs = every_option(loss, np.float32, step=4)
    check_all(chosen, expected, client.gather(client.compute(graphs)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functions_bitwise_on_the_synchronous_scheduler(dtype: Any) -> None:
    """The loss, _backward and _value_and_grad functions of the three losses."""
    x, y, w, pw, m = data(dtype, "logits", shape=(29, 4, 6), seed=3)
    p = 1 / (1 + np.exp(-x))
    xd = da.from_array(x, chunks=(8, 3, 4))
    pd = da.from_array(p, chunks=(8, 3, 4))
    g_axis = np.random.default_rng(4).random((29, 6)).astype(dtype)
    pairs = [
        (bcers.binary_cross_entropy(p, y, w), bd.binary_cross_entropy(pd, y, w)),
        (
            bcers.binary_cross_entropy(p, y, reduction="none", mask=m),
            bd.binary_cross_entropy(pd, y, reduction="none", mask=m),
        ),
        (
            bcers.binary_cross_entropy_backward(2.5, p, y, w, reduction="weighted_mean"),
            bd.binary_cross_entropy_backward(2.5, pd, y, w, reduction="weighted_mean"),
        ),
        (
            bcers.binary_cross_entropy_backward(g_axis, p, y, axis=1, mask=m),
            bd.binary_cross_entropy_backward(
                da.from_array(g_axis, chunks=5), pd, y, axis=1, mask=m
            ),
        ),
        (
            bcers.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="sum"),
            bd.binary_cross_entropy_with_logits(xd, y, pos_weight=pw, reduction="sum"),
        ),
        (
            bcers.binary_cross_entropy_with_logits_backward(None, x, y, w, pw, axis=(0, 2)),
            bd.binary_cross_entropy_with_logits_backward(None, xd, y, w, pw, axis=(0, 2)),
        ),
        (
            bcers.sigmoid_focal_loss(x, y, 0.4, 1.0, "mean", mask=m, axis=0, keepdims=True),
            bd.sigmoid_focal_loss(xd, y, 0.4, 1.0, "mean", mask=m, axis=0, keepdims=True),
        ),
        (
            bcers.sigmoid_focal_loss_backward(y, x, y, 0.25, 2.0, "none", w),
            bd.sigmoid_focal_loss_backward(da.from_array(y, chunks=5), xd, y, 0.25, 2.0, "none", w),
        ),
    ]
    for fm, fd, args in (
        (bcers.binary_cross_entropy_value_and_grad, bd.binary_cross_entropy_value_and_grad, (p,)),
        (
            bcers.binary_cross_entropy_with_logits_value_and_grad,
            bd.binary_cross_entropy_with_logits_value_and_grad,
            (x,),
        ),
        (bcers.sigmoid_focal_loss_value_and_grad, bd.sigmoid_focal_loss_value_and_grad, (x,)),
    ):
        lazy_input = da.from_array(args[0], chunks=(8, 3, 4))
        for kw in ({"reduction": "mean"}, {"reduction": "none"}, {"reduction": "sum", "axis": -1}):
            ref = fm(args[0], y, **kw)
            got = fd(lazy_input, y, **kw)
            pairs += list(zip(ref, got))
    computed = dask.compute(*[b for _, b in pairs], scheduler="sync")
    for (a, _), b in zip(pairs, computed):
        assert same(a, b), (a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_divide_after_and_overflowing_quotients(dtype: Any) -> None:
    """The derivatives' scale where grad_output / denominator is subnormal (divided after,
    as torch does) or would overflow (weights of subnormal size), per slot too."""
    x, y, _, _, m = data(dtype, "logits", shape=(40, 30), seed=5)
    xd = da.from_array(x, chunks=(7, 9))
    tiny = np.finfo(dtype).smallest_subnormal
    graphs, expected = [], []
    for g in (dtype(np.finfo(dtype).tiny), dtype(tiny * 3), dtype(1.0)):
        expected.append(bcers.binary_cross_entropy_with_logits_backward(g, x, y))
        graphs.append(bd.binary_cross_entropy_with_logits_backward(g, xd, y))
    w = np.full(30, tiny * 4, dtype)
    for axis in (None, 0, 1):
        kw: dict[str, Any] = {"reduction": "weighted_mean", "axis": axis, "mask": m}
        expected += bcers.binary_cross_entropy_with_logits_value_and_grad(x, y, w, **kw)
        graphs += bd.binary_cross_entropy_with_logits_value_and_grad(
            xd, y, da.from_array(w, chunks=4), **kw
        )
    g_slots = (np.random.default_rng(6).random(30) * np.finfo(dtype).tiny).astype(dtype)
    expected.append(bcers.binary_cross_entropy_with_logits_backward(g_slots, x, y, axis=0, mask=m))
    graphs.append(
        bd.binary_cross_entropy_with_logits_backward(
            da.from_array(g_slots, chunks=11), xd, y, axis=0, mask=m
        )
    )
    for a, b in zip(expected, dask.compute(*graphs, scheduler="sync")):
        assert same(a, b)


def test_routing_from_the_main_functions_and_classes(client: Any) -> None:
    x, y, w, pw, m = data(np.float32, "logits", seed=7)
    xd = da.from_array(x, chunks=(10, 10))
    yd = da.from_array(y, chunks=(10, 10))
    md = da.from_array(m, chunks=(10, 10))
    routed = {
        "function": bcers.binary_cross_entropy_with_logits(xd, y, w),
        "numpy input, dask target": bcers.binary_cross_entropy_with_logits(x, yd, w),
        "dask mask": bcers.binary_cross_entropy_with_logits(x, y, w, mask=md),
        "dask weight": bcers.binary_cross_entropy_with_logits(x, y, da.from_array(w)),
        "class": bcers.BCEWithLogitsLoss(weight=w, pos_weight=pw)(xd, yd, mask=md),
        "class, dask weight": bcers.BCEWithLogitsLoss(weight=da.from_array(w))(xd, y),
        "backward": bcers.BCEWithLogitsLoss(reduction="sum").backward(xd, y),
        "derivatives": bcers.SigmoidFocalLoss(reduction="none").derivatives(xd, y).grad,
    }
    expected = {
        "function": bcers.binary_cross_entropy_with_logits(x, y, w),
        "numpy input, dask target": bcers.binary_cross_entropy_with_logits(x, y, w),
        "dask mask": bcers.binary_cross_entropy_with_logits(x, y, w, mask=m),
        "dask weight": bcers.binary_cross_entropy_with_logits(x, y, w),
        "class": bcers.BCEWithLogitsLoss(weight=w, pos_weight=pw)(x, y, mask=m),
        "class, dask weight": bcers.BCEWithLogitsLoss(weight=w)(x, y),
        "backward": bcers.BCEWithLogitsLoss(reduction="sum").backward(x, y),
        "derivatives": bcers.SigmoidFocalLoss(reduction="none").derivatives(x, y).grad,
    }
    for name, graph in routed.items():
        assert isinstance(graph, da.Array), name
    computed = client.gather(client.compute(routed))
    for name in routed:
        assert same(expected[name], computed[name]), name


def _exploding(shape: tuple[int, ...], chunks: Any, dtype: Any) -> Any:
    """A Dask array whose chunks raise if they are ever computed."""

    def explode(block: Any) -> Any:
        raise AssertionError("a chunk was computed while the graph was built")

    base = da.zeros(shape, chunks=chunks, dtype=dtype)
    return base.map_blocks(explode, dtype=dtype, meta=np.empty((0,) * len(shape), dtype))


def test_building_a_graph_computes_nothing() -> None:
    x = _exploding((50, 12), (13, 5), np.float32)
    y = _exploding((50, 12), (7, 12), np.float32)
    w = _exploding((12,), (4,), np.float32)
    m = _exploding((50, 12), (25, 3), np.bool_)
    g = _exploding((12,), (5,), np.float32)
    graphs = [
        bd.binary_cross_entropy(x, y, w, reduction="weighted_mean", mask=m),
        bd.binary_cross_entropy_backward(None, x, y, w, reduction="weighted_mean", mask=m),
        bd.binary_cross_entropy_backward(g, x, y, w, axis=0, mask=m),
        *bd.binary_cross_entropy_with_logits_value_and_grad(x, y, w, mask=m, axis=1),
        *bd.sigmoid_focal_loss_derivatives(x, y, reduction="mean", mask=m, hess=True),
        bcers.binary_cross_entropy(x, y, w, mask=m),
        bcers.BCEWithLogitsLoss(reduction="none")(x, y, mask=m),
        bd.log_loss(_exploding((50,), 9, np.int64), x[:, 0], sample_weight=w[:1].repeat(50)),
    ]
    assert all(isinstance(a, da.Array) for a in graphs if a is not None)
    with pytest.raises(AssertionError, match="a chunk was computed"):
        graphs[0].compute(scheduler="sync")


def test_import_does_not_import_dask_and_its_absence_is_explained() -> None:
    code = "import sys, bcers; assert 'dask' not in sys.modules, 'dask was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    code = (
        "import sys\n"
        "sys.modules['dask'] = None\n"
        "try:\n"
        "    import bcers.dask\n"
        "except ImportError as e:\n"
        "    assert 'pip install bcers[dask]' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_log_loss_matches_scikit_learn_and_bcers_metrics(client: Any) -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(8)
    n = 3001
    p = rng.random(n)
    t = rng.integers(0, 2, n)
    pd = da.from_array(p, chunks=400)
    td = da.from_array(t, chunks=333)
    integer_weights = rng.integers(1, 5, n).astype(np.float64)
    weights = rng.random(n)
    confident = np.where(t == 1, 1 - 1e-9, 1e-9)  # bcers.metrics' small-loss path
    two = np.stack([1 - p, p], axis=1)
    cases: list[tuple[Any, Any, dict[str, Any], Any, Any, dict[str, Any]]] = [
        (t, p, {}, td, pd, {}),
        (t, p, {"normalize": False}, td, pd, {"normalize": False}),
        (t, p, {"labels": [0, 1]}, td, p, {"labels": [0, 1]}),
        (2 * t - 1, p, {}, 2 * td - 1, pd, {}),
        (t.astype(bool), p, {}, td.astype(bool), pd, {}),
        (t, two, {}, td, da.from_array(two, chunks=(500, 1)), {}),
        (t, confident, {}, td, da.from_array(confident, chunks=700), {}),
        (
            t,
            p,
            {"sample_weight": integer_weights},
            td,
            pd,
            {"sample_weight": da.from_array(integer_weights, chunks=900)},
        ),
    ]
    graphs = [bd.log_loss(yd, ppd, **kwd) for _, _, _, yd, ppd, kwd in cases]
    computed = client.gather(client.compute(graphs))
    for (y, pp, kw, _, _, _), got in zip(cases, computed):
        assert got == bm.log_loss(y, pp, **kw), kw
        assert np.asarray(got).dtype == np.float64
        ref = sklearn_metrics.log_loss(y, pp, **kw)
        assert abs(got - ref) <= 1e-12 * abs(ref)
    # Weights whose float64 sum rounds (and signed ones): bitwise bcers.metrics, whose sum of
    # the weights is exact too; scikit-learn's within its pairwise sum's rounding.
    rounded = np.random.default_rng(0).random(n)
    assert float(rounded.sum()) != math.fsum(rounded)  # NumPy's pairwise sum rounds here
    for w in (weights, weights - 0.25, rounded):
        got = bd.log_loss(td, pd, sample_weight=da.from_array(w, chunks=700)).compute(
            scheduler="sync"
        )
        assert got == bm.log_loss(t, p, sample_weight=w)
        ref = sklearn_metrics.log_loss(t, p, sample_weight=w)
        assert abs(got - ref) <= 1e-12 * abs(ref)
    # float32 probabilities: bitwise bcers.metrics.
    p32 = p.astype(np.float32)
    got = bd.log_loss(td, da.from_array(p32, chunks=500)).compute(scheduler="sync")
    assert got == bm.log_loss(t, p32)


def test_log_loss_errors() -> None:
    t = np.array([0, 1, 1, 0, 1])
    p = np.array([0.2, 0.7, 0.9, 0.1, 0.6])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        bd.log_loss(da.from_array(t[:4]), da.from_array(p))
    bad = bd.log_loss(da.from_array(t, chunks=2), da.from_array(p * 2, chunks=2))
    with pytest.raises(ValueError, match="greater than 1"):
        bad.compute(scheduler="sync")
    one = bd.log_loss(da.from_array(np.ones(5, int), chunks=2), da.from_array(p, chunks=2))
    with pytest.raises(ValueError, match="only one label"):
        one.compute(scheduler="sync")
    three = bd.log_loss(da.from_array(np.arange(5) % 3, chunks=2), da.from_array(p, chunks=2))
    with pytest.raises(ValueError, match="binary problems"):
        three.compute(scheduler="sync")
    outside = bd.log_loss(da.from_array(t * 2, chunks=2), da.from_array(p, chunks=2), labels=[0, 1])
    with pytest.raises(ValueError, match="not belonging to the passed labels"):
        outside.compute(scheduler="sync")
    with pytest.raises(TypeError, match="labels represented as bytes"):
        bd.log_loss(np.array([b"a", b"b", b"a", b"b", b"a"]), da.from_array(p))
    with pytest.raises(TypeError, match=r"numeric, boolean or str y_true.*astype\(str\)"):
        bd.log_loss(np.array(["a", "b", "a", "b", "a"], dtype=object), da.from_array(p))
    strings = da.from_array(np.array(["a", "b", "c", "b", "a"]), chunks=2)
    with pytest.raises(ValueError, match="binary problems"):
        bd.log_loss(strings, da.from_array(p, chunks=2)).compute(scheduler="sync")


def test_log_loss_takes_string_labels() -> None:
    """str labels, as scikit-learn takes them: the greater string is the positive class; a
    chunk may hold one class only; bitwise bcers.metrics, scikit-learn within 1e-12."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(12)
    n = 1001
    p = rng.random(n)
    t = np.where(rng.random(n) < 0.5, "spam", "ham")
    t[:300] = "ham"  # the first chunk holds one class
    w = rng.random(n)
    two = np.stack([1 - p, p], axis=1)
    cases: list[tuple[Any, dict[str, Any], Any, dict[str, Any]]] = [
        (p, {}, da.from_array(p, chunks=300), {}),
        (p, {"labels": ["ham", "spam"]}, da.from_array(p, chunks=300), {"labels": ["ham", "spam"]}),
        (
            p,
            {"sample_weight": w},
            da.from_array(p, chunks=300),
            {"sample_weight": da.from_array(w, chunks=400)},
        ),
        (two, {}, da.from_array(two, chunks=(250, 2)), {}),
    ]
    for pp, kw, ppd, kwd in cases:
        got = bd.log_loss(da.from_array(t, chunks=300), ppd, **kwd).compute(scheduler="sync")
        assert got == bm.log_loss(t, pp, **kw), kw
        ref = sklearn_metrics.log_loss(t, pp, **kw)
        assert abs(got - ref) <= 1e-12 * abs(ref), kw
    undeclared = bd.log_loss(
        da.from_array(t, chunks=300), da.from_array(p, chunks=300), labels=["eggs", "ham"]
    )
    with pytest.raises(ValueError, match="not belonging to the passed labels"):
        undeclared.compute(scheduler="sync")


def test_errors(client: Any) -> None:
    x, y, _, _, m = data(np.float32, "bce", seed=9)
    xd = da.from_array(x, chunks=(10, 7))
    with pytest.raises(ValueError, match="must be the same as input size"):
        bd.binary_cross_entropy(xd, y[:-1])
    with pytest.raises(ValueError, match="cannot be broadcast"):
        bd.binary_cross_entropy(xd, y, np.ones(5, np.float32))
    with pytest.raises(TypeError, match="mask must be an array of booleans"):
        bd.binary_cross_entropy(xd, y, mask=da.from_array(m.astype(np.int8)))
    with pytest.raises(TypeError, match="float16, float32 or float64"):
        bd.binary_cross_entropy(da.from_array(x.astype(np.int32)), y)
    with pytest.raises(ValueError, match="not 'none'"):
        bd.binary_cross_entropy(xd, y, reduction="none", axis=0)
    with pytest.raises(ValueError, match="out of bounds"):
        bd.binary_cross_entropy(xd, y, axis=2)
    with pytest.raises(ValueError, match="reduced loss's shape"):
        bd.binary_cross_entropy_backward(np.ones(5, np.float32), xd, y, axis=0)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        bd.binary_cross_entropy(xd, y, reduction="avg")
    # Out of range: raised at compute, with the index in the whole input, as in memory.
    x_bad = x.copy()
    x_bad[25, 17] = 1.5
    with pytest.raises(ValueError, match="between 0 and 1") as in_memory:
        bcers.binary_cross_entropy(x_bad, y)
    for reduction in ("mean", "none"):
        graph = bd.binary_cross_entropy(
            da.from_array(x_bad, chunks=(10, 7)), y, reduction=reduction
        )
        with pytest.raises(ValueError, match="between 0 and 1") as lazily:
            client.compute(graph).result()
        assert str(lazily.value) == str(in_memory.value)
    graph = bd.binary_cross_entropy_backward(None, da.from_array(x_bad, chunks=(10, 7)), y)
    with pytest.raises(ValueError, match=r"input\[25, 17\] is 1.5"):
        graph.compute(scheduler="sync")


def test_zero_dimensional_and_single_chunk_inputs() -> None:
    x = np.float32(0.3)
    y = np.float32(1.0)
    for reduction in ("mean", "sum", "none"):
        a = bcers.binary_cross_entropy_value_and_grad(
            np.asarray(x), np.asarray(y), reduction=reduction
        )
        b = dask.compute(
            *bd.binary_cross_entropy_value_and_grad(x, y, reduction=reduction), scheduler="sync"
        )
        assert same(a[0], b[0])
        assert same(a[1], b[1])
    x2, y2, *_ = data(np.float64, "bce", seed=10)
    a = bcers.binary_cross_entropy(x2, y2, axis=1)
    b = bd.binary_cross_entropy(x2, y2, axis=1).compute(scheduler="sync")
    assert same(a, b)
