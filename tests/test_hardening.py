"""The edges of the system: many axes, memory running out, fork, signals, odd array objects,
infinite coefficients, subclasses and the first hour of a new user.

Each test here holds a promise of the contract (the right answer, or TypeError/ValueError naming
the argument; MemoryError when memory runs out; never a crash, a hang or a silently wrong
number) at a place where it once broke. The heavier ones run in a fresh interpreter, so that a
crash or a hang shows as a failed exit or a timeout, not a broken test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from typing import Any, Callable

import numpy as np
import pytest
import reference as ref

import bcers
from bcers import _bcers

REDUCTIONS = ("none", "mean", "sum")


def run_python(
    code: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` as a script file (so that multiprocessing's spawn can import it)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "script.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent(code))
        return subprocess.run(
            [sys.executable, script],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            check=False,
        )


def ok_output(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    proc = run_python(code, env, timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def every_call(
    logits: bool, x: Any, y: Any, reduction: str, **kw: Any
) -> dict[str, Callable[[], Any]]:
    """Every entry point on (x, y), as calls without arguments."""
    if logits:
        fwd: Any = bcers.binary_cross_entropy_with_logits
        bwd: Any = bcers.binary_cross_entropy_with_logits_backward
        vag: Any = bcers.binary_cross_entropy_with_logits_value_and_grad
        cls: Any = bcers.BCEWithLogitsLoss
    else:
        fwd, bwd = bcers.binary_cross_entropy, bcers.binary_cross_entropy_backward
        vag, cls = bcers.binary_cross_entropy_value_and_grad, bcers.BCELoss
    return {
        "forward": lambda: fwd(x, y, reduction=reduction, **kw),
        "backward": lambda: bwd(None, x, y, reduction=reduction, **kw),
        "value_and_grad": lambda: vag(x, y, reduction=reduction, **kw),
        "class": lambda: cls(reduction=reduction, **kw)(x, y),
    }


# ---------------------------------------------------------------------------------------------
# More axes than the native module takes (NumPy 2 allows 64; rust-numpy's views 32).


@pytest.mark.parametrize("logits", [False, True], ids=["bce", "logits"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_more_than_32_axes_give_the_right_answer(logits: bool, reduction: str) -> None:
    rng = np.random.default_rng(7)
    shape = (1,) * 20 + (2,) + (1,) * 10 + (3,) + (1,) * 8 + (4,)  # 42 axes, 3 longer than 1
    x = rng.random(shape) if not logits else rng.standard_normal(shape)
    y = rng.random(shape)
    w = rng.random((3, 1, 1, 1, 1, 1, 1, 1, 1, 4))  # broadcasts over the trailing axes
    kw: dict[str, Any] = {"weight": w}
    if logits:
        kw["pos_weight"] = rng.random(4) + 0.5
    flat = (2, 3, 4)
    fx, fy, fw = x.reshape(flat), y.reshape(flat), w.reshape(3, 4)
    fkw: dict[str, Any] = {"weight": fw}
    if logits:
        fkw["pos_weight"] = kw["pos_weight"]
    got = every_call(logits, x, y, reduction, **kw)
    want = every_call(logits, fx, fy, reduction, **fkw)

    def flattened(v: Any) -> Any:
        # Arrays come back in the caller's shape; the same numbers as the 3-axis call's.
        if isinstance(v, tuple):
            return tuple(flattened(a) for a in v)
        if np.ndim(v):
            assert np.shape(v) == shape
            return np.reshape(v, flat)
        return v

    for name, call in got.items():
        value, expected = flattened(call()), want[name]()
        if not isinstance(expected, tuple):
            value, expected = (value,), (expected,)
        for v, e in zip(value, expected):
            np.testing.assert_array_equal(v, e, err_msg=name)


def test_more_than_32_axes_errors_are_the_usual_ones() -> None:
    shape = (1,) * 30 + (2, 1, 3)
    x = np.full(shape, 0.5)
    bad = x.copy()
    bad[(0,) * 30 + (1, 0, 2)] = 1.5
    # The range error names the element by its index in the caller's array.
    index = ", ".join(["0"] * 30 + ["1", "0", "2"])
    with pytest.raises(ValueError, match=rf"; input\[{index}\] is 1.5$"):
        bcers.binary_cross_entropy(bad, x)
    with pytest.raises(
        ValueError, match=r"^Target size \(2, 3\) must be the same as input size \(1, 1,"
    ):
        bcers.binary_cross_entropy(x, np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match=r"^weight of shape \(3, 2\) cannot be broadcast"):
        bcers.binary_cross_entropy(x, x, weight=np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"^pos_weight of shape \(1, 1, .*\) cannot be broadcast"):
        bcers.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones((1,) * 34))
    with pytest.raises(ValueError, match=r"^grad_output must be a scalar for reduction='mean'"):
        bcers.binary_cross_entropy_backward(np.ones(2), x, x)


def test_more_than_32_axes_longer_than_1_are_a_value_error() -> None:
    # 33 axes of length 2 (8.6e9 elements, a broadcast view: nothing is allocated).
    x = np.broadcast_to(np.float64(0.5), (2,) * 33)
    message = "input has 33 dimensions longer than 1; bcers takes at most 32"
    for name, call in every_call(False, x, x, "sum").items():
        with pytest.raises(ValueError, match=f"^{message}$"):
            call()
        assert name


def test_the_native_module_refuses_more_than_32_axes_with_a_value_error() -> None:
    # Below the Python package, too: never rust-numpy's panic.
    x = np.full((1,) * 33, 0.5)
    with pytest.raises(ValueError, match=r"^input has 33 dimensions; bcers takes at most 32"):
        _bcers.compute("bce", 0.0, 0.0, x, x, None, None, None, "mean", True, False)
    small = np.full((1,), 0.5)
    with pytest.raises(ValueError, match=r"^weight of shape \(1, 1, .*\) cannot be broadcast"):
        _bcers.compute("bce", 0.0, 0.0, small, small, x, None, None, "mean", True, False)


# ---------------------------------------------------------------------------------------------
# Memory running out: MemoryError, the process alive.


def _more_than_memory_and_swap() -> int:
    """A float64 element count whose bytes are more than twice this machine's memory and swap
    together (at least 6e9: 48 GB), which the kernel refuses to give one allocation."""
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            if f.read().strip() == "1":
                pytest.skip("the kernel grants every allocation (vm.overcommit_memory = 1)")
        with open("/proc/meminfo") as f:
            kib = {line.split(":")[0]: int(line.split()[1]) for line in f if line.strip()}
        total = (kib["MemTotal"] + kib.get("SwapTotal", 0)) * 1024
    except OSError:  # not Linux: 48 GB
        total = 0
    return max(6 * 10**9, 2 * total // 8 + 1)


def test_an_output_too_large_for_memory_is_a_memory_error() -> None:
    # Float64 losses of a broadcast input, more than the machine has (48 GB or more): refused
    # before anything is written.
    n = _more_than_memory_and_swap()
    out = ok_output(
        f"""
        import numpy as np, bcers
        xb = np.broadcast_to(np.float64(0.3), ({n},))
        for call in (
            lambda: bcers.binary_cross_entropy(xb, xb, reduction="none"),
            lambda: bcers.binary_cross_entropy_backward(None, xb, xb, reduction="none"),
            lambda: bcers.binary_cross_entropy_with_logits_value_and_grad(xb, xb),
            lambda: bcers.BCEWithLogitsLoss(reduction="none")(xb, xb),
        ):
            try:
                call()
            except MemoryError as e:
                print("MemoryError", e)
        print(float(bcers.binary_cross_entropy(xb[:1000], xb[:1000])))
        """,
        timeout=300,
    )
    lines = out.splitlines()
    assert len(lines) == 5, out
    assert all(
        line.startswith("MemoryError out of memory: could not allocate") for line in lines[:4]
    )
    assert f"{8 * n} bytes" in lines[0]
    assert abs(float(lines[4]) - float(ref.bce(0.3, 0.3).value)) < 1e-12


def test_memory_errors_under_an_address_space_limit() -> None:
    # Outputs the crate allocates (Fortran order) and those NumPy allocates (C order).
    out = ok_output(
        """
        import resource
        import numpy as np, bcers
        x = np.full((4000, 5000), 0.3)           # 160 MB
        xf = np.asfortranarray(x)
        bcers.binary_cross_entropy(x[:10], x[:10], reduction="none")  # warm up
        with open("/proc/self/status") as f:  # the address space in use now, in KiB
            used = int(f.read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (used + 250 * 2**20,) * 2)
        for a in (x, xf):
            for call in (
                lambda: bcers.binary_cross_entropy_value_and_grad(a, a, reduction="none"),
                lambda: [bcers.binary_cross_entropy(a, a, reduction="none") for _ in range(4)],
            ):
                try:
                    call()
                    print("no error")
                except MemoryError:
                    print("MemoryError")
        print(float(bcers.binary_cross_entropy(x, x)))
        """,
        timeout=300,
    )
    lines = out.splitlines()
    assert lines[:4] == ["MemoryError"] * 4, out
    assert abs(float(lines[4]) - float(ref.bce(0.3, 0.3).value)) < 1e-12


# ---------------------------------------------------------------------------------------------
# fork: children complete, whatever the parent's threads were doing.


_FORK_AND_WAIT = """
import os, threading, time
import numpy as np, bcers

