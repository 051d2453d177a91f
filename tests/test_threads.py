"""Threads, fork, the GIL and memory: the contract of the parallel path.

The heavier checks run in a fresh interpreter (``subprocess``) so that a deadlock shows up as a
timeout, not a hung test run, and so that peak-memory figures belong to one computation only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import bcers
from bcers import _bcers

# Large enough for the parallel path (several chunks).
N = 4 * _bcers.PARALLEL_MIN


def _run_python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Runs ``code`` in a fresh interpreter; returns its stdout, failing on a non-zero exit."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc.stdout


def _data(seed: int, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)


def test_num_threads_round_trip() -> None:
    original = bcers.get_num_threads()
    try:
        bcers.set_num_threads(3)
        assert bcers.get_num_threads() == 3
        bcers.set_num_threads(1)
        assert bcers.get_num_threads() == 1
    finally:
        bcers.set_num_threads(original)


@pytest.mark.parametrize("bad", [0, -1, 1025])
def test_num_threads_rejects_counts_outside_its_range(bad: int) -> None:
    with pytest.raises(ValueError, match="the number of threads must be from 1 to 1024"):
        bcers.set_num_threads(bad)


def test_environment_variable_sets_the_default() -> None:
    out = _run_python(
        "import bcers; print(bcers.get_num_threads())", env={"BCERS_NUM_THREADS": "3"}
    )
    assert out.strip() == "3"


@pytest.mark.parametrize("value", ["zero", "abc", "0", "-2", "1.5", "1025", "99999"])
def test_unusable_environment_value_warns_and_is_ignored(value: str) -> None:
    # Not a whole number from 1 to 1024: a RuntimeWarning at import, and the default (the
    # processors available) is used.
    code = (
        "import os, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import bcers\n"
        "print(bcers.get_num_threads() == len(os.sched_getaffinity(0)))\n"
        "print([(w.category.__name__, str(w.message)) for w in caught])\n"
    )
    out = _run_python(code, env={"BCERS_NUM_THREADS": value})
    same, warned = out.splitlines()
    assert same == "True"
    assert warned.startswith("[('RuntimeWarning', \"BCERS_NUM_THREADS=" + repr(value)), warned
    assert "is not a whole number from 1 to 1024: it is ignored" in warned


def test_usable_or_empty_environment_value_does_not_warn() -> None:
    for value in ("", "  ", "4", " 2 ", "1024"):
        out = _run_python(
            "import warnings; warnings.simplefilter('error'); import bcers; "
            "print(bcers.get_num_threads())",
            env={"BCERS_NUM_THREADS": value},
        )
        expected = value.strip() or str(len(os.sched_getaffinity(0)))
        assert out.strip() == expected


def test_results_are_bitwise_identical_across_thread_counts() -> None:
    x, y = _data(1)
    original = bcers.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 4, 7):
            bcers.set_num_threads(threads)
            results.append(
                (
                    bcers.binary_cross_entropy(x, y, reduction="sum"),
                    bcers.binary_cross_entropy_with_logits(x, y, reduction="mean"),
                    bcers.binary_cross_entropy_value_and_grad(x, y)[0],
                )
            )
    finally:
        bcers.set_num_threads(original)
    for r in results[1:]:
        assert [v.tobytes() for v in r] == [v.tobytes() for v in results[0]]


def test_calls_from_many_python_threads_agree() -> None:
    # Each thread works on its own data, large enough to release the GIL and use the pool.
    data = [_data(seed) for seed in range(8)]
    expected = [bcers.binary_cross_entropy_value_and_grad(x, y) for x, y in data]
    results: list[object] = [None] * len(data)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            x, y = data[i]
            for _ in range(3):
                results[i] = bcers.binary_cross_entropy_value_and_grad(x, y)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(data))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for (loss, grad), (want_loss, want_grad) in zip(results, expected):  # type: ignore[misc]
        assert loss.tobytes() == want_loss.tobytes()
        np.testing.assert_array_equal(grad, want_grad)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_work_after_a_parallel_call() -> None:
    # The parent uses the pool first; DataLoader-style workers are then forked from it.
    out = _run_python(
        f"""
        import multiprocessing as mp
        import numpy as np
        import bcers

        n = {N}
        rng = np.random.default_rng(5)
        x = rng.random(n, dtype=np.float32)
        y = rng.random(n, dtype=np.float32)
        parent = bcers.binary_cross_entropy(x, y, reduction="sum")

        def child(_):
            return bcers.binary_cross_entropy(x, y, reduction="sum").tobytes()

        with mp.get_context("fork").Pool(2) as pool:
            got = pool.map(child, range(4))
        print(all(g == parent.tobytes() for g in got), len(got))
        """,
        timeout=120,
    )
    assert out.split() == ["True", "4"]


def test_reductions_allocate_no_per_element_temporaries() -> None:
    # Peak RSS of a mean over 1e8 float32 elements, above the inputs themselves.
    out = _run_python(
        """
        import resource
        import numpy as np
        import bcers

        n = 100_000_000
        x = np.full(n, 0.25, dtype=np.float32)
        y = np.full(n, 1.0, dtype=np.float32)
        bcers.binary_cross_entropy(x[:1000], y[:1000])  # warm up the module and the pool
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        loss = bcers.binary_cross_entropy(x, y)
        loss2 = bcers.binary_cross_entropy_with_logits(x, y, reduction="sum")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) // 1024, float(loss))
        """,
        timeout=300,
    )
    grown_mib, loss = out.split()
    assert abs(float(loss) - float(-np.log(np.float32(0.25)))) < 1e-6
    assert int(grown_mib) <= 8, f"peak RSS grew by {grown_mib} MiB"


def test_huge_zero_stride_input_is_not_materialised() -> None:
    # 3e9 elements, beyond 32-bit indexing, through broadcast views: nothing is copied.
    out = _run_python(
        """
        import resource
        import numpy as np
        import bcers

        n = 3_000_000_000
        x = np.broadcast_to(np.float32(0.25), (n,))
        y = np.broadcast_to(np.float32(1.0), (n,))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        s = bcers.binary_cross_entropy(x, y, reduction="sum")
        m = bcers.binary_cross_entropy(x, y, reduction="mean")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) // 1024, repr(float(s)), repr(float(m)))
        """,
        timeout=300,
    )
    grown_mib, s, m = out.split()
    per_element = -np.log(np.float64(np.float32(0.25)))
    # The float32 per-element loss is within 1 ulp; the float64 sum adds nothing measurable.
    assert abs(float(s) / (3e9 * per_element) - 1) < 2e-7
    assert abs(float(m) / per_element - 1) < 2e-7
    assert int(grown_mib) <= 8, f"peak RSS grew by {grown_mib} MiB"
