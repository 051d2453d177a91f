"""``python -m bcers``: the seed examples computed by bcers beside torch's values, then a quick
timing against the NumPy expression a user would otherwise write. ``python -m bcers score ...``
(or the ``bcers score`` command): the loss of predictions stored in files, see
:mod:`bcers._score`."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from importlib import resources
from typing import Any, Callable

import numpy as np

import bcers


def _examples() -> list[dict[str, Any]]:
    text = resources.files("bcers").joinpath("_seed_examples.json").read_text()
    examples: list[dict[str, Any]] = json.loads(text)["examples"]
    return examples


def _run(example: dict[str, Any]) -> tuple[float, np.ndarray[Any, Any]]:
    dtype = np.dtype(example["dtype"])
    x = np.asarray(example["input"], dtype=dtype)
    y = np.asarray(example["target"], dtype=dtype)
    kwargs: dict[str, Any] = {k: np.asarray(v, dtype=dtype) for k, v in example["kwargs"].items()}
    kind = example["kind"]
    if kind == "BCELoss":
        loss_fn: Any = bcers.BCELoss(**kwargs)
    elif kind == "BCEWithLogitsLoss":
        loss_fn = bcers.BCEWithLogitsLoss(**kwargs)
    else:
        loss_fn = bcers.binary_cross_entropy
    if kind == "binary_cross_entropy":
        loss, grad = bcers.binary_cross_entropy_value_and_grad(x, y, **kwargs)
    else:
        loss, grad = loss_fn.value_and_grad(x, y)
    return float(loss), grad


def _median_time(f: Callable[[], object], repeat: int = 7) -> float:
    f()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _timing(n: int = 1_000_000) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(1e-6, 1 - 1e-6, n).astype(np.float32)
    y = rng.random(n).astype(np.float32)

    def numpy_bce() -> object:
        return -np.mean(y * np.maximum(np.log(x), -100) + (1 - y) * np.maximum(np.log1p(-x), -100))

    def bcers_bce() -> object:
        return bcers.binary_cross_entropy(x, y)

    t_np = _median_time(numpy_bce)
    t_bc = _median_time(bcers_bce)
    print(f"\nTiming: BCE forward (mean) over {n:,} float32 elements, median of 7")
    print(f"  NumPy expression  {t_np * 1e3:8.3f} ms  ({t_np / n * 1e9:6.2f} ns/element)")
    print(f"  bcers             {t_bc * 1e3:8.3f} ms  ({t_bc / n * 1e9:6.2f} ns/element)")
    threads = bcers.get_num_threads()
    print(
        f"  speed-up          {t_np / t_bc:8.1f}x  ({threads} thread{'s' if threads != 1 else ''})"
    )


def _source(example: dict[str, Any]) -> str:
    """Where an example comes from, without the file name of the document it was taken from
    (which only the project's own repository has): ``GeeksforGeeks: BCELoss in PyTorch,
    Example 1``."""
    m = re.fullmatch(r"\S+ \((.*)\),? (.*)", example["source"])
    return f"{m.group(1)}, {m.group(2)}" if m else str(example["source"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bcers",
        description=(
            "Runs the examples bcers started from (the two PyTorch tutorials on BCE), prints "
            "bcers' numbers beside torch's, then times bcers against the NumPy expression. "
            "Exits with status 1 if a number differs from torch's."
        ),
        epilog=(
            "python -m bcers score ... (the bcers score command): the loss of predictions "
            "against labels in .npy, CSV or Parquet files, which may be larger than memory; "
            "see python -m bcers score --help."
        ),
    )
    parser.add_argument("--version", action="version", version=f"bcers {bcers.__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["score"]:
        from ._score import main as score

        return score(args[1:])
    _parser().parse_args(args)
    print(f"bcers {bcers.__version__}: the seed examples, beside torch's values\n")
    worst = 0.0
    for ex in _examples():
        loss, grad = _run(ex)
        torch_grad = np.asarray(ex["torch_grad"], dtype=np.float64)
        grad_err = float(np.max(np.abs(grad - torch_grad) / np.maximum(np.abs(torch_grad), 1e-30)))
        loss_err = abs(loss - ex["torch_loss"]) / abs(ex["torch_loss"])
        worst = max(worst, loss_err, grad_err)
        print(f"{ex['title']}  (from {_source(ex)})")
        print(
            f"  bcers {loss:.4f}   torch {ex['torch_loss']:.4f}   "
            f"(loss rel. diff {loss_err:.1e}, gradient max rel. diff {grad_err:.1e})"
        )
    _timing()
    ok = worst < 1e-5
    print("\nAll seed examples match torch." if ok else f"\nMISMATCH: worst {worst:.2e}")
    return 0 if ok else 1


def _entry() -> int:
    try:
        return main()
    except BrokenPipeError:
        # The reader went away (`python -m bcers | head`): stop quietly, and keep Python from
        # failing again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(_entry())