x = np.full(1 << 17, 0.5)
want = bcers.binary_cross_entropy(x, x).tobytes()

def fork_and_wait():
    # The child's first parallel call (and a change of the thread count) must complete.
    pid = os.fork()
    if pid == 0:
        bcers.set_num_threads(2)
        ok = bcers.binary_cross_entropy(x, x).tobytes() == want
        os._exit(0 if ok else 3)
    deadline = time.monotonic() + 30
    while True:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            return "done" if os.WEXITSTATUS(status) == 0 else f"status {status}"
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return "hung"
        time.sleep(0.01)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_another_thread_builds_the_pool() -> None:
    # A thread starts a parallel call that builds a pool of 1024 threads (a while); the process
    # forks meanwhile, at several moments.
    out = ok_output(
        _FORK_AND_WAIT
        + """
results = []
for delay in (0.01, 0.1, 0.5):
    bcers.set_num_threads(1024 - len(results))  # a new pool each time
    t = threading.Thread(target=lambda: bcers.binary_cross_entropy(x, x))
    t.start()
    time.sleep(delay)
    results.append(fork_and_wait())
    t.join()
print(*results)
""",
        timeout=600,
    )
    assert out.split() == ["done"] * 3, out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_other_threads_change_the_thread_count() -> None:
    # Random stress: threads calling and changing the thread count while the process forks.
    out = ok_output(
        _FORK_AND_WAIT
        + """
import random
random.seed(5)
results = []
for trial in range(40):
    stop = threading.Event()
    def setter():
        while not stop.is_set():
            bcers.set_num_threads(random.randint(2, 64))
    def caller():
        while not stop.is_set():
            bcers.binary_cross_entropy(x, x)
    threads = [threading.Thread(target=f) for f in (setter, caller, caller)]
    for t in threads:
        t.start()
    time.sleep(random.uniform(0, 0.02))
    results.append(fork_and_wait())
    stop.set()
    for t in threads:
        t.join()
print(results.count("done"), len(results))
""",
        timeout=600,
    )
    assert out.split() == ["40", "40"], out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_gpu_in_a_forked_child_is_a_prompt_runtime_error(device: dict[str, Any]) -> None:
    out = ok_output(
        """
        import os, time
        import multiprocessing as mp
        import numpy as np, bcers

        x = np.full(1000, 0.5, np.float32)
        d = bcers.gpu.asarray(x)
        parent = float(bcers.binary_cross_entropy(d, d))
        cpu = float(bcers.binary_cross_entropy(x, x))

        def child_work():
            out = []
            t0 = time.monotonic()
            for call in (
                lambda: bcers.gpu.asarray(x),              # a new upload
                lambda: bcers.binary_cross_entropy(d, d),  # an inherited array
                lambda: bcers.binary_cross_entropy(x, d),
                lambda: d.numpy(),
                lambda: bcers.gpu.adapter_info(),
            ):
                try:
                    call()
                    out.append("no error")
                except RuntimeError as e:
                    out.append("fork" if "cannot cross a fork" in str(e) else str(e))
            out.append(str(bcers.gpu.is_available()))
            out.append(str(float(bcers.binary_cross_entropy(x, x)) == cpu))  # the CPU works
            out.append(str(time.monotonic() - t0 < 5))
            return out

        def spawned(_):
            import numpy as np, bcers
            v = bcers.gpu.asarray(np.full(1000, 0.5, np.float32))
            return float(bcers.binary_cross_entropy(v, v))

        if __name__ == "__main__":
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.write(w, " ".join(child_work()).encode())
                os._exit(0)
            os.close(w)
            _, status = os.waitpid(pid, 0)
            print(os.read(r, 4096).decode(), os.WEXITSTATUS(status))
            with mp.get_context("spawn").Pool(1) as pool:
                print(pool.map(spawned, [0])[0] == parent)
            print(float(bcers.binary_cross_entropy(d, d)) == parent)  # the parent's device works
        """,
        timeout=300,
    )
    assert out.split() == ["fork"] * 5 + ["False", "True", "True", "0", "True", "True"], out


