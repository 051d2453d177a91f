"""``bcers score`` on a Parquet file larger than one would load: wall time, rows/s, peak RSS.

Writes a Parquet file of ``--rows`` rows (default 2e8, about 1.6 GB) with two float32 columns,
``pred`` (probabilities) and ``label`` (0 or 1, drawn with probability ``pred``), in row groups
of ``--row-group`` rows, then runs in child processes, one after the other:

- ``read only``: the two columns read batch by batch with pyarrow (opened as ``bcers score``
  opens the file) and turned into NumPy arrays, nothing computed (the floor set by reading
  and decoding);
- ``bcers score`` with each ``--batch-size`` asked for (``python -m bcers score FILE --input
  pred --target label --json``);
- ``in memory`` (unless ``--no-in-memory``; by default only up to 5e7 rows): the whole table
  read with ``pyarrow.parquet.read_table`` and ``bcers.binary_cross_entropy`` called on the
  two columns, for the value the streamed result must match and the memory it takes.

Each child's peak resident set is its own ``ru_maxrss`` (from ``os.wait4``, the per-child form
of ``resource.getrusage(RUSAGE_CHILDREN)``). The runs after the first find the file in the page
cache when memory allows. Prints a markdown table. Needs pyarrow (``pip install
bcers[parquet]``).

    python benches/bench_score.py --rows 2e7
    python benches/bench_score.py --rows 2e8 --batch-size 65536 1048576 --dir /data/tmp
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BYTES_PER_ROW = 8  # two float32 columns, before compression (the labels compress well)

READ_ONLY = """
import sys
import pyarrow.parquet as pq
rows = 0
# Opened as bcers score opens it (pyarrow's pre-buffering would read the whole file ahead).
parquet = pq.ParquetFile(sys.argv[1], pre_buffer=False, buffer_size=1 << 20)
for batch in parquet.iter_batches(
    batch_size=int(sys.argv[2]), columns=["pred", "label"]
):
    batch.column(0).to_numpy()
    batch.column(1).to_numpy()
    rows += batch.num_rows
print(rows)
"""

IN_MEMORY = """
import sys
import json
import pyarrow.parquet as pq
import bcers
table = pq.read_table(sys.argv[1], columns=["pred", "label"])
x = table.column("pred").to_numpy()
y = table.column("label").to_numpy()
print(json.dumps({"loss": float(bcers.binary_cross_entropy(x, y)), "rows": len(x)}))
"""


def count(text: str) -> int:
    """A row count: ``2e8``, ``200_000_000`` or ``200000000``."""
    value = float(text)
    if value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"not a whole number >= 1: {text!r}")
    return int(value)


def generate(path: Path, rows: int, row_group: int, seed: int) -> float:
    """Writes the file; the seconds it took."""
    start = time.perf_counter()
    schema = pa.schema([("pred", pa.float32()), ("label", pa.float32())])
    with pq.ParquetWriter(path, schema) as writer:
        for i, first in enumerate(range(0, rows, row_group)):
            n = min(row_group, rows - first)
            rng = np.random.default_rng([seed, i])
            pred = rng.random(n, dtype=np.float32)
            label = (rng.random(n, dtype=np.float32) < pred).astype(np.float32)
            writer.write_table(
                pa.table({"pred": pred, "label": label}, schema=schema), row_group_size=n
            )
    return time.perf_counter() - start


def measure(command: list[str], repeat: int) -> tuple[float, int, str]:
    """Runs a child ``repeat`` times: the least wall time in seconds, the largest peak RSS in
    bytes, the last stdout."""
    runs = [measure_once(command) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs), runs[-1][2]


def measure_once(command: list[str]) -> tuple[float, int, str]:
    """Runs a child to its end: its wall time in seconds, its peak RSS in bytes, its stdout."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"{' '.join(command)} failed:\n{err.read().decode()}")
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return wall, rss, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=count, default=200_000_000, help="rows (default 2e8)")
    parser.add_argument(
        "--row-group", type=count, default=1 << 20, help="rows per row group (default 2^20)"
    )
    parser.add_argument(
        "--batch-size",
        type=count,
        nargs="+",
        default=[None],
        help="bcers score's --batch-size, one run each (default: its default)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to write the file")
    parser.add_argument("--keep", action="store_true", help="keep the file afterwards")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeat", type=count, default=3, help="runs of each, the fastest shown (default 3)"
    )
    memory = parser.add_mutually_exclusive_group()
    memory.add_argument("--in-memory", action="store_true", help="the in-memory run at any size")
    memory.add_argument("--no-in-memory", action="store_true", help="no in-memory run")
    args = parser.parse_args()

    directory = Path(args.dir or tempfile.gettempdir())
    need = args.rows * BYTES_PER_ROW * 11 // 10 + (256 << 20)
    free = shutil.disk_usage(directory).free
    if free < need:
        sys.exit(
            f"{directory} has {free / 2**30:.1f} GiB free, the file needs up to "
            f"{need / 2**30:.1f} GiB: choose fewer --rows or another --dir"
        )
    path = directory / f"bench_score_{args.rows}.parquet"
    print(f"writing {args.rows:,} rows to {path} ...", file=sys.stderr)
    seconds = generate(path, args.rows, args.row_group, args.seed)
    size = path.stat().st_size
    print(
        f"written in {seconds:.1f} s, {size / 2**20:,.0f} MiB, row groups of {args.row_group:,}",
        file=sys.stderr,
    )

    results: list[tuple[str, float, int, str]] = []
    try:
        batch_for_read = args.batch_size[0] or (1 << 20)
        wall, rss, out = measure(
            [sys.executable, "-c", READ_ONLY, str(path), str(batch_for_read)], args.repeat
        )
        assert int(out) == args.rows
        results.append((f"read only (batches of {batch_for_read:,})", wall, rss, ""))
        streamed: float | None = None
        for batch_size in args.batch_size:
            command = [sys.executable, "-m", "bcers", "score", str(path)]
            command += ["--input", "pred", "--target", "label", "--json", "--no-progress"]
            if batch_size is not None:
                command += ["--batch-size", str(batch_size)]
            wall, rss, out = measure(command, args.repeat)
            result: dict[str, Any] = json.loads(out)
            assert result["rows"] == args.rows
            streamed = result["loss"]
            label = f"bcers score --batch-size {result['options']['batch_size']:,}"
            results.append((label, wall, rss, repr(streamed)))
        in_memory = args.in_memory or (not args.no_in_memory and args.rows <= 50_000_000)
        if in_memory:
            wall, rss, out = measure([sys.executable, "-c", IN_MEMORY, str(path)], args.repeat)
            reference = json.loads(out)["loss"]
            results.append(("in memory (read_table + binary_cross_entropy)", wall, rss, ""))
            match = "the same bits" if streamed == reference else "DIFFERENT"
            results[-1] = (*results[-1][:3], f"{reference!r} ({match})")
    finally:
        if not args.keep:
            path.unlink()

    print(
        f"\n{args.rows:,} rows, float32 pred and label, Parquet {size / 2**20:,.0f} MiB "
        f"(row groups of {args.row_group:,}); {os.cpu_count()} CPUs; fastest of {args.repeat}\n"
    )
    print("| run | wall s | rows/s | peak RSS MiB | loss |")
    print("|---|---|---|---|---|")
    for name, wall, rss, loss in results:
        print(
            f"| {name} | {wall:.2f} | {args.rows / wall / 1e6:.1f}M | {rss / 2**20:,.0f} | {loss} |"
        )


if __name__ == "__main__":
    main()
