"""Memory layouts: every layout NumPy allows gives the values of the same data made C-contiguous.

bcers reads operands of any layout in place (``src/layout.rs``): it walks the input in memory
order, merges axes, and gathers what is not contiguous. Elementwise results do not depend on
the order elements are visited in, so they must be bitwise identical for every layout. The
reductions add the float64 element values in an order that may follow the layout; any two
orders of a float64 sum of n terms differ by at most ``2 * (n - 1) * 2**-53 * sum(|v_i|)``, and
each result is then rounded once to the result dtype (one ulp between them at most).
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import threading
import tracemalloc
from typing import Any, Callable

import numpy as np
import pytest

import bcers

RNG = np.random.default_rng(20240611)
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


# ---------------------------------------------------------------------------------------------
# Layouts: each maps a C-contiguous array to one with the same logical values.


def _strided(a: np.ndarray) -> np.ndarray:
    """Every second/third element of a larger buffer, with an offset."""
    steps = [2 + (i % 2) for i in range(a.ndim)]
    big = np.zeros(tuple(n * k + 1 for n, k in zip(a.shape, steps)), a.dtype)
    view = big[tuple(slice(1, None, k) for k in steps)]
    view[...] = a
    return view


def _reversed(a: np.ndarray, axes: Any = None) -> np.ndarray:
    """Negative strides on ``axes`` (all by default)."""
    axes = range(a.ndim) if axes is None else axes
    index = tuple(slice(None, None, -1) if ax in axes else slice(None) for ax in range(a.ndim))
    return np.array(a[index], order="C")[index]


def _permuted(a: np.ndarray) -> np.ndarray:
    """Memory order a rotation of the logical axis order (neither C nor Fortran for 3-D+)."""
    perm = [*list(range(1, a.ndim)), 0]
    return np.array(a.transpose(perm), order="C").transpose(np.argsort(perm))


def _readonly(a: np.ndarray) -> np.ndarray:
    b = a.copy()
    b.flags.writeable = False
    return b


def _misaligned(a: np.ndarray) -> np.ndarray:
    buf = np.zeros(a.nbytes + 1, np.uint8)
    b = buf[1:].view(a.dtype).reshape(a.shape)
    b[...] = a
    assert not b.flags.aligned or a.size == 0
    return b


def _bigendian(a: np.ndarray) -> np.ndarray:
    return a.astype(a.dtype.newbyteorder(">"))


LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "F": np.asfortranarray,
    "strided": _strided,
    "reversed": _reversed,
    "reversed_last": lambda a: _reversed(a, axes=[a.ndim - 1]),
    "reversed_first": lambda a: _reversed(a, axes=[0]),
    "transposed": lambda a: np.array(a.T, order="C").T,
    "permuted": _permuted,
    "readonly": _readonly,
    "misaligned": _misaligned,
    "bigendian": _bigendian,
}

# Shapes: small ones; three axes across a 16384-element chunk (rows shorter than a chunk); rows
# longer than a chunk; and one large enough for the thread pool (>= 65536 elements). The large
# ones are tried with every operand in the layout only.
SMALL_SHAPES = [(6, 7), (2, 3, 4, 5), (1, 9, 1)]
LARGE_SHAPES = [(3, 4, 1500), (2, 17000), (260, 270)]
WHICH = ["input", "target", "weight", "all"]


def _data(logits: bool, shape: tuple[int, ...], dtype: np.dtype) -> dict[str, np.ndarray]:
    """C-contiguous operands: input, target, weight, pos_weight (last axis), grad_output."""
    if logits:
        x = RNG.normal(0.0, 4.0, shape)
        y = RNG.uniform(-0.5, 1.5, shape)
    else:
        x = RNG.uniform(0.0, 1.0, shape)
        x.flat[:: max(1, x.size // 7)] = 0.0  # the clamped logarithms, too
        y = RNG.uniform(0.0, 1.0, shape)
    d = {
        "input": x,
        "target": y,
        "weight": RNG.uniform(-1.0, 2.0, shape),
        "pos_weight": RNG.uniform(0.0, 3.0, shape[-1:]),
        "grad_output": RNG.normal(0.0, 1.0, shape),
    }
    return {k: np.ascontiguousarray(v.astype(dtype)) for k, v in d.items()}


class Calls:
    """The entry points of one loss, as functions of a dict of operands."""

    def __init__(self, logits: bool) -> None:
        self.logits = logits

    def _kw(self, o: dict[str, Any]) -> dict[str, Any]:
        kw = {"weight": o["weight"]}
        if self.logits:
            kw["pos_weight"] = o["pos_weight"]
        return kw

    def forward(self, o: dict[str, Any], reduction: str) -> Any:
        if self.logits:
            fn: Any = bcers.binary_cross_entropy_with_logits
        else:
            fn = bcers.binary_cross_entropy
        return fn(o["input"], o["target"], reduction=reduction, **self._kw(o))

    def backward(self, o: dict[str, Any], grad_output: Any, reduction: str) -> Any:
        if self.logits:
            fn: Any = bcers.binary_cross_entropy_with_logits_backward
        else:
            fn = bcers.binary_cross_entropy_backward
        return fn(grad_output, o["input"], o["target"], reduction=reduction, **self._kw(o))

    def value_and_grad(self, o: dict[str, Any], reduction: str) -> Any:
        if self.logits:
            fn: Any = bcers.binary_cross_entropy_with_logits_value_and_grad
        else:
            fn = bcers.binary_cross_entropy_value_and_grad
        return fn(o["input"], o["target"], reduction=reduction, **self._kw(o))


def assert_identical(a: Any, b: Any) -> None:
    """Same type, dtype, shape and bits."""
    assert type(a) is type(b)
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype
    assert a.shape == b.shape
    u = f"u{a.dtype.itemsize}"
    assert np.array_equal(a.view(u), b.view(u))


def assert_sums_agree(a: Any, b: Any, elements: np.ndarray, mean: bool) -> None:
    """Two float64 sums of the same values in different orders, each rounded once."""
    assert type(a) is type(b)
    assert a.dtype == b.dtype
    if not (np.isfinite(a) and np.isfinite(b)):
        assert_identical(a, b)  # NaN, or a float16 sum that overflowed either way
        return
    terms = np.abs(elements.astype(np.float64))
    n = max(terms.size, 1)
    bound = 2 * (n - 1) * 2.0**-53 * float(np.sum(terms)) / (n if mean else 1)
    bound += float(np.spacing(np.abs(b)))  # and one rounding step apart
    assert abs(float(a) - float(b)) <= bound, (a, b, bound)


def check_new_array(result: Any, operands: dict[str, Any], shape: tuple[int, ...]) -> None:
    """A fresh, writeable array of the input's shape, sharing memory with no operand."""
    assert isinstance(result, np.ndarray)
    assert result.shape == shape
    assert result.flags.writeable
    for v in operands.values():
        assert not np.shares_memory(result, v)