# ---------------------------------------------------------------------------------------------
# Ctrl-C: a long call stops within about a second, and bcers keeps working.


@pytest.mark.parametrize("threads", [1, 2])
def test_a_long_call_is_interrupted_by_ctrl_c(threads: int) -> None:
    out = ok_output(
        f"""
        import os, signal, threading, time
        import numpy as np, bcers

        bcers.set_num_threads({threads})
        x = np.broadcast_to(np.float32(0.5), (3 * 10**10,))   # about 40 s of work
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        t0 = time.perf_counter()
        try:
            bcers.binary_cross_entropy(x, x)
            print("finished")
        except KeyboardInterrupt:
            print(time.perf_counter() - t0)
        print(float(bcers.binary_cross_entropy(x[: 10**7], x[: 10**7])))
        """,
        timeout=120,
    )
    elapsed, value = out.split()
    assert float(elapsed) < 1.5, out
    assert abs(float(value) - np.log(2)) < 1e-6


def test_a_signal_handlers_exception_is_the_calls() -> None:
    out = ok_output(
        """
        import os, signal, threading, time
        import numpy as np, bcers

        class Stop(Exception):
            pass

        def handler(signum, frame):
            raise Stop("from the handler")

        signal.signal(signal.SIGUSR1, handler)
        x = np.broadcast_to(np.float64(0.5), (3 * 10**10,))
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGUSR1)).start()
        t0 = time.perf_counter()
        try:
            bcers.binary_cross_entropy_with_logits(x, x, reduction="sum")
        except Stop as e:
            print("Stop", e, time.perf_counter() - t0 < 1.5)
        """,
        timeout=120,
    )
    assert out.strip() == "Stop from the handler True"


