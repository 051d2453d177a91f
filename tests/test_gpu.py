"""The GPU path (``bcers.gpu``) against the NumPy path: every function and class, shapes,
broadcasting, reductions, edge values, errors, arrays larger than one binding and dispatches
of more than 65,535 workgroups.

Without a GPU adapter the tests are skipped (the reason is printed by ``-ra``), unless
``BCERS_REQUIRE_GPU=1`` (CI sets it), where they fail. The tests of the no-adapter behaviour
run everywhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from typing import Any, Callable

import numpy as np
import pytest

import bcers
from bcers import gpu

REDUCTIONS = ("none", "mean", "sum")


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def probs(shape: tuple[int, ...], seed: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    return rng(seed).random(shape, dtype=np.float32)


def logits(shape: tuple[int, ...], seed: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    return (rng(seed).standard_normal(shape) * 4).astype(np.float32)


def host(value: Any) -> Any:
    """A GPU result on the host (reductions are already NumPy scalars)."""
    if type(value) is gpu.Array:
        return value.numpy()
    return value


def assert_matches(dev: Any, cpu: Any, what: str = "") -> None:
    """Same kind of result, same dtype (float32), values within 2e-5 relative."""
    if isinstance(cpu, np.ndarray):
        assert type(dev) is gpu.Array, what
        got = dev.numpy()
        assert got.shape == cpu.shape, what
        assert got.dtype == np.float32, what
        np.testing.assert_allclose(got, cpu, rtol=2e-5, atol=1e-6, err_msg=what)
    else:
        assert type(dev) is np.float32, (what, type(dev))
        np.testing.assert_allclose(dev, cpu, rtol=2e-5, atol=0, err_msg=what)


def calls(logit: bool, **kw: Any) -> dict[str, Callable[..., Any]]:
    """Every entry point of one loss, by name, taking (input, target, reduction)."""
    if logit:
        f: Any = bcers.binary_cross_entropy_with_logits
        b: Any = bcers.binary_cross_entropy_with_logits_backward
        v: Any = bcers.binary_cross_entropy_with_logits_value_and_grad
        cls: Any = bcers.BCEWithLogitsLoss
    else:
        f, b = bcers.binary_cross_entropy, bcers.binary_cross_entropy_backward
        v, cls = bcers.binary_cross_entropy_value_and_grad, bcers.BCELoss
    g = kw.pop("grad_output", None)
    return {
        "forward": lambda x, y, r: f(x, y, reduction=r, **kw),
        "backward": lambda x, y, r: b(g if r == "none" else None, x, y, reduction=r, **kw),
        "backward_g": lambda x, y, r: b(
            g if r == "none" and g is not None else np.float32(2.5), x, y, reduction=r, **kw
        ),
        "value_and_grad": lambda x, y, r: v(x, y, reduction=r, **kw),
        "class": lambda x, y, r: cls(reduction=r, **kw)(x, y),
        "class.backward": lambda x, y, r: cls(reduction=r, **kw).backward(x, y),
        "class.value_and_grad": lambda x, y, r: cls(reduction=r, **kw).value_and_grad(x, y),
    }


def compare(logit: bool, x: Any, y: Any, what: str, **kw: Any) -> None:
    """Each entry point on the GPU (x uploaded) against the NumPy path, in each reduction."""
    gpu_kw = {k: (gpu.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    dx = gpu.asarray(x)
    for r in REDUCTIONS:
        cpu_calls, dev_calls = calls(logit, **kw), calls(logit, **gpu_kw)
        for name, call in cpu_calls.items():
            cpu = call(x, y, r)
            dev = dev_calls[name](dx, y, r)
            label = f"{what} {name} {r}"
            if isinstance(cpu, tuple):
                assert isinstance(dev, tuple), label
                assert_matches(dev[0], cpu[0], label + " loss")
                assert_matches(dev[1], cpu[1], label + " grad")
            else:
                assert_matches(dev, cpu, label)


SHAPES = [(), (0,), (1,), (7,), (3, 5), (2, 3, 4), (2, 1, 3, 5)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_entry_point_matches_numpy(device: dict[str, Any], shape: tuple[int, ...]) -> None:
    compare(False, probs(shape, 1), probs(shape, 2), f"bce {shape}")
    compare(True, logits(shape, 3), probs(shape, 4), f"logits {shape}")


def broadcasts(a: int, b: int, c: int) -> list[tuple[int, ...]]:
    return [(), (1,), (c,), (b, 1), (b, c), (a, 1, 1), (a, 1, c), (1, b, c), (a, b, c)]


@pytest.mark.parametrize("i", range(9))
def test_weight_pos_weight_and_grad_output_broadcast(device: dict[str, Any], i: int) -> None:
    shape = (4, 3, 5)
    shapes = broadcasts(*shape)
    w = rng(10 + i).random(shapes[i], dtype=np.float32) * 2
    pw = rng(20 + i).random(shapes[(i + 4) % 9], dtype=np.float32) * 3
    g = rng(30 + i).standard_normal(shapes[(i + 2) % 9]).astype(np.float32)
    x, p, y = logits(shape, 5), probs(shape, 6), probs(shape, 7)
    compare(False, p, y, f"bce weight {shapes[i]}", weight=w, grad_output=g)
    compare(True, x, y, f"logits weight {shapes[i]}", weight=w, pos_weight=pw, grad_output=g)


def test_mixed_arguments_go_to_the_gpu(device: dict[str, Any]) -> None:
    x, y = probs((6, 4), 1), probs((6, 4), 2)
    w = rng(3).random(4)  # float64: cast to float32, as on the CPU
    cpu = bcers.binary_cross_entropy(x, y, w)
    # Any one argument on the GPU sends the call there; the NumPy ones are uploaded.
    for args in [
        (gpu.asarray(x), y, w),
        (x, gpu.asarray(y), w),
        (x, y, gpu.asarray(w.astype(np.float32))),
    ]:
        assert_matches(bcers.binary_cross_entropy(*args), cpu)
    # grad_output alone on the GPU.
    g = gpu.asarray(np.float32(3.0))
    assert_matches(
        bcers.binary_cross_entropy_backward(g, x, y, reduction="sum"),
        bcers.binary_cross_entropy_backward(3.0, x, y, reduction="sum"),
    )
    # Integer and bool targets, a float16 input (upcast: float32 results), lists.
    labels = rng(4).integers(0, 2, (6, 4))
    z = logits((6, 4), 5)
    assert_matches(
        bcers.binary_cross_entropy_with_logits(gpu.asarray(z), labels.astype(bool)),
        bcers.binary_cross_entropy_with_logits(z, labels),
    )
    half = z.astype(np.float16)
    dev = bcers.binary_cross_entropy_with_logits(half, gpu.asarray(labels), reduction="none")
    assert_matches(
        dev,
        bcers.binary_cross_entropy_with_logits(half.astype(np.float32), labels, reduction="none"),
    )
    assert_matches(
        bcers.BCEWithLogitsLoss(pos_weight=gpu.asarray(np.ones(4, np.float32) * 2))(z, labels),
        bcers.BCEWithLogitsLoss(pos_weight=np.ones(4) * 2)(z, labels),
    )


def test_float32_only(device: dict[str, Any]) -> None:
    x64 = rng(1).random((3,))
    y = gpu.asarray(np.float32([0, 1, 1]))
    with pytest.raises(TypeError, match="float32 only: input has dtype float64"):
        bcers.binary_cross_entropy(x64, y)
    with pytest.raises(TypeError, match="float32 only: array has dtype float64"):
        gpu.asarray(x64)
    with pytest.raises(TypeError, match="input must be an array of float16, float32 or float64"):
        bcers.binary_cross_entropy(np.array([1, 0, 1]), y)
    with pytest.raises(TypeError, match="target must be an array of real numbers"):
        bcers.binary_cross_entropy(gpu.asarray(np.float32([0.5])), np.array(["a"]))
    assert gpu.asarray(np.float16([0.5, 1])).dtype == np.float32
    assert gpu.asarray(np.array([True, False])).numpy().tolist() == [1.0, 0.0]


def test_edge_values(device: dict[str, Any]) -> None:
    # BCE: the -100 floor, torch's EPS, tiny and extreme probabilities.
    xs = np.float32([0, 1, 1e-30, 1e-10, 0.5, 1 - 1e-7, 0.999, 1e-3])
    ys = np.float32([0, 1, 0.5, 0.25])
    x, y = (a.ravel() for a in np.meshgrid(xs, ys))
    compare(False, x, y, "bce edges")
    d = bcers.binary_cross_entropy(
        gpu.asarray(np.float32([0, 1])), np.float32([1, 0]), reduction="none"
    )
    assert d.numpy().tolist() == [100.0, 100.0]
    g = bcers.binary_cross_entropy_backward(
        None, gpu.asarray(np.float32([0])), np.float32([1]), reduction="sum"
    )
    assert g.numpy()[0] == np.float32(-999999995904.0)
    # Logits: infinities give the limits, tiny gradients survive.
    inf = np.inf
    xs = np.float32([inf, -inf, 20, -20, 80, -80, 0, -0.0, 1e4, -1e4, 3])
    ys = np.float32([0, 1, 0.5, 2])
    x, y = (a.ravel() for a in np.meshgrid(xs, ys))
    compare(True, x, y, "logits edges", pos_weight=np.float32([3]))
    loss = bcers.binary_cross_entropy_with_logits(
        gpu.asarray(np.float32([inf, -inf, inf, -inf])), np.float32([1, 0, 0, 1]), reduction="none"
    )
    assert loss.numpy().tolist() == [0, 0, inf, inf]
    grad = bcers.binary_cross_entropy_with_logits_backward(
        None, gpu.asarray(np.float32([20])), np.float32([1]), reduction="sum"
    )
    np.testing.assert_allclose(grad.numpy(), [-2.0611537e-9], rtol=1e-5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_range_check_raises_the_numpy_error(device: dict[str, Any], reduction: str) -> None:
    cases = [
        (np.float32([0.5, np.nan, 0.5]), np.float32([0.5, 0.5, 0.5]), "input[1] is NaN"),
        (np.float32([0.5, 0.5, 0.5]), np.float32([0.5, 0.5, 1.5]), "target[2] is 1.5"),
        (np.float32([0.5, 0.5, -0.1]), np.float32([0.5, 2.0, 0.5]), "target[1] is 2.0"),
        (np.float32([0.5, np.inf, 0.5]), np.float32([0.5, 2.0, 0.5]), "input[1] is inf"),
    ]
    for x, y, where in cases:
        which = where.split("[")[0]
        message = f"^all elements of {which} should be between 0 and 1; {re.escape(where)}$"
        dx = gpu.asarray(x)
        for name, call in calls(False).items():
            with pytest.raises(ValueError, match=message):
                call(x, y, reduction)
            with pytest.raises(ValueError, match=message):
                call(dx, y, reduction)
            assert name
    # The logits loss checks nothing.
    bcers.binary_cross_entropy_with_logits(gpu.asarray(np.float32([1, 2])), np.float32([2, -1]))


def error_of(f: Callable[..., Any], *args: Any, **kw: Any) -> Exception:
    try:
        f(*args, **kw)
    except Exception as e:
        return e
    raise AssertionError("no error")


def same_error(
    f: Callable[..., Any], cpu: tuple[Any, ...], dev: tuple[Any, ...], **kw: Any
) -> None:
    """``f(*cpu, **kw)`` and ``f(*dev, **kw)`` raise ValueError with the same message."""
    a, b = error_of(f, *cpu, **kw), error_of(f, *dev, **kw)
    assert type(a) is ValueError, a
    assert type(b) is ValueError, b
    assert str(a) == str(b)


def test_shape_errors_match_numpy(device: dict[str, Any]) -> None:
    x, y = probs((2, 3), 1), probs((2, 3), 2)
    dx = gpu.asarray(x)
    bad: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
        (bcers.binary_cross_entropy, (y.T,), {}),
        (bcers.binary_cross_entropy_with_logits, (y.T,), {}),
        (bcers.binary_cross_entropy, (y,), {"weight": np.ones((1, 2, 3), np.float32)}),
        (bcers.binary_cross_entropy_with_logits, (y,), {"pos_weight": np.ones(2, np.float32)}),
    ]
    for f, args, kw in bad:
        same_error(f, (x, *args), (dx, *args), **kw)
    for g, r in [(np.ones(3, np.float32), "mean"), (np.ones((2, 2), np.float32), "none")]:
        same_error(bcers.binary_cross_entropy_backward, (g, x, y), (g, dx, y), reduction=r)
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        bcers.binary_cross_entropy(dx, y, reduction="avg")  # type: ignore[arg-type]


def test_array_object(device: dict[str, Any]) -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    d = gpu.asarray(a[:, ::-2])
    assert isinstance(d, gpu.Array)
    assert gpu.asarray(d) is d
    assert d.shape == (3, 2)
    assert d.ndim == 2
    assert d.size == 6
    assert len(d) == 3
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d.numpy(), a[:, ::-2])
    np.testing.assert_array_equal(np.asarray(d), a[:, ::-2])
    assert repr(d).startswith("bcers.gpu.Array(shape=(3, 2), dtype=float32, device=")
    s = gpu.asarray(np.float32(1.5))
    assert s.shape == ()
    assert s.numpy()[()] == 1.5
    with pytest.raises(TypeError, match="unsized"):
        len(s)
    e = gpu.asarray(np.zeros((0, 3), np.float32))
    assert e.numpy().shape == (0, 3)
    assert np.isnan(bcers.binary_cross_entropy(e, e))
    assert bcers.binary_cross_entropy(e, e, reduction="sum") == 0
    info = gpu.adapter_info()
    assert set(info) >= {"name", "backend", "device_type", "driver"}


def test_sums_are_deterministic(device: dict[str, Any]) -> None:
    x, y = gpu.asarray(logits((300_000,), 1)), gpu.asarray(probs((300_000,), 2))
    first = bcers.binary_cross_entropy_with_logits(x, y, reduction="sum")
    for _ in range(3):
        again = bcers.binary_cross_entropy_with_logits(x, y, reduction="sum")
        assert again.tobytes() == first.tobytes()


_CHUNKED = """
import numpy as np, bcers
from bcers import gpu
assert gpu.adapter_info()["buffer_elements"] == 64, gpu.adapter_info()
r = np.random.default_rng(0)
def check(dev, cpu):
    if isinstance(cpu, tuple):
        return [check(a, b) for a, b in zip(dev, cpu)]
    dev = dev.numpy() if type(dev) is gpu.Array else dev
    np.testing.assert_allclose(dev, cpu, rtol=2e-5, atol=1e-6)
