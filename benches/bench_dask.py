"""bcers.dask on a local cluster against the in-memory bcers call on the same data.

The data (float32 logits and 0/1 labels) is generated on the workers by ``dask.array.random``
with a fixed seed and kept there (persisted); the in-memory side computes the same arrays
locally with the same generator. Timed: the mean BCE with logits, and its value and gradient
(the gradient left on the workers, as a training step would use it), each checked bitwise
against the in-memory result. The workers run bcers single-threaded (two workers of one
thread each); the in-memory call uses bcers's threads over the same cores.

    python benches/bench_dask.py                 # N = 2e8, chunks of 1e7
    python benches/bench_dask.py --n 5e7 --repeat 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Any, Callable

import numpy as np

import bcers
import bcers.dask as bd

try:
    import dask.array as da
    import distributed
except ImportError as e:  # pragma: no cover
    raise SystemExit("this benchmark needs dask: pip install bcers[dask]") from e


def median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=float, default=2e8, help="elements (default 2e8)")
    parser.add_argument("--chunk", type=float, default=1e7, help="chunk size (default 1e7)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    n, chunk = int(args.n), int(args.chunk)

    def generate() -> tuple[Any, Any]:
        x = da.random.default_rng(args.seed).standard_normal(n, chunks=chunk, dtype=np.float32)
        u = da.random.default_rng(args.seed + 1).random(n, chunks=chunk, dtype=np.float32)
        return x, (u < 0.5).astype(np.float32)

    cluster = distributed.LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    with cluster, distributed.Client(cluster) as client:
        client.run(bcers.set_num_threads, 1)
        x, y = client.persist(generate())
        distributed.wait([x, y])

        def lazy_loss() -> Any:
            return bd.binary_cross_entropy_with_logits(x, y).compute()

        def lazy_value_and_grad() -> Any:
            value, grad = bd.binary_cross_entropy_with_logits_value_and_grad(x, y)
            value, grad = client.persist([value, grad])
            distributed.wait([value, grad])
            return value.compute(), grad

        t_loss_dask, loss_dask = median_time(lazy_loss, args.repeat)
        t_vg_dask, (value_dask, grad_dask) = median_time(lazy_value_and_grad, args.repeat)
        grad_head = grad_dask[:chunk].compute()
        del grad_dask

    x_np, y_np = (a.compute(scheduler="threads") for a in generate())
    t_loss_np, loss_np = median_time(
        lambda: bcers.binary_cross_entropy_with_logits(x_np, y_np), args.repeat
    )
    t_vg_np, (value_np, grad_np) = median_time(
        lambda: bcers.binary_cross_entropy_with_logits_value_and_grad(x_np, y_np), args.repeat
    )
    same_loss = loss_dask == loss_np and loss_dask.dtype == loss_np.dtype
    same_grad = np.array_equal(grad_head.view(np.uint32), grad_np[:chunk].view(np.uint32))
    if not (same_loss and value_dask == value_np and same_grad):
        raise SystemExit(f"results differ: {loss_dask!r} {loss_np!r} {value_dask!r}")

    print(
        f"N = {n:.3g} float32, chunks of {chunk:.3g}, {args.workers} workers x 1 thread; "
        f"in memory: {bcers.get_num_threads()} threads; median of {args.repeat}"
    )
    print(f"{'':28}{'bcers.dask':>12}{'in memory':>12}{'ratio':>8}")
    for name, t_dask, t_np in (
        ("mean loss", t_loss_dask, t_loss_np),
        ("value_and_grad (mean)", t_vg_dask, t_vg_np),
    ):
        print(f"{name:28}{t_dask * 1e3:10.1f}ms{t_np * 1e3:10.1f}ms{t_dask / t_np:8.2f}")
    print(f"loss {float(loss_np):.9g}: bitwise equal (value and gradient)")


if __name__ == "__main__":
    main()