def test_a_long_gpu_call_is_interrupted_by_ctrl_c(device: dict[str, Any]) -> None:
    # One sum over an array sized to take about 2.5 s on this device (at most 2e8 elements);
    # Ctrl-C 0.3 s into it must stop it within about half a second.
    out = ok_output(
        """
        import os, signal, threading, time
        import numpy as np, bcers

        small = bcers.gpu.asarray(np.full(10**7, 0.5, np.float32))
        float(bcers.binary_cross_entropy(small, small))
        t0 = time.perf_counter()
        float(bcers.binary_cross_entropy(small, small))
        per_element = (time.perf_counter() - t0) / 10**7
        n = int(min(2 * 10**8, 2.5 / per_element))
        del small
        x = bcers.gpu.asarray(np.full(n, 0.5, np.float32))
        timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        t0 = time.perf_counter()
        try:
            bcers.binary_cross_entropy(x, x)
            timer.cancel()
            print("finished", time.perf_counter() - t0, n * per_element)
        except KeyboardInterrupt:
            print("interrupted", time.perf_counter() - t0, n * per_element)
        try:  # a fast device finishes first: the timer may fire after the call
            time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        print(float(bcers.binary_cross_entropy(x, x)))
        """,
        timeout=300,
    )
    how, elapsed, expected, value = out.split()
    if float(expected) > 1.5:  # a slow device: the call is long enough to interrupt
        assert how == "interrupted", out
        # OpenGL (wgpu's fallback without a Vulkan driver) runs a submission inside
        # `queue.submit`, on the calling thread: Ctrl-C is raised when it returns.
        if device["backend"] != "gl":
            assert float(elapsed) < 0.9, out
    assert abs(float(value) - np.log(2)) < 1e-6