for shape, w, pw, g in [
    ((1000,), (1,), (1000,), (1000,)),
    ((3, 300), (300,), (3, 1), (300,)),
    ((5, 40, 3), (5, 40, 1), (40, 3), (40, 1)),
    ((7, 9, 11), (9, 11), (11,), (7, 1, 11)),
]:
    x = (r.standard_normal(shape) * 4).astype(np.float32)
    p = r.random(shape, dtype=np.float32)
    y = r.random(shape, dtype=np.float32)
    ww = r.random(w, dtype=np.float32)
    pp = r.random(pw, dtype=np.float32) * 3
    gg = r.random(g, dtype=np.float32)
    dx, dp = gpu.asarray(x), gpu.asarray(p)
    for red in ("none", "mean", "sum"):
        kw = dict(weight=ww, reduction=red)
        check(bcers.binary_cross_entropy_with_logits(dx, y, pos_weight=pp, **kw),
              bcers.binary_cross_entropy_with_logits(x, y, pos_weight=pp, **kw))
        check(bcers.binary_cross_entropy_with_logits_value_and_grad(dx, y, pos_weight=pp, **kw),
              bcers.binary_cross_entropy_with_logits_value_and_grad(x, y, pos_weight=pp, **kw))
        go = gg if red == "none" else 2.0
        check(bcers.binary_cross_entropy_backward(go, dp, y, **kw),
              bcers.binary_cross_entropy_backward(go, p, y, **kw))
        check(bcers.binary_cross_entropy_value_and_grad(dp, y, **kw),
              bcers.binary_cross_entropy_value_and_grad(p, y, **kw))
