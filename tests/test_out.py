"""``out=`` of the ``derivatives`` functions and methods: the caller's arrays are written and
returned, with the bits of a call without ``out``, for every loss, dtype, layout, size and
option; bad ``out`` arguments are clear errors that write nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import bcers

LOSSES = {
    "bce": (bcers.binary_cross_entropy_derivatives, {}),
    "logits": (bcers.binary_cross_entropy_with_logits_derivatives, {}),
    "focal": (bcers.sigmoid_focal_loss_derivatives, {"alpha": 0.25, "gamma": 2.0}),
}
FIELDS = bcers.Derivatives._fields


def operands(loss: str, shape: tuple[int, ...], dtype: Any, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.001, 0.999, shape) if loss == "bce" else 3 * rng.standard_normal(shape)
    y = rng.random(shape)
    return x.astype(dtype), y.astype(dtype)


def sentinels(like: np.ndarray, which: tuple[bool, ...]) -> bcers.Derivatives:
    """NaN-filled arrays for the fields asked for: an element the call does not write shows."""
    return bcers.Derivatives(
        *(np.full(like.shape, np.nan, like.dtype) if w else None for w in which)
    )


def assert_same_bits(a: Any, b: Any) -> None:
    a, b = (np.ascontiguousarray(np.atleast_1d(np.asarray(v))) for v in (a, b))
    assert a.dtype == b.dtype
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (300, 301), (2, 70_001)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum", "weighted_mean"])
def test_out_holds_the_bits_of_a_fresh_call(
    loss: str, dtype: Any, shape: tuple[int, ...], reduction: str
) -> None:
    fn, params = LOSSES[loss]
    x, y = operands(loss, shape, dtype)
    rng = np.random.default_rng(1)
    kw: dict[str, Any] = dict(
        params,
        weight=rng.uniform(0.5, 2, shape[-1]).astype(dtype),
        reduction=reduction,
        mask=rng.random(shape) < 0.9,
        label_smoothing=0.1,
        grad_target=True,
        hess=True,
    )
    fresh = fn(x, y, **kw)
    which = (reduction == "none", True, True, True)
    out = sentinels(x, which)
    got = fn(x, y, **kw, out=out)
    for k, name in enumerate(FIELDS):
        if which[k]:
            assert got[k] is out[k], name
        assert_same_bits(got[k], fresh[k])


@pytest.mark.parametrize("loss", list(LOSSES))
def test_out_with_other_layouts_and_options(loss: str) -> None:
    fn, params = LOSSES[loss]
    x, y = operands(loss, (400, 300), np.float32, seed=2)
    cases: list[tuple[Any, Any, dict[str, Any]]] = [
        (x.T, y.T, {}),  # F-ordered operands: C-ordered outputs
        (x[:, ::2], y[:, ::2], {"axis": 1}),  # strided, per-row means
        (x, y, {"axis": (0,), "keepdims": True}),
        # More axes than the native module takes: the squeezed call's outputs are copied.
        (x.reshape(2, 1, 3, 1, 20, 1, 1000), y.reshape(2, 1, 3, 1, 20, 1, 1000), {}),
    ]
    for xs, ys, kw in cases:
        kw["reduction"] = "mean"
        fresh = fn(xs, ys, **params, **kw, value=False, hess=True)
        out = sentinels(np.asarray(xs), (False, True, False, True))
        got = fn(xs, ys, **params, **kw, value=False, hess=True, out=out)
        assert got.grad is out.grad
        assert got.hess is out.hess
        assert got.value is None
        assert_same_bits(got.grad, fresh.grad)
        assert_same_bits(got.hess, fresh.hess)


def test_out_values_against_a_float64_reference() -> None:
    """The logits loss's gradient and second derivative written into out, against float64."""
    z, y = operands("logits", (100_000,), np.float32, seed=3)
    out = sentinels(z, (False, True, False, True))
    got = bcers.binary_cross_entropy_with_logits_derivatives(z, y, value=False, hess=True, out=out)
    p = 1 / (1 + np.exp(-z.astype(np.float64)))
    n = z.size
    np.testing.assert_allclose(got.grad, (p - y) / n, rtol=2e-6, atol=1e-12)
    np.testing.assert_allclose(got.hess, p * (1 - p) / n, rtol=2e-6, atol=1e-12)


def test_out_of_the_classes_and_partial_out() -> None:
    z, y = operands("logits", (100_000,), np.float64, seed=4)
    for loss in (bcers.BCEWithLogitsLoss(reduction="sum"), bcers.SigmoidFocalLoss(gamma=1.5)):
        fresh = loss.derivatives(z, y, value=False, hess=True)
        hess = np.full_like(z, np.nan)
        got = loss.derivatives(
            z, y, value=False, hess=True, out=bcers.Derivatives(None, None, None, hess)
        )
        assert got.hess is hess
        assert got.grad is not None
        assert_same_bits(got.hess, fresh.hess)
        assert_same_bits(got.grad, fresh.grad)
    # The same out arrays again: reused, call after call.
    out = sentinels(z, (False, True, False, True))
    loss = bcers.BCEWithLogitsLoss()
    for seed in (5, 6):
        zz, yy = operands("logits", (100_000,), np.float64, seed=seed)
        got = loss.derivatives(zz, yy, value=False, hess=True, out=out)
        fresh = loss.derivatives(zz, yy, value=False, hess=True)
        assert got.grad is out.grad
        assert_same_bits(got.grad, fresh.grad)
        assert_same_bits(got.hess, fresh.hess)