# ---------------------------------------------------------------------------------------------
# Odd array objects.


class _Unconvertible:
    """An object whose conversion to an array raises an exception that cannot be rebuilt from
    a message alone (jax's tracer errors are like this)."""

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        raise _PickyError(42)


class _PickyError(TypeError):
    def __init__(self, code: int) -> None:
        super().__init__(f"picky error {code}")
        self.code = code


class _Odd:
    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        raise RuntimeError("no array here")


@pytest.mark.parametrize("arg", ["input", "target", "weight", "pos_weight", "grad_output"])
def test_conversion_errors_keep_the_contract(arg: str) -> None:
    x = np.full(3, 0.5)
    for bad, kind in (
        (_Unconvertible(), TypeError),
        (_Odd(), TypeError),
        ([[1], [2, 3]], ValueError),
    ):
        args: dict[str, Any] = {"input": x, "target": x, "weight": None, "pos_weight": None}
        g: Any = None
        if arg == "grad_output":
            g = bad
        else:
            args[arg] = bad
        with pytest.raises(kind, match=f"^{arg} could not be converted to an array: ") as info:
            bcers.binary_cross_entropy_with_logits_backward(
                g, args["input"], args["target"], args["weight"], args["pos_weight"]
            )
        assert info.type is kind
        assert info.value.__cause__ is not None  # the original, chained


def test_conversion_errors_on_the_gpu_path_keep_the_contract(device: dict[str, Any]) -> None:
    d = bcers.gpu.asarray(np.full(3, 0.5, np.float32))
    with pytest.raises(TypeError, match=r"^target could not be converted to an array: picky"):
        bcers.binary_cross_entropy(d, _Unconvertible())
    with pytest.raises(TypeError, match=r"^array could not be converted to an array: picky"):
        bcers.gpu.asarray(_Unconvertible())


@pytest.mark.parametrize("arg", ["weight", "pos_weight", "grad_output"])
def test_masked_coefficients_are_refused_not_silently_unmasked(arg: str) -> None:
    # A masked input or target drops its masked elements (tested with the mask argument); a
    # mask on a coefficient or on grad_output has no meaning bcers could honour: refused.
    x = np.full(3, 0.5)
    m = np.ma.masked_array(x, mask=[False, True, False])
    args: dict[str, Any] = {"input": x, "target": x, "weight": None, "pos_weight": None}
    g: Any = None
    if arg == "grad_output":
        g = m
    else:
        args[arg] = m
    with pytest.raises(TypeError, match=f"^{arg} is a numpy.ma.MaskedArray, whose mask"):
        bcers.binary_cross_entropy_with_logits_backward(
            g, args["input"], args["target"], args["weight"], args["pos_weight"], reduction="none"
        )
    if arg in ("weight", "pos_weight"):
        with pytest.raises(TypeError, match=f"^{arg} is a numpy.ma.MaskedArray"):
            bcers.BCEWithLogitsLoss(**{arg: m})


@pytest.mark.parametrize("arg", ["input", "target"])
def test_masked_input_or_target_drops_its_masked_elements(arg: str) -> None:
    x = np.array([0.2, 0.5, 0.9])
    y = np.array([0.0, 1.0, 1.0])
    keep = np.array([True, False, True])
    args = {"input": x, "target": y}
    args[arg] = np.ma.masked_array(args[arg], mask=~keep)
    got = bcers.binary_cross_entropy(args["input"], args["target"])
    want = -(np.log(0.8) + np.log(0.9)) / 2
    assert got == pytest.approx(want, rel=1e-15)
    none = bcers.binary_cross_entropy(args["input"], args["target"], reduction="none")
    assert none[1] == 0.0
    assert none[0] == pytest.approx(-np.log(0.8), rel=1e-15)