bad = np.full(1000, 0.5, np.float32); bad[700] = 2
yb = np.full(1000, 0.5, np.float32); yb[300] = -1
try:
    bcers.binary_cross_entropy(gpu.asarray(bad), yb)
except ValueError as e:
    assert str(e) == "all elements of target should be between 0 and 1; target[300] is -1.0", e
else:
    raise AssertionError("no range error")
print("chunked ok")
"""


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_many_buffers_passes_and_2d_dispatches(device: dict[str, Any]) -> None:
    """Buffers of 64 elements and at most 3 workgroups a side (test-only limits read from the
    environment when the device opens): small arrays take many buffers, passes, 2-D dispatches
    and broadcast operands spanning several buffers."""
    done = run_python(_CHUNKED, BCERS_GPU_MAX_BINDING_BYTES="256", BCERS_GPU_MAX_WORKGROUPS="3")
    assert done.returncode == 0, done.stderr
    assert "chunked ok" in done.stdout


def test_larger_than_one_binding_and_one_dispatch(device: dict[str, Any]) -> None:
    """40M float32 elements (160 MB: over the 128 MiB binding of lavapipe and many GPUs), and
    ``none`` dispatches of 40M / 256 > 65,535 workgroups."""
    n = 40_000_000
    x = logits((n,), 1)
    y = (x > 0.5).astype(np.float32)
    dx, dy = gpu.asarray(x), gpu.asarray(y)
    w = np.float32([0.75])
    assert_matches(
        bcers.binary_cross_entropy_with_logits(dx, dy, w),
        bcers.binary_cross_entropy_with_logits(x, y, w),
    )
    loss = bcers.binary_cross_entropy_with_logits(dx, dy, w, reduction="none")
    np.testing.assert_allclose(
        loss.numpy(),
        bcers.binary_cross_entropy_with_logits(x, y, w, reduction="none"),
        rtol=2e-5,
        atol=1e-6,
    )


def test_no_adapter_raises_runtime_error() -> None:
    """With no adapter (Vulkan pointed at a missing driver, no other backend), importing works,
    is_available() is False, and using the GPU raises RuntimeError saying what is missing."""
    code = """
    import numpy as np, bcers
    assert bcers.gpu.is_available() is False
    try:
        bcers.binary_cross_entropy_with_logits(bcers.gpu.asarray(np.float32([1])), [1])
    except RuntimeError as e:
        print(e)
    else:
        raise AssertionError("no RuntimeError")
    """
    done = run_python(
        code,
        WGPU_BACKEND="vulkan",
        VK_ICD_FILENAMES="/nonexistent.json",
        VK_DRIVER_FILES="/nonexistent.json",
    )
    assert done.returncode == 0, done.stderr
    assert "no GPU adapter found" in done.stdout
    assert "lavapipe" in done.stdout


def test_build_without_gpu_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "_BUILT", False)
    assert gpu.is_available() is False
    with pytest.raises(RuntimeError, match="lacks GPU support"):
        gpu.asarray(np.float32([1]))
    with pytest.raises(RuntimeError, match="lacks GPU support"):
        gpu.adapter_info()


def test_importing_does_not_open_the_device() -> None:
    done = run_python(
        "import bcers, bcers.gpu; print('imported')",
        WGPU_BACKEND="vulkan",
        VK_ICD_FILENAMES="/nonexistent.json",
        VK_DRIVER_FILES="/nonexistent.json",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


# ---------------------------------------------------------------------------------------------
# The sigmoid focal loss on the GPU: the CPU's float32 results.

# (alpha, gamma): the default; alpha off with gamma < 1; gamma 0 (alpha_t times BCE with
# logits); alpha at its ends with a large gamma; a non-integer gamma.
FOCAL_PARAMETERS = [(0.25, 2.0), (-1.0, 0.5), (0.0, 0.0), (1.0, 5.0), (0.75, 1.5)]


def focal_calls(alpha: float, gamma: float, **kw: Any) -> dict[str, Callable[..., Any]]:
    """Every entry point of the focal loss, by name, taking (input, target, reduction)."""
    f, b = bcers.sigmoid_focal_loss, bcers.sigmoid_focal_loss_backward
    v, cls = bcers.sigmoid_focal_loss_value_and_grad, bcers.SigmoidFocalLoss
    g = kw.pop("grad_output", None)
    return {
        "forward": lambda x, y, r: f(x, y, alpha, gamma, r, **kw),
        "backward": lambda x, y, r: b(g if r == "none" else None, x, y, alpha, gamma, r, **kw),
        "backward_g": lambda x, y, r: b(
            g if r == "none" and g is not None else np.float32(2.5), x, y, alpha, gamma, r, **kw
        ),
        "value_and_grad": lambda x, y, r: v(x, y, alpha, gamma, r, **kw),
        "class": lambda x, y, r: cls(alpha, gamma, r, **kw)(x, y),
        "class.backward": lambda x, y, r: cls(alpha, gamma, r, **kw).backward(x, y),
        "class.value_and_grad": lambda x, y, r: cls(alpha, gamma, r, **kw).value_and_grad(x, y),
    }


def compare_focal(
    params: tuple[float, float],
    x: Any,
    y: Any,
    what: str,
    check: Callable[[Any, Any, str], None] = assert_matches,
    **kw: Any,
) -> None:
    """Each focal entry point on the GPU (x uploaded) against the NumPy path, each reduction."""
    gpu_kw = {k: (gpu.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    dx = gpu.asarray(x)
    for r in REDUCTIONS:
        cpu_calls, dev_calls = focal_calls(*params, **kw), focal_calls(*params, **gpu_kw)
        for name, call in cpu_calls.items():
            cpu = call(x, y, r)
            dev = dev_calls[name](dx, y, r)
            label = f"focal{params} {what} {name} {r}"
            if isinstance(cpu, tuple):
                assert isinstance(dev, tuple), label
                check(dev[0], cpu[0], label + " loss")
                check(dev[1], cpu[1], label + " grad")
            else:
                check(dev, cpu, label)


def targets(shape: tuple[int, ...], seed: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Soft targets, a third of them hard (0 or 1)."""
    y = probs(shape, seed)
    y.flat[::3] = np.round(y.flat[::3])
    return y


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_focal_every_entry_point_matches_numpy(
    device: dict[str, Any], shape: tuple[int, ...]
) -> None:
    i = SHAPES.index(shape)
    for params in {FOCAL_PARAMETERS[0], FOCAL_PARAMETERS[1 + i % 4]}:
        compare_focal(params, logits(shape, 40 + i), targets(shape, 50 + i), f"{shape}")