def check_layout(logits: bool, data: dict[str, np.ndarray], laid: dict[str, Any]) -> None:
    """``laid`` (the same values as ``data`` in other layouts) gives ``data``'s results."""
    calls = Calls(logits)
    shape = data["input"].shape
    before = {k: np.array(v, copy=True) for k, v in laid.items()}
    elements = calls.forward(data, "none")
    for reduction in ("none", "mean", "sum"):
        expected, actual = calls.forward(data, reduction), calls.forward(laid, reduction)
        if reduction == "none":
            check_new_array(actual, laid, shape)
            assert_identical(actual, expected)
        else:
            assert isinstance(actual, np.floating)
            assert_sums_agree(actual, expected, elements, reduction == "mean")
        loss, grad = calls.value_and_grad(laid, reduction)
        check_new_array(grad, laid, shape)
        assert_identical(grad, calls.value_and_grad(data, reduction)[1])
        assert_identical(loss, actual)  # one pass gives the forward's bits

        g_data = data["grad_output"] if reduction == "none" else 0.5
        g_laid = laid["grad_output"] if reduction == "none" else 0.5
        grad = calls.backward(laid, g_laid, reduction)
        check_new_array(grad, laid, shape)
        assert_identical(grad, calls.backward(data, g_data, reduction))
    for k, v in laid.items():  # nothing was written to
        assert_identical(v, before[k])


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_gives_the_values_of_c_order(
    layout: str, which: str, logits: bool, dtype: np.dtype
) -> None:
    for shape in SMALL_SHAPES + (LARGE_SHAPES if which == "all" else []):
        data = _data(logits, shape, dtype)
        laid = dict(data)
        for name in list(data) if which == "all" else [which]:
            laid[name] = LAYOUTS[layout](data[name])
        check_layout(logits, data, laid)


MIXED = [
    {"input": "F", "target": "reversed", "weight": "strided", "grad_output": "transposed"},
    {"input": "reversed_first", "target": "F", "weight": "permuted", "pos_weight": "reversed"},
    {"input": "strided", "target": "misaligned", "weight": "bigendian", "grad_output": "F"},
    {"input": "transposed", "target": "readonly", "weight": "reversed_last"},
]