# ---------------------------------------------------------------------------------------------
# Infinite coefficients: the mathematical value, never NaN from 0 * inf.


def _logits_calls(x: Any, y: Any, **kw: Any) -> list[Any]:
    loss, grad = bcers.binary_cross_entropy_with_logits_value_and_grad(x, y, reduction="none", **kw)
    return [
        bcers.binary_cross_entropy_with_logits(x, y, reduction="none", **kw),
        loss,
        grad,
        bcers.binary_cross_entropy_with_logits_backward(None, x, y, reduction="none", **kw),
    ]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_infinite_pos_weight_gives_inf_not_nan(dtype: Any) -> None:
    x = np.array([0.5, 0.0, -2.0, np.inf, -np.inf], dtype)
    y = np.ones(5, dtype)
    pw = np.array(np.inf, dtype)
    loss, _, grad, grad2 = _logits_calls(x, y, pos_weight=pw)
    # pos_weight * log1p(exp(-x)) grows without bound except at x = +inf, where it is 0.
    np.testing.assert_array_equal(loss, np.array([np.inf, np.inf, np.inf, 0.0, np.inf], dtype))
    np.testing.assert_array_equal(grad, np.array([-np.inf, -np.inf, -np.inf, 0.0, -np.inf], dtype))
    np.testing.assert_array_equal(grad2, grad)
    # Every reduction and entry point agrees.
    assert bcers.binary_cross_entropy_with_logits(x[:3], y[:3], pos_weight=pw) == np.inf


def test_overflowing_pos_weight_times_target_gives_inf_not_nan() -> None:
    # float32: 3e38 * 2 overflows; the elements' true values overflow float32 too.
    x = np.array([0.5, 0.0, -1.0, 40.0], np.float32)
    y = np.full(4, 2.0, np.float32)
    loss, _, grad, _ = _logits_calls(x, y, pos_weight=np.array(3e38, np.float32))
    assert np.all(np.isinf(loss)), loss
    assert np.all(loss > 0), loss
    assert not np.any(np.isnan(grad)), grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_weight_times_infinite_loss_is_zero(dtype: Any) -> None:
    x = np.array([np.inf, -np.inf, 1.0], dtype)
    y = np.array([0.0, 1.0, 0.5], dtype)
    w = np.array([0.0, 0.0, 1.0], dtype)
    loss, _, grad, _ = _logits_calls(x, y, weight=w)
    np.testing.assert_array_equal(loss[:2], [0.0, 0.0])
    np.testing.assert_array_equal(grad[:2], [0.0, 0.0])
    # Infinite weights on a zero loss (BCE at x = y = 0) give 0 too.
    p = np.array([0.0, 1.0, 0.5], dtype)
    winf = np.full(3, np.inf, dtype)
    bce = bcers.binary_cross_entropy(p, np.array([0.0, 1.0, 0.5], dtype), winf, reduction="none")
    np.testing.assert_array_equal(bce[:2], [0.0, 0.0])
    assert bce[2] == np.inf
    # NaN stays NaN: a zero weight does not hide it.
    nan = bcers.binary_cross_entropy_with_logits(
        np.array([np.nan], dtype), np.ones(1, dtype), np.zeros(1, dtype), reduction="none"
    )
    assert np.isnan(nan[0])