@pytest.mark.parametrize("i", range(9))
def test_focal_weight_and_grad_output_broadcast(device: dict[str, Any], i: int) -> None:
    shape = (4, 3, 5)
    shapes = broadcasts(*shape)
    w = rng(60 + i).random(shapes[i], dtype=np.float32) * 2
    g = rng(70 + i).standard_normal(shapes[(i + 2) % 9]).astype(np.float32)
    x, y = logits(shape, 80 + i), targets(shape, 90 + i)
    params = FOCAL_PARAMETERS[i % len(FOCAL_PARAMETERS)]
    compare_focal(params, x, y, f"weight {shapes[i]}", weight=w, grad_output=g)


def test_focal_mixed_arguments_go_to_the_gpu(device: dict[str, Any]) -> None:
    x, y = logits((6, 4), 1), targets((6, 4), 2)
    w = rng(3).random(4)  # float64: cast to float32, as on the CPU
    for r in REDUCTIONS:
        cpu = bcers.sigmoid_focal_loss(x, y, 0.25, 2.0, r, w)
        for args in [
            (gpu.asarray(x), y, w),
            (x, gpu.asarray(y), w),
            (x, y, gpu.asarray(w.astype(np.float32))),
        ]:
            assert_matches(bcers.sigmoid_focal_loss(args[0], args[1], 0.25, 2.0, r, args[2]), cpu)
    # grad_output alone on the GPU.
    assert_matches(
        bcers.sigmoid_focal_loss_backward(gpu.asarray(np.float32(3.0)), x, y, reduction="sum"),
        bcers.sigmoid_focal_loss_backward(3.0, x, y, reduction="sum"),
    )
    # Integer and bool targets; a float16 input (upcast on upload: float32 results).
    labels = rng(4).integers(0, 2, (6, 4))
    assert_matches(
        bcers.sigmoid_focal_loss(gpu.asarray(x), labels.astype(bool), reduction="mean"),
        bcers.sigmoid_focal_loss(x, labels, reduction="mean"),
    )
    half = x.astype(np.float16)
    assert_matches(
        bcers.sigmoid_focal_loss(half, gpu.asarray(labels), -1.0, 0.5),
        bcers.sigmoid_focal_loss(half.astype(np.float32), labels, -1.0, 0.5),
    )
    # The class with a GPU weight.
    loss_fn = bcers.SigmoidFocalLoss(weight=gpu.asarray(np.float32([1, 2, 3, 4])))
    assert_matches(loss_fn(x, labels), bcers.SigmoidFocalLoss(weight=[1, 2, 3, 4])(x, labels))