@pytest.mark.parametrize("dtype", [np.dtype(np.float16), F32, F64], ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
@pytest.mark.parametrize("mix", range(len(MIXED)))
def test_mixed_layouts(mix: int, logits: bool, dtype: np.dtype) -> None:
    # (2, 2, 16400): panels of rows longer than a chunk, on the thread pool.
    for shape in [(6, 7), (2, 3, 4, 5), (3, 4, 1500), (2, 2, 16400)]:
        data = _data(logits, shape, dtype)
        laid = dict(data)
        for name, layout in MIXED[mix].items():
            laid[name] = LAYOUTS[layout](data[name])
        # float16 sums overflow to inf here, silently (held by test_errors.py).
        check_layout(logits, data, laid)


# np.broadcast_to: zero strides. The operand's values are constant along the broadcast axes;
# the reference is the same data materialised in C order.
BROADCAST_CASES = [
    ((6, 7), (1, 7)),
    ((6, 7), (6, 1)),
    ((6, 7), (1, 1)),
    ((2, 3, 4), (2, 1, 4)),
    ((2, 9000), (1, 9000)),
    ((2, 9000), (2, 1)),
    ((3, 7000), ()),
    ((300, 250), (1, 250)),
]


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
@pytest.mark.parametrize("which", ["input", "target", "weight", "grad_output", "all"])
@pytest.mark.parametrize(("shape", "base"), BROADCAST_CASES, ids=str)
def test_broadcast_operands(
    shape: tuple[int, ...], base: tuple[int, ...], which: str, logits: bool, dtype: np.dtype
) -> None:
    small = _data(logits, base, dtype)
    data = _data(logits, shape, dtype)
    laid = dict(data)
    for name in ["input", "target", "weight", "grad_output"] if which == "all" else [which]:
        laid[name] = np.broadcast_to(small[name], shape)
        data[name] = np.array(laid[name], order="C")
        assert 0 in laid[name].strides or laid[name].size == small[name].size
    check_layout(logits, data, laid)


# ---------------------------------------------------------------------------------------------
# No copies where none is needed.

NO_COPY_LAYOUTS = ["C", "F", "strided", "reversed", "transposed", "permuted", "readonly", "bcast"]


def _laid_out(layout: str, a: np.ndarray) -> np.ndarray:
    if layout == "C":
        return a
    if layout == "bcast":
        return np.broadcast_to(a[:1], a.shape)
    return LAYOUTS[layout](a)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
@pytest.mark.parametrize("layout", NO_COPY_LAYOUTS)
def test_layouts_are_read_in_place(layout: str, logits: bool, dtype: np.dtype) -> None:
    """Operands of the compute dtype are not copied by NumPy, whatever their layout.

    tracemalloc sees every NumPy allocation: the results, which bcers may have NumPy allocate
    (so they are allowed for, one array of the input's size each), and any copy of an operand,
    which would be 1-2 MB more here; the calls themselves allocate next to nothing.
    """
    shape = (125, 4, 500)  # 250000 elements: 2 MB of float64, 1 MB of float32
    data = _data(logits, shape, dtype)
    o = {k: (_laid_out(layout, v) if v.ndim == 3 else v) for k, v in data.items()}
    calls = Calls(logits)
    result = int(np.prod(shape)) * dtype.itemsize

    def limit(results: int) -> int:
        return 256 * 1024 + results * result

    tracemalloc.start()
    try:
        for reduction in ("mean", "sum", "none"):
            none = reduction == "none"
            tracemalloc.reset_peak()
            calls.forward(o, reduction)
            peak = tracemalloc.get_traced_memory()[1]
            assert peak < limit(1 if none else 0), ("forward", reduction, peak)
            tracemalloc.reset_peak()
            calls.value_and_grad(o, reduction)
            peak = tracemalloc.get_traced_memory()[1]
            assert peak < limit(2 if none else 1), ("value_and_grad", reduction, peak)
        tracemalloc.reset_peak()
        calls.backward(o, o["grad_output"], "none")
        peak = tracemalloc.get_traced_memory()[1]
        assert peak < limit(1), ("backward", peak)
    finally:
        tracemalloc.stop()


_HUGE = """
import resource, time
import numpy as np
import bcers

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def broadcast(n):
    return np.broadcast_to(np.float32(0.3), (n,)), np.broadcast_to(np.float32(0.75), (n,))

# The size: 3e8 elements where this build reduces them within about 5 seconds (an optimised
# build does); an unoptimised one gets fewer, 3e7 at least (a copy would still be 120 MB).
x, y = broadcast(2_000_000)
bcers.binary_cross_entropy(x, y, reduction="sum")
t = time.perf_counter()
bcers.binary_cross_entropy(x, y, reduction="sum")
per_element = (time.perf_counter() - t) / 2_000_000
n = int(min(3e8, max(3e7, 5.0 / per_element))) // 1000 * 1000

x, y = broadcast(n)
w = np.broadcast_to(np.float32(2.0), (1000,))
before = peak_mib()
t = time.perf_counter()
s = bcers.binary_cross_entropy(x, y, reduction="sum")
rows = n // 10_000  # a tenth of the elements, in rows of 1000 with a broadcast weight row
m = bcers.binary_cross_entropy_with_logits(
    np.broadcast_to(x[:1000], (rows, 1000)), np.broadcast_to(y[:1000], (rows, 1000)),
    weight=w, reduction="mean",
)
print(n, repr(float(s)), repr(float(m)), peak_mib() - before, time.perf_counter() - t)
"""


def test_huge_broadcast_input_is_not_materialised() -> None:
    """A broadcast input of up to 3e8 elements is reduced without being materialised.

    Run in a fresh interpreter, whose peak RSS is not raised by earlier tests. A float32 copy
    of the input would add 4 bytes per element (120 MB to 1.2 GB) to the peak.
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_HUGE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    n_text, s, m, peak_delta_mib, seconds = proc.stdout.split()
    n = int(n_text)
    assert float(peak_delta_mib) < 32, f"peak RSS grew by {float(peak_delta_mib):.0f} MiB"
    x, y = float(np.float32(0.3)), float(np.float32(0.75))
    per_bce = -(y * math.log(x) + (1 - y) * math.log1p(-x))
    per_logit = (1 - y) * x + math.log1p(math.exp(-x))
    # Each element's float32 value is within a few ulp of the exact one; the float64 sum of
    # n equal values adds at most n * 2**-53 relatively.
    assert float(s) == pytest.approx(n * per_bce, rel=1e-5)
    assert float(m) == pytest.approx(2.0 * per_logit, rel=1e-5)
    print(f"{n:.1e} broadcast elements: {float(seconds):.1f} s")


# ---------------------------------------------------------------------------------------------
# Threads: the reductions are the same bits for every thread count.


@pytest.fixture
def restore_threads() -> Any:
    saved = bcers.get_num_threads()
    yield
    bcers.set_num_threads(saved)


THREAD_CASES = {
    "C": lambda d: d,
    "rows": lambda d: {**d, "weight": np.broadcast_to(d["weight"][:1], d["weight"].shape)},
    "F": lambda d: {k: np.asfortranarray(v) for k, v in d.items()},
    "reversed": lambda d: {k: _reversed(v) for k, v in d.items()},
}


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
@pytest.mark.parametrize(
    ("case", "shape"),
    [
        ("C", (70_001,)),
        ("rows", (260, 270)),
        ("F", (260, 270)),
        ("reversed", (3, 23_339)),  # rows longer than a chunk
        ("rows", (3, 23_339)),
    ],
    ids=str,
)
def test_results_are_identical_for_any_thread_count(
    case: str, shape: tuple[int, ...], logits: bool, dtype: np.dtype, restore_threads: Any
) -> None:
    o = THREAD_CASES[case](_data(logits, shape, dtype))
    calls = Calls(logits)
    results = []
    for threads in (1, 2, 3):
        bcers.set_num_threads(threads)
        assert bcers.get_num_threads() == threads
        results.append(
            [
                calls.forward(o, "mean"),
                calls.forward(o, "sum"),
                calls.forward(o, "none"),
                *calls.value_and_grad(o, "sum"),
                calls.backward(o, o["grad_output"], "none"),
            ]
        )
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert_identical(a, b)


def test_concurrent_calls_from_python_threads() -> None:
    """Large calls release the GIL; calls from several Python threads at once are unaffected."""
    data = [_data(i % 2 == 1, (100_000,), F32) for i in range(6)]
    calls = [Calls(i % 2 == 1) for i in range(6)]

    def run(i: int) -> list[Any]:
        return [
            calls[i].forward(data[i], "sum"),
            *calls[i].value_and_grad(data[i], "none"),
        ]

    serial = [run(i) for i in range(6)]
    results: list[Any] = [None] * 6
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                results[i] = run(i)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip(results, serial):
        for a, b in zip(got, want):
            assert_identical(a, b)


@pytest.mark.parametrize("n", [15, 1 << 17])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_gradient_of_a_subnormal_grad_output(n: int, dtype: type) -> None:
    """grad_output / n is subnormal: the gradient is torch's (divided by n last), not lost."""
    tiny = np.finfo(dtype).smallest_normal
    x = np.zeros(n, dtype)  # the gradient at x = 0, y = 1 is -g / 1e-12
    y = np.ones(n, dtype)
    for g in (dtype(tiny * 0.75), dtype(np.finfo(dtype).smallest_subnormal)):
        grad = bcers.binary_cross_entropy_backward(g, x, y)
        want = -float(g) / float(np.float32(1e-12)) / n
        assert grad.dtype == dtype
        np.testing.assert_allclose(grad.astype(np.float64), want, rtol=1e-6)