def test_infinite_coefficients_on_the_gpu(device: dict[str, Any]) -> None:
    x = np.array([0.5, 0.0, -2.0, np.inf, -np.inf], np.float32)
    y = np.ones(5, np.float32)
    pw = np.array(np.inf, np.float32)
    d = bcers.gpu.asarray(x)
    inf = np.inf
    loss, vag_loss, grad, grad2 = (a.numpy() for a in _logits_calls(d, y, pos_weight=pw))
    for got in (loss, vag_loss):
        np.testing.assert_array_equal(got, np.array([inf, inf, inf, 0.0, inf], np.float32))
    for got in (grad, grad2):
        np.testing.assert_array_equal(got, np.array([-inf, -inf, -inf, 0.0, -inf], np.float32))
    # Zero weights on infinite losses: 0 where the CPU has 0, the finite element within a few
    # ulp of the CPU's (a GPU's compiler may fuse a multiply and an add).
    w = np.array([0.0, 0.0, 1.0, 0.0, 0.0], np.float32)
    for got, want in zip(_logits_calls(d, -y, weight=w), _logits_calls(x, -y, weight=w)):
        np.testing.assert_array_equal(got.numpy() == 0, want == 0)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------------------------
# The classes.


def test_calling_a_subclass_runs_its_forward() -> None:
    class Doubled(bcers.BCEWithLogitsLoss):
        def forward(self, input: Any, target: Any) -> Any:
            return 2 * super().forward(input, target)

    x, y = np.array([0.5, -1.0]), np.array([1.0, 0.0])
    assert Doubled()(x, y) == 2 * bcers.BCEWithLogitsLoss()(x, y)

    class Counted(bcers.BCELoss):
        calls = 0

        def forward(self, input: Any, target: Any) -> Any:
            Counted.calls += 1
            return super().forward(input, target)

    Counted()(np.full(2, 0.5), np.full(2, 0.5))
    assert Counted.calls == 1


@pytest.mark.parametrize("cls", [bcers.BCELoss, bcers.BCEWithLogitsLoss])
def test_constructors_check_what_they_can(cls: Any) -> None:
    with pytest.raises(ValueError, match=r"^meen is not a valid value for reduction$"):
        cls(reduction="meen")
    with pytest.raises(ValueError, match=r"^None is not a valid value for reduction$"):
        cls(reduction=None)
    with pytest.raises(TypeError, match=r"^weight must be an array of real numbers or booleans"):
        cls(weight=np.array(["a", "b"]))
    with pytest.raises(TypeError, match=r"^weight must be an array of real numbers or booleans"):
        cls(weight=np.ones(2, complex))
    with pytest.raises(ValueError, match=r"^weight could not be converted to an array"):
        cls(weight=[[1.0], [1.0, 2.0]])
    if cls is bcers.BCEWithLogitsLoss:
        with pytest.raises(TypeError, match=r"^pos_weight must be an array of real numbers"):
            cls(pos_weight=np.array([object()]))
    # torch's deprecated spelling still constructs, and warns at each call, as before.
    loss = cls(reduction="elementwise_mean")
    with pytest.warns(UserWarning, match="reduction='elementwise_mean' is deprecated"):
        loss(np.full(2, 0.5), np.full(2, 0.5))


# ---------------------------------------------------------------------------------------------
# A new user's first hour.


def test_a_target_beyond_float32_range_emits_no_numpy_warning() -> None:
    # pytest runs with warnings as errors: a RuntimeWarning from a cast inside bcers fails here.
    x = np.array([0.5, -0.5], np.float32)
    y = np.array([1e300, -1e300])
    loss = bcers.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert loss.dtype == np.float32
    assert np.all(np.isinf(loss))
    with pytest.raises(ValueError, match=r"; target\[0\] is inf$"):
        bcers.binary_cross_entropy(x.clip(0, 1), y)
    bcers.binary_cross_entropy_with_logits(x, x, weight=np.array([1e300, 1.0]))
    bcers.binary_cross_entropy_with_logits_backward(np.array([1e300, 1.0]), x, x, reduction="none")