def assert_close_at_every_scale(dev: Any, cpu: Any, what: str = "") -> None:
    """Like :func:`assert_matches`, with no absolute tolerance above the smallest normal numbers
    (subnormal results may be flushed to 0): tiny values keep their digits; infinities equal;
    never NaN."""
    assert not np.isnan(host(dev)).any(), what
    assert_matches(dev, cpu, what)
    tiny = float(np.finfo(np.float32).tiny)
    np.testing.assert_allclose(host(dev), cpu, rtol=2e-5, atol=4 * tiny, err_msg=what)
    np.testing.assert_array_equal(np.isinf(host(dev)), np.isinf(cpu), err_msg=what)


def test_focal_edge_values(device: dict[str, Any]) -> None:
    inf = np.inf
    xs = np.float32(
        [inf, -inf, 0, -0.0, 3, 12, -12, 20, -20, 30, -30, 50, -50, 88.7, -95, 104, 200, -1e4]
    )
    ys = np.float32([0, 1, 0.5, 0.25, 1e-30])
    x, y = (a.ravel() for a in np.meshgrid(xs, ys))
    finite = np.isfinite(x)
    for params in [(0.25, 2.0), (-1.0, 0.5), (0.25, 0.0), (0.0, 0.25), (1.0, 5.0)]:
        compare_focal(params, x, y, "edges", check=assert_close_at_every_scale)
        loss, grad = bcers.sigmoid_focal_loss_value_and_grad(gpu.asarray(x), y, *params)
        assert np.all(np.isfinite(loss.numpy()[finite])), params
        assert np.all(np.isfinite(grad.numpy())), params
    # The limits at infinite logits (alpha 0.25): 0 and 0 at (inf, 1); inf and 1 - alpha at
    # (inf, 0); inf and -alpha at (-inf, 1); 0 and 0 at (-inf, 0).
    loss, grad = bcers.sigmoid_focal_loss_value_and_grad(
        gpu.asarray(np.float32([inf, inf, -inf, -inf])), np.float32([1, 0, 1, 0])
    )
    assert loss.numpy().tolist() == [0, inf, inf, 0]
    assert grad.numpy().tolist() == [0, 0.75, -0.25, 0]
    # Where torchvision's gradient is NaN (1 - p_t rounds to 0, gamma < 1): finite, exact.
    x, y = np.float32([30, -30, 20, -20]), np.float32([1, 0, 1, 0])
    grad = bcers.sigmoid_focal_loss_backward(None, gpu.asarray(x), y, 0.25, 0.5)
    assert_close_at_every_scale(grad, bcers.sigmoid_focal_loss_backward(None, x, y, 0.25, 0.5))
    assert np.all(grad.numpy() != 0)