@pytest.mark.parametrize("n", [10, 100_000])
def test_bad_out_is_a_clear_error_and_writes_nothing(n: int) -> None:
    fn = bcers.binary_cross_entropy_with_logits_derivatives
    z, y = operands("logits", (n,), np.float32, seed=7)
    nan = lambda dtype=np.float32, shape=(n,): np.full(shape, np.nan, dtype)  # noqa: E731
    D = bcers.Derivatives
    bad: list[tuple[Any, dict[str, Any], type[Exception], str]] = [
        ([None, nan(), None, None], {}, TypeError, "out must be a bcers.Derivatives"),
        ((None, nan()), {}, TypeError, "out must be a bcers.Derivatives"),
        (
            D(None, nan(), None, nan()),
            {},
            ValueError,
            "out.hess is given, but the call does not ask",
        ),
        (
            D(nan(), nan(), None, None),
            {"value": True},
            ValueError,
            "out.value is given, but the value is reduced",
        ),
        (D(None, nan(np.float64), None, None), {}, TypeError, "out.grad has dtype float64"),
        (D(None, nan(shape=(n + 1,)), None, None), {}, ValueError, "out.grad has shape"),
        (D(None, list(range(n)), None, None), {}, TypeError, "out.grad must be a numpy.ndarray"),
        (D(None, z, None, None), {}, ValueError, "out.grad overlaps an operand"),
        (D(None, y[::-1], None, None), {}, ValueError, "out.grad overlaps an operand"),
    ]
    shared = nan()
    bad.append((D(None, shared, None, shared), {"hess": True}, ValueError, "overlaps"))
    readonly = nan()
    readonly.flags.writeable = False
    bad.append((D(None, readonly, None, None), {}, ValueError, "out.grad is read-only"))
    z0, y0 = z.copy(), y.copy()
    for out, kw, error, message in bad:
        with pytest.raises(error, match=message):
            fn(z, y, **{"value": False, **kw}, out=out)
        for a in out:
            if isinstance(a, np.ndarray) and a is not z and a.base is not y:
                assert np.isnan(a).all(), message  # nothing written
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(y, y0)


def test_out_on_the_gpu_is_a_type_error() -> None:
    if not bcers.gpu.is_available():
        pytest.skip("no GPU adapter")
    z, y = operands("logits", (1000,), np.float32)
    zd, yd = bcers.gpu.asarray(z), bcers.gpu.asarray(y)
    out = sentinels(z, (False, True, False, False))
    with pytest.raises(TypeError, match="out takes NumPy arrays; this call runs on the GPU"):
        bcers.binary_cross_entropy_with_logits_derivatives(zd, yd, value=False, out=out)
    assert np.isnan(out.grad).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [{}, {"mask": True, "label_smoothing": 0.1, "axis": [1]}])
def test_the_native_call_writes_into_out_in_place(dtype: Any, options: dict[str, Any]) -> None:
    """Large C-ordered calls write the caller's arrays themselves (no copy afterwards): the
    native module returns them, with the bits of a call that allocates."""
    z, y = operands("logits", (100, 1000), dtype, seed=8)
    kw = dict(options)
    if kw.pop("mask", False):
        kw["mask"] = np.random.default_rng(9).random(z.shape) < 0.9
    reduction = "mean" if "axis" in kw else "none"
    args = ("logits", 0.0, 0.0, z, y, None, None, None, reduction, reduction == "none", True)
    fresh = bcers._bcers.compute(*args, **kw, hess=True)
    out = sentinels(z, (reduction == "none", True, False, True))
    got = bcers._bcers.compute(*args, **kw, hess=True, out=tuple(out))
    for k in (0, 1, 3):
        if out[k] is not None:
            assert got[k] is out[k]
            assert_same_bits(got[k], fresh[k])


def test_the_python_layer_hands_out_to_the_native_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every option: ``out`` reaches the native call (not dropped for a copy)."""
    from bcers import _functional

    seen: list[Any] = []
    compute = _functional._bcers.compute

    def spy(*args: Any, **kw: Any) -> Any:
        seen.append(kw.get("out"))
        return compute(*args, **kw)

    monkeypatch.setattr(_functional._bcers, "compute", spy)
    z, y = operands("logits", (100, 1000), np.float32, seed=10)
    keep = np.random.default_rng(11).random(z.shape) < 0.9
    for kw in ({}, {"mask": keep, "label_smoothing": 0.1, "axis": 1}):
        out = sentinels(z, (False, True, False, True))
        got = bcers.binary_cross_entropy_with_logits_derivatives(
            z, y, value=False, hess=True, out=out, **kw
        )
        assert seen[-1] is out
        assert got.grad is out.grad