def test_python_m_bcers_help_and_version_do_not_run_the_demo() -> None:
    for flag in ("--help", "-h"):
        proc = subprocess.run(
            [sys.executable, "-m", "bcers", flag], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("usage: python -m bcers"), proc.stdout
        assert "Timing" not in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "bcers", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"bcers {bcers.__version__}"
    proc = subprocess.run(
        [sys.executable, "-m", "bcers", "--bogus"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "unrecognized arguments: --bogus" in proc.stderr


@pytest.mark.parametrize("threads", ["1", "3"])
def test_python_m_bcers_prints_sources_that_exist_and_plain_english(threads: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bcers"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BCERS_NUM_THREADS": threads},
    )
    assert proc.returncode == 0, proc.stderr
    assert "seeds/" not in proc.stdout
    assert ".txt" not in proc.stdout
    assert "(from GeeksforGeeks: BCELoss in PyTorch, Example 1)" in proc.stdout
    noun = "thread" if threads == "1" else "threads"
    assert f"({threads} {noun})" in proc.stdout
    assert "All seed examples match torch." in proc.stdout


def test_no_gpu_message_names_the_backends_tried() -> None:
    # WGPU_BACKEND selects the backends: a Metal-only search finds none off macOS.
    out = ok_output(
        """
        import bcers
        print(bcers.gpu.is_available())
        try:
            bcers.gpu.adapter_info()
        except RuntimeError as e:
            print(e)
        """,
        env={"WGPU_BACKEND": "metal"},
    )
    if out.startswith("True"):
        pytest.skip("this machine has a Metal adapter")
    assert 'wgpu tried the backends WGPU_BACKEND="metal" selects' in out, out
    assert "Vulkan, Metal, DX12 and GL" not in out


def test_gpu_arrays_of_more_than_32_axes(device: dict[str, Any]) -> None:
    x = np.full((1,) * 33, 0.5, np.float32)
    a = bcers.gpu.asarray(x)
    assert a.shape == x.shape
    assert bcers.binary_cross_entropy(a, a) == np.float32(bcers.binary_cross_entropy(x, x))
    big = np.broadcast_to(np.float32(0.5), (2,) * 33)
    with pytest.raises(ValueError, match=r"^array has 33 dimensions longer than 1; bcers takes"):
        bcers.gpu.asarray(big)


def test_a_masked_array_as_the_mask_is_refused() -> None:
    x = np.full(3, 0.5)
    m = np.ma.masked_array([True, False, True], mask=[False, True, False])
    for call in (
        lambda: bcers.binary_cross_entropy(x, x, mask=m),
        lambda: bcers.BCELoss()(x, x, mask=m),
        lambda: bcers.sigmoid_focal_loss_derivatives(x, x, mask=m),
    ):
        with pytest.raises(TypeError, match=r"^mask is a numpy.ma.MaskedArray, whose mask"):
            call()


def test_gpu_memory_errors_under_an_address_space_limit(device: dict[str, Any]) -> None:
    # Uploads, device outputs and read-backs: a MemoryError each, the process alive (lavapipe,
    # a device in host memory, used to end in a write through a null mapping).
    out = ok_output(
        """
        import resource
        import numpy as np, bcers
        x = np.full(6 * 10**7, 0.3, np.float32)   # 240 MB
        a = bcers.gpu.asarray(x[: 2 * 10**7])     # 80 MB on the device
        s = bcers.gpu.asarray(x[:10])
        bcers.binary_cross_entropy(s, s, reduction="none").numpy()
        with open("/proc/self/status") as f:
            used = int(f.read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (used + 150 * 2**20,) * 2)
        for call in (
            lambda: bcers.gpu.asarray(x),
            lambda: [bcers.binary_cross_entropy(a, a, reduction="none") for _ in range(3)],
            lambda: [bcers.binary_cross_entropy_with_logits_value_and_grad(a, a, reduction="none")
                     for _ in range(2)],
            lambda: bcers.gpu.asarray(x).numpy(),
        ):
            try:
                call()
                print("no error")
            except MemoryError:
                print("MemoryError")
        print(float(bcers.binary_cross_entropy(s, s)))
        """,
        timeout=300,
    )
    lines = out.splitlines()
    if device.get("device_type") != "cpu":
        # A device with memory of its own need not run out under a host limit; it must not
        # crash, and the small call after must still be right.
        assert set(lines[:4]) <= {"MemoryError", "no error"}, out
    else:
        assert lines[:4] == ["MemoryError"] * 4, out
    assert abs(float(lines[4]) - float(ref.bce(0.3, 0.3).value)) < 1e-6