def test_focal_errors_match_numpy(device: dict[str, Any]) -> None:
    x, y = logits((2, 3), 1), probs((2, 3), 2)
    dx = gpu.asarray(x)
    same_error(bcers.sigmoid_focal_loss, (x, y.T), (dx, y.T))
    same_error(bcers.sigmoid_focal_loss, (x, y), (dx, y), weight=np.ones((1, 2, 3), np.float32))
    same_error(bcers.sigmoid_focal_loss, (x, y), (dx, y), gamma=-1.0)
    same_error(bcers.sigmoid_focal_loss_value_and_grad, (x, y), (dx, y), alpha=1.5)
    g = np.ones((2, 2), np.float32)
    same_error(bcers.sigmoid_focal_loss_backward, (g, x, y), (g, dx, y), reduction="none")
    g = np.ones(3, np.float32)
    same_error(bcers.sigmoid_focal_loss_backward, (g, x, y), (g, dx, y), reduction="mean")
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        bcers.sigmoid_focal_loss(dx, y, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float32 only: input has dtype float64"):
        bcers.sigmoid_focal_loss(x.astype(np.float64), gpu.asarray(y))


def test_focal_sums_are_deterministic(device: dict[str, Any]) -> None:
    x, y = gpu.asarray(logits((300_000,), 5)), gpu.asarray(targets((300_000,), 6))
    first = bcers.sigmoid_focal_loss(x, y, reduction="sum")
    assert type(first) is np.float32
    for _ in range(2):
        assert bcers.sigmoid_focal_loss(x, y, reduction="sum").tobytes() == first.tobytes()
    cpu = bcers.sigmoid_focal_loss(x.numpy(), y.numpy(), reduction="sum")
    np.testing.assert_allclose(first, cpu, rtol=2e-5)
