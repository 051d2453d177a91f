"""``bcers score``: the loss of predictions stored in .npy, CSV and Parquet files, read in
batches, equals the in-memory loss of the whole arrays; every bad input is one line on stderr
and a non-zero exit status."""

from __future__ import annotations

import csv
import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bcers

ROOT = Path(__file__).resolve().parent.parent
N = 10_007  # rows: a prime, so no batch size divides it
BATCH_SIZES = ["1000", "4096", "65536"]
FUNCTIONS: dict[str, Any] = {
    "bce": bcers.binary_cross_entropy,
    "logits": bcers.binary_cross_entropy_with_logits,
    "focal": bcers.sigmoid_focal_loss,
}

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:
    pa = pq = None

needs_pyarrow = pytest.mark.skipif(pa is None, reason="pyarrow is not installed")


def score(
    *args: str, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m bcers score ARGS``, its stdout and stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "bcers", "score", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def score_json(*args: str) -> dict[str, Any]:
    """The JSON object ``bcers score ARGS --json`` prints."""
    proc = score(*args, "--json")
    assert proc.stderr == ""  # no progress bar off a terminal
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def expected(
    loss: str,
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    reduction: str = "mean",
    **kwargs: Any,
) -> float:
    """The in-memory bcers loss of the whole arrays."""
    return float(FUNCTIONS[loss](x, y, reduction=reduction, **kwargs))


def same(value: float, reference: float) -> None:
    """Streamed and in-memory results agree, bit for bit (LossMetric's sums are exact)."""
    assert value == reference


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(20240611)
    p = rng.uniform(0, 1, N)
    p[:5] = [0.0, 1.0, 1e-300, 1 - 1e-16, 0.5]  # the logarithms' -100 floor included
    return {
        "p": p,
        "z": rng.normal(0, 3, N),  # logits
        "y": (rng.random(N) < 0.4).astype(np.float64),
        "w": rng.uniform(0, 2, N),
        "m": rng.random(N) < 0.8,
    }


def write_csv(path: Path, columns: dict[str, np.ndarray[Any, Any]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(columns))
        cells = [c.astype(np.int8) if c.dtype == bool else c for c in columns.values()]
        writer.writerows(zip(*(c.tolist() for c in cells)))
    return path


def write_parquet(path: Path, columns: dict[str, np.ndarray[Any, Any]], group: int = 3000) -> Path:
    pq.write_table(pa.table(columns), path, row_group_size=group)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]) -> Path:
    """The data as one .npy file per column, one CSV and (with pyarrow) one Parquet file."""
    d = tmp_path_factory.mktemp("score")
    for name, a in data.items():
        np.save(d / f"{name}.npy", a)
    write_csv(d / "d.csv", data)
    if pa is not None:
        write_parquet(d / "d.parquet", data)
    return d


# The declared entry points, and the demo left as it was.


def test_console_script_and_parquet_extra_are_declared() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["bcers"] == "bcers.__main__:_entry"
    assert project["optional-dependencies"]["parquet"] == ["pyarrow>=14"]


def test_the_installed_console_script_scores(files: Path, data: dict[str, Any]) -> None:
    script = shutil.which("bcers", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the bcers console script is not installed (pip install -e . installs it)")
    proc = subprocess.run(
        [script, "score", "--input", "p.npy", "--target", "y.npy", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=files,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    same(json.loads(proc.stdout)["loss"], expected("bce", data["p"], data["y"]))


def test_python_m_bcers_alone_still_runs_the_demo() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bcers"], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"bcers {bcers.__version__}: the seed examples")
    assert proc.stdout.rstrip().endswith("All seed examples match torch.")


def test_python_m_bcers_help_names_score_and_score_has_its_own_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bcers", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: python -m bcers")
    assert "python -m bcers score" in proc.stdout
    proc = score("--help")
    assert proc.stdout.startswith("usage: bcers score [TABLE] --input SRC --target SRC")
    for option in ("--loss", "--pos-weight", "--reduction", "--batch-size", "--json"):
        assert option in proc.stdout


# Values: the streamed loss is the in-memory one.


@pytest.mark.parametrize("loss", ["bce", "logits", "focal"])
@pytest.mark.parametrize(
    ("reduction", "weighted", "masked"),
    [
        ("mean", False, False),
        ("sum", False, False),
        ("mean", True, True),
        ("sum", True, False),
        ("weighted_mean", True, False),
        ("weighted_mean", True, True),
    ],
)
def test_npy_files_give_the_in_memory_loss(
    files: Path, data: dict[str, Any], loss: str, reduction: str, weighted: bool, masked: bool
) -> None:
    x = data["p"] if loss == "bce" else data["z"]
    args = ["--input", str(files / ("p.npy" if loss == "bce" else "z.npy"))]
    args += ["--target", str(files / "y.npy"), "--loss", loss, "--reduction", reduction]
    kwargs: dict[str, Any] = {}
    if weighted:
        args += ["--weight", str(files / "w.npy")]
        kwargs["weight"] = data["w"]
    if masked:
        args += ["--mask", str(files / "m.npy")]
        kwargs["mask"] = data["m"]
    result = score_json(*args, "--batch-size", "1000")
    same(result["loss"], expected(loss, x, data["y"], reduction, **kwargs))
    kept = int(data["m"].sum()) if masked else N
    assert result["count"] == kept
    assert result["rows"] == N
    w_sum = float(np.sum(data["w"][data["m"]] if masked else data["w"])) if weighted else kept
    assert result["weight_sum"] == pytest.approx(w_sum, rel=1e-12)
    assert result["reduction"] == reduction
    assert result["options"]["loss"] == loss


@pytest.mark.parametrize("batch_size", ["1", "7", "1000", "10007", "1048576"])
def test_any_batch_size_gives_the_same_loss(
    files: Path, data: dict[str, Any], batch_size: str
) -> None:
    result = score_json(
        "--input", str(files / "z.npy"), "--target", str(files / "y.npy"),
        "--weight", str(files / "w.npy"), "--loss", "logits", "--batch-size", batch_size,
    )  # fmt: skip
    same(result["loss"], expected("logits", data["z"], data["y"], weight=data["w"]))
    assert result["options"]["batch_size"] == int(batch_size)


TABLE_CASES = [
    pytest.param("d.csv", ["--csv-engine", "python"], id="csv-python"),
    pytest.param("d.csv", ["--csv-engine", "pyarrow"], id="csv-pyarrow", marks=needs_pyarrow),
    pytest.param("d.parquet", [], id="parquet", marks=needs_pyarrow),
]


@pytest.mark.parametrize(("table", "engine"), TABLE_CASES)
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_table_columns_give_the_in_memory_loss(
    files: Path, data: dict[str, Any], table: str, engine: list[str], batch_size: str
) -> None:
    # Logits with every option: pos_weight, label smoothing, weights, a mask.
    result = score_json(
        str(files / table), "--input", "z", "--target", "y", "--weight", "w", "--mask", "m",
        "--loss", "logits", "--pos-weight", "2.5", "--label-smoothing", "0.1",
        "--reduction", "weighted_mean", "--batch-size", batch_size, *engine,
    )  # fmt: skip
    reference = expected(
        "logits", data["z"], data["y"], "weighted_mean", weight=data["w"], mask=data["m"],
        pos_weight=np.float64(2.5), label_smoothing=0.1,
    )  # fmt: skip
    same(result["loss"], reference)
    assert result["count"] == int(data["m"].sum())
    assert result["options"]["pos_weight"] == 2.5
    assert result["options"]["label_smoothing"] == 0.1


@pytest.mark.parametrize(("table", "engine"), TABLE_CASES)
@pytest.mark.parametrize("loss", ["bce", "focal"])
def test_tables_with_the_other_losses(
    files: Path, data: dict[str, Any], table: str, engine: list[str], loss: str
) -> None:
    x, column = (data["p"], "p") if loss == "bce" else (data["z"], "z")
    extra = ["--alpha", "0.6", "--gamma", "1.5"] if loss == "focal" else []
    kwargs = {"alpha": 0.6, "gamma": 1.5} if loss == "focal" else {}
    result = score_json(
        str(files / table), "--input", column, "--target", "y", "--mask", "m", "--loss", loss,
        "--reduction", "sum", "--batch-size", "3333", *extra, *engine,
    )  # fmt: skip
    same(result["loss"], expected(loss, x, data["y"], "sum", mask=data["m"], **kwargs))
    if loss == "focal":
        assert (result["options"]["alpha"], result["options"]["gamma"]) == (0.6, 1.5)


@needs_pyarrow
def test_columns_from_different_files_and_formats(files: Path, data: dict[str, Any]) -> None:
    # Parquet row groups of 3000, CSV blocks, .npy batches: the batches are cut to line up.
    result = score_json(
        "--input", str(files / "z.npy"), "--target", f"{files / 'd.parquet'}:y",
        "--weight", f"{files / 'd.csv'}:w", "--mask", str(files / "m.npy"),
        "--loss", "logits", "--reduction", "weighted_mean", "--batch-size", "2500",
    )  # fmt: skip
    reference = expected(
        "logits", data["z"], data["y"], "weighted_mean", weight=data["w"], mask=data["m"]
    )
    same(result["loss"], reference)
    assert result["options"]["table"] is None


def test_a_table_of_one_column_needs_no_column_name(tmp_path: Path, data: dict[str, Any]) -> None:
    write_csv(tmp_path / "p.csv", {"prob": data["p"]})
    write_csv(tmp_path / "y.csv", {"label": data["y"]})
    result = score_json("--input", str(tmp_path / "p.csv"), "--target", str(tmp_path / "y.csv"))
    same(result["loss"], expected("bce", data["p"], data["y"]))


@needs_pyarrow
def test_float32_parquet_columns_are_computed_in_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    p = rng.random(N, dtype=np.float32)
    y = rng.integers(0, 2, N).astype(np.int8)  # integer labels are cast, as in memory
    path = write_parquet(tmp_path / "f.parquet", {"p": p, "y": y}, group=4000)
    result = score_json(str(path), "--input", "p", "--target", "y", "--batch-size", "5000")
    reference = bcers.binary_cross_entropy(p, y.astype(np.float32))
    assert reference.dtype == np.float32
    assert result["dtype"] == "float32"
    assert result["loss"] == reference  # a float32 result, the same bits
    result = score_json(str(path), "--input", "p", "--target", "y", "--reduction", "sum")
    assert result["loss"] == bcers.binary_cross_entropy(p, y, reduction="sum")
    # The exact sum, rounded once to float64 (the float32 result is it rounded to float32).
    assert np.float32(result["sum"]) == result["loss"]
    # A person reads the float32 in its shortest form.
    out = score(str(path), "--input", "p", "--target", "y").stdout
    assert out.startswith(f"loss  {reference!s}  (BCELoss(), reduction mean, float32)\n")


def test_multidimensional_npy_arrays_in_any_memory_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(size=(301, 7))
    y = np.asfortranarray(rng.integers(0, 2, (301, 7)).astype(np.uint8))
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    result = score_json(
        "--input", str(tmp_path / "z.npy"), "--target", str(tmp_path / "y.npy"),
        "--loss", "logits", "--batch-size", "50",
    )  # fmt: skip
    same(result["loss"], expected("logits", z, y.astype(np.float64)))
    assert result["rows"] == 301 * 7


def test_masked_rows_may_hold_anything(tmp_path: Path, data: dict[str, Any]) -> None:
    p, y, m = data["p"].copy(), data["y"].copy(), data["m"]
    p[~m] = np.where(np.arange(N)[~m] % 2, np.nan, 7.0)
    y[~m] = 255.0  # "no label"
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "m.npy", m.astype(np.int64))  # a 0/1 mask of integers
    result = score_json(
        "--input", str(tmp_path / "p.npy"), "--target", str(tmp_path / "y.npy"),
        "--mask", str(tmp_path / "m.npy"), "--batch-size", "999",
    )  # fmt: skip
    same(result["loss"], expected("bce", p, y, mask=m))


@pytest.mark.parametrize("engine", ["python", pytest.param("pyarrow", marks=needs_pyarrow)])
def test_csv_mask_spellings_and_quoting(tmp_path: Path, engine: str) -> None:
    path = tmp_path / "q.csv"
    path.write_text(
        '\ufeff"name, with comma",p,y,keep\n'
        'a,0.25,1,true\n'
        '"b, c",0.5,0,False\n'
        '\n'
        'd,"0.75",1,1\n'
        'e,0.125,0,0\n',
        encoding="utf-8",
    )  # fmt: skip
    result = score_json(
        str(path), "--input", "p", "--target", "y", "--mask", "keep", "--csv-engine", engine
    )
    x = np.array([0.25, 0.5, 0.75, 0.125])
    y = np.array([1.0, 0, 1, 0])
    same(result["loss"], expected("bce", x, y, mask=np.array([True, False, True, False])))
    assert result["rows"] == 4


def test_a_semicolon_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("p;y\n0.25;1\n0.5;0\n")
    result = score_json(str(path), "--input", "p", "--target", "y", "--delimiter", ";")
    same(result["loss"], expected("bce", np.array([0.25, 0.5]), np.array([1.0, 0.0])))


# Output.


def test_json_holds_the_result_and_the_options(files: Path, data: dict[str, Any]) -> None:
    result = score_json(
        str(files / "d.csv"), "--input", "p", "--target", "y", "--weight", "w",
        "--reduction", "sum", "--csv-engine", "python",
    )  # fmt: skip
    assert set(result) >= {"loss", "sum", "count", "weight_sum", "rows", "seconds", "options"}
    assert result["loss"] == result["sum"]
    assert isinstance(result["count"], int)
    assert result["rows"] == result["count"] == N
    assert result["seconds"] > 0
    assert result["options"]["table"] == str(files / "d.csv")
    assert result["options"]["input"] == "p"
    assert result["options"]["weight"] == "w"
    assert result["options"]["mask"] is None
    assert result["options"]["csv_engine"] == "python"
    assert result["loss_function"] == "BCELoss()"
    assert result["bcers_version"] == bcers.__version__


def test_an_infinite_loss_is_a_string_in_json(tmp_path: Path) -> None:
    np.save(tmp_path / "z.npy", np.array([np.inf, 0.0]))
    np.save(tmp_path / "y.npy", np.array([0.0, 1.0]))
    proc = score(
        "--input", str(tmp_path / "z.npy"), "--target", str(tmp_path / "y.npy"),
        "--loss", "logits", "--json",
    )  # fmt: skip
    assert json.loads(proc.stdout)["loss"] == "inf"


def test_human_readable_output(files: Path, data: dict[str, Any]) -> None:
    proc = score(
        "--input", str(files / "p.npy"), "--target", str(files / "y.npy"),
        "--weight", str(files / "w.npy"), "--mask", str(files / "m.npy"),
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("loss  ")
    value = float(lines[0].split()[1])
    same(value, expected("bce", data["p"], data["y"], weight=data["w"], mask=data["m"]))
    assert "BCELoss(), reduction mean" in lines[0]
    assert f"rows  {N:,}, {int(data['m'].sum()):,} kept, weight sum" in lines[1]
    assert lines[2].startswith("time  ")
    assert proc.stderr == ""


def _on_a_terminal(*args: str) -> str:
    """What ``bcers score ARGS`` writes to stderr when stderr is a terminal."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bcers", "score", *args],
            stdout=subprocess.PIPE,
            stderr=slave,
            timeout=300,
            check=False,
        )
    finally:
        os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.returncode == 0
    return b"".join(chunks).decode()


def test_a_progress_bar_only_on_a_terminal(files: Path) -> None:
    args = ["--input", str(files / "p.npy"), "--target", str(files / "y.npy"), "--batch-size", "10"]
    shown = _on_a_terminal(*args)
    assert "rows/s" in shown
    assert "%" in shown
    assert shown.endswith("\r")  # erased at the end
    assert "rows/s" not in _on_a_terminal(*args, "--no-progress")
    assert score(*args).stderr == ""


# Errors: one line on stderr, no traceback, a non-zero status.


def fails(*args: str, status: int = 1, cwd: Path | None = None) -> str:
    """The one-line error of ``bcers score ARGS``, without its prefix."""
    proc = score(*args, check=False, cwd=cwd)
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    prefix = "bcers score: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix) :]


def test_error_missing_file(files: Path) -> None:
    message = fails("--input", "p.npy", "--target", "nope.npy", cwd=files)
    assert message == "--target nope.npy: no such file"
    assert fails("nope.csv", "--input", "a", "--target", "b") == "nope.csv: no such file"


@pytest.mark.parametrize(("table", "engine"), TABLE_CASES)
def test_error_missing_column_names_the_columns(files: Path, table: str, engine: list[str]) -> None:
    message = fails(table, "--input", "p", "--target", "label", *engine, cwd=files)
    assert message == f"{table} has no column 'label' (its columns: 'p', 'z', 'y', 'w', 'm')"


def test_error_a_table_of_several_columns_needs_a_name(files: Path) -> None:
    message = fails("--input", "d.csv", "--target", "y.npy", cwd=files)
    assert message.startswith("d.csv has 5 columns: name one, as d.csv:COLUMN")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "p.txt", "--target", "y.npy"], "--input p.txt: unsupported file type"),
        (["d.json", "--input", "p", "--target", "y"], "d.json: unsupported file type"),
        (["p.npy", "--input", "p", "--target", "y"], "p.npy: TABLE must be a .csv"),
        (["--input", "p", "--target", "y.npy"], "--input p: not a file name"),
    ],
)
def test_error_unsupported_file_types(files: Path, args: list[str], message: str) -> None:
    assert fails(*args, status=2, cwd=files).startswith(message)


@pytest.mark.parametrize("engine", ["python", pytest.param("pyarrow", marks=needs_pyarrow)])
@pytest.mark.parametrize(("cell", "message"), [("abc", "'abc' is not a number"), ("", "is empty")])
def test_error_non_numeric_csv_value_names_the_row(
    tmp_path: Path, engine: str, cell: str, message: str
) -> None:
    p = [repr(v) for v in np.linspace(0.1, 0.9, 3000).tolist()]
    p[2345] = cell
    path = tmp_path / "bad.csv"
    path.write_text("p,y\n" + "".join(f"{v},1\n" for v in p))
    got = fails(str(path), "--input", "p", "--target", "y", "--csv-engine", engine,
                "--batch-size", "1000")  # fmt: skip
    assert got == f"{path}: row 2345, column 'p': {message}"


@needs_pyarrow
def test_error_far_into_a_large_csv_file_names_its_row(tmp_path: Path) -> None:
    # pyarrow reads blocks of 1 MiB: the bad value lies in the third, after a blank line.
    lines = [f"{i % 1000 / 1000 + 1e-9!r},{i % 2}\n" for i in range(250_000)]
    lines[10_000] += "\n"
    lines[234_567] = "0.5,x\n"
    path = tmp_path / "large.csv"
    path.write_text("p,y\n" + "".join(lines))
    assert path.stat().st_size > 2 << 20
    for engine in ("pyarrow", "python"):
        got = fails(str(path), "--input", "p", "--target", "y", "--csv-engine", engine)
        assert got == f"{path}: row 234567, column 'y': 'x' is not a number"


@pytest.mark.parametrize("engine", ["python", pytest.param("pyarrow", marks=needs_pyarrow)])
def test_error_a_csv_row_of_the_wrong_width(tmp_path: Path, engine: str) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("p,y\n0.5,1\n0.5\n")
    got = fails(str(path), "--input", "p", "--target", "y", "--csv-engine", engine)
    assert got == f"{path}: row 1 has 1 fields, the header 2"


@pytest.mark.parametrize("engine", ["python", pytest.param("pyarrow", marks=needs_pyarrow)])
@pytest.mark.parametrize("bad", ["0.5\n", "0.5,1,0\n", '"0.5,1\n'])
def test_error_a_ragged_row_far_into_a_large_csv_file_names_its_row(
    tmp_path: Path, engine: str, bad: str
) -> None:
    # Blank lines before the header and in the data, and a quoted field with a line break in
    # it, are not rows; the ragged row lies in pyarrow's third block of 1 MiB.
    lines = [f"{i % 1000 / 1000 + 1e-9!r},{i % 2}\n" for i in range(250_000)]
    lines[10_000] += "\n"
    lines[20_000] = '"0.25\n",1\n'
    lines[234_567] = bad
    path = tmp_path / "ragged.csv"
    path.write_text("\np,y\n" + "".join(lines))
    assert path.stat().st_size > 2 << 20
    fields = 1 if bad.count(",") != 2 else 3
    got = fails(str(path), "--input", "p", "--target", "y", "--csv-engine", engine)
    if engine == "python" and bad.startswith('"'):
        # The csv module reads the unclosed quote's field on to its size limit, and says so.
        assert got.startswith(f"{path}: line ")
        assert got.endswith("field limit (131072)")
    else:
        assert got == f"{path}: row 234567 has {fields} fields, the header 2"


@needs_pyarrow
def test_error_non_numeric_parquet_column_and_nulls(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"p": ["a", "b"], "q": pa.array([0.5, None]), "y": [1.0, 0.0]}), path)
    assert fails(str(path), "--input", "p", "--target", "y") == (
        f"{path}: column 'p' holds string, not numbers"
    )
    assert fails(str(path), "--input", "q", "--target", "y") == (
        f"{path}: row 1, column 'q': missing value (null)"
    )
    (tmp_path / "fake.parquet").write_text("not parquet")
    message = fails(str(tmp_path / "fake.parquet"), "--input", "p", "--target", "y")
    assert message.startswith(f"{tmp_path / 'fake.parquet'}: not a Parquet file")


def test_error_non_numeric_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    np.save(tmp_path / "y.npy", np.array([1.0, 0.0]))
    assert fails("--input", "s.npy", "--target", "y.npy", cwd=tmp_path) == (
        "s.npy: holds <U1, not numbers"
    )
    (tmp_path / "junk.npy").write_text("junk")
    assert fails("--input", "junk.npy", "--target", "y.npy", cwd=tmp_path).startswith(
        "junk.npy: not a NumPy array file"
    )


def test_error_length_mismatch(tmp_path: Path, files: Path) -> None:
    np.save(tmp_path / "short.npy", np.full(N - 1, 0.5))
    message = fails("--input", str(tmp_path / "short.npy"), "--target", str(files / "y.npy"))
    assert message == f"length mismatch: {tmp_path / 'short.npy'} has {N - 1:,} rows, " + (
        f"{files / 'y.npy'} has {N:,}"
    )
    # A CSV file's length is known only at its end, either way round.
    write_csv(tmp_path / "short.csv", {"y": np.ones(N - 1)})
    message = fails(
        "--input", str(files / "p.npy"), "--target", f"{tmp_path / 'short.csv'}:y",
        "--batch-size", "1000",
    )  # fmt: skip
    assert message == f"length mismatch: {tmp_path / 'short.csv'} has {N - 1:,} rows, " + (
        f"{files / 'p.npy'} has {N:,}"
    )
    write_csv(tmp_path / "long.csv", {"y": np.ones(N + 1)})
    message = fails(
        "--input", str(files / "p.npy"), "--target", f"{tmp_path / 'long.csv'}:y",
        "--csv-engine", "python",
    )  # fmt: skip
    assert message == f"length mismatch: {files / 'p.npy'} has {N:,} rows, " + (
        f"{tmp_path / 'long.csv'} has more"
    )


def test_error_shape_mismatch(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.full((2, 3), 0.5))
    np.save(tmp_path / "b.npy", np.ones((3, 2)))
    assert fails("--input", "a.npy", "--target", "b.npy", cwd=tmp_path) == (
        "shape mismatch: a.npy is (2, 3), b.npy is (3, 2)"
    )


def _bad(tmp_path: Path, name: str, index: int, value: float, base: Any) -> str:
    a = np.array(base, dtype=np.float64, copy=True)
    a[index] = value
    np.save(tmp_path / name, a)
    return str(tmp_path / name)


@pytest.mark.parametrize(
    ("loss", "role", "value", "message"),
    [
        ("bce", "input", 1.5, "row 7654: input 1.5 is outside [0, 1] (--loss bce takes "
         "probabilities; for logits use --loss logits)"),
        ("bce", "input", -0.25, "row 7654: input -0.25 is outside [0, 1]"),
        ("bce", "input", np.nan, "row 7654: input is NaN"),
        ("bce", "target", 2.0, "row 7654: target 2.0 is outside [0, 1] (labels lie in [0, 1]; "
         "--mask drops rows)"),
        ("logits", "target", -1.0, "row 7654: target -1.0 is outside [0, 1]"),
        ("focal", "target", np.nan, "row 7654: target is NaN"),
        ("logits", "input", np.nan, "row 7654: input is NaN"),
        ("focal", "input", np.nan, "row 7654: input is NaN"),
        ("logits", "weight", np.nan, "row 7654: weight is NaN"),
    ],
)  # fmt: skip
def test_error_bad_values_name_the_row_and_value(
    tmp_path: Path, data: dict[str, Any], loss: str, role: str, value: float, message: str
) -> None:
    paths = {
        "input": str(tmp_path / "x.npy"),
        "target": str(tmp_path / "y.npy"),
        "weight": str(tmp_path / "w.npy"),
    }
    np.save(paths["input"], data["p"] if loss == "bce" else data["z"])
    np.save(paths["target"], data["y"])
    np.save(paths["weight"], data["w"])
    base = np.load(paths[role])
    _bad(tmp_path, Path(paths[role]).name, 7654, value, base)
    got = fails(
        "--input", paths["input"], "--target", paths["target"], "--weight", paths["weight"],
        "--loss", loss, "--batch-size", "1000",
    )  # fmt: skip
    assert got.startswith(message), got


def test_error_bad_mask_values(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", np.full(5, 0.5))
    np.save(tmp_path / "y.npy", np.ones(5))
    np.save(tmp_path / "m.npy", np.array([1, 0, 2, 1, 1]))
    got = fails("--input", "p.npy", "--target", "y.npy", "--mask", "m.npy", cwd=tmp_path)
    assert got == "row 2: mask value 2 is neither 0 nor 1"
    path = tmp_path / "m.csv"
    path.write_text("p,y,m\n0.5,1,yes\n")
    got = fails(str(path), "--input", "p", "--target", "y", "--mask", "m", "--csv-engine", "python")
    assert got == f"{path}: row 0, column 'm': 'yes' is not a mask value (1, 0, true or false)"


def test_error_a_bad_value_in_a_multidimensional_array_names_its_index(tmp_path: Path) -> None:
    p = np.full((4, 3), 0.5)
    p[2, 1] = 3.0
    np.save(tmp_path / "p.npy", p)
    np.save(tmp_path / "y.npy", np.ones((4, 3)))
    got = fails("--input", "p.npy", "--target", "y.npy", "--batch-size", "5", cwd=tmp_path)
    assert got.startswith("element 7 (index (2, 1)): input 3.0 is outside [0, 1]")


def test_error_empty_input(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("p,y\n")
    for engine in ("python", "auto"):
        got = fails("h.csv", "--input", "p", "--target", "y", "--csv-engine", engine, cwd=tmp_path)
        assert got == "empty input: h.csv holds no rows"
    (tmp_path / "e.csv").write_text("")
    got = fails("e.csv", "--input", "p", "--target", "y", cwd=tmp_path)
    assert got == "e.csv: empty file, without even a header row"
    np.save(tmp_path / "p.npy", np.zeros(0))
    np.save(tmp_path / "y.npy", np.zeros(0))
    got = fails("--input", "p.npy", "--target", "y.npy", cwd=tmp_path)
    assert got == "empty input: p.npy, y.npy holds no rows"
    if pa is not None:
        write_parquet(tmp_path / "e.parquet", {"p": np.zeros(0), "y": np.zeros(0)})
        got = fails("e.parquet", "--input", "p", "--target", "y", cwd=tmp_path)
        assert got == "empty input: e.parquet holds no rows"


def test_error_everything_masked_out(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", np.full(3, 0.5))
    np.save(tmp_path / "y.npy", np.ones(3))
    np.save(tmp_path / "m.npy", np.zeros(3, bool))
    got = fails("--input", "p.npy", "--target", "y.npy", "--mask", "m.npy", cwd=tmp_path)
    assert got == "every one of the 3 rows is masked out: nothing to score"


def test_error_weights_summing_to_zero(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", np.full(3, 0.5))
    np.save(tmp_path / "y.npy", np.ones(3))
    np.save(tmp_path / "w.npy", np.zeros(3))
    got = fails("--input", "p.npy", "--target", "y.npy", "--weight", "w.npy",
                "--reduction", "weighted_mean", cwd=tmp_path)  # fmt: skip
    assert got == "the kept rows' weights sum to 0: their weighted mean is undefined"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: --input/-i, --target/-t"),
        (["--alpha", "0.5"], "--alpha applies to --loss focal, not bce"),
        (["--pos-weight", "2", "--loss", "focal"], "--pos-weight applies to --loss logits"),
        (["--loss", "focal", "--alpha", "3"], "alpha must be at most 1"),
        (["--label-smoothing", "2"], "label_smoothing"),
        (["--batch-size", "0"], "argument --batch-size: must be a whole number >= 1"),
        (["--batch-size", "many"], "argument --batch-size: not a whole number: 'many'"),
        (["--reduction", "weighted_mean"], "--reduction weighted_mean needs --weight"),
        (["--reduction", "none"], "argument --reduction: invalid choice: 'none'"),
        (["--gamma", "nan", "--loss", "focal"], "argument --gamma: must not be NaN"),
        (["--delimiter", ";;"], "--delimiter must be one character"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_error_bad_options(files: Path, args: list[str], message: str) -> None:
    data_args = [] if not args else ["--input", "p.npy", "--target", "y.npy"]
    got = fails(*data_args, *args, status=2, cwd=files)
    assert message in got, got


def test_error_parquet_without_pyarrow_names_the_extra(tmp_path: Path) -> None:
    # pyarrow made unimportable in the child.
    code = (
        "import sys; sys.modules['pyarrow'] = None; "
        "from bcers.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    write_csv(tmp_path / "d.csv", {"p": np.full(N, 0.25), "y": np.ones(N)})
    proc = subprocess.run(
        [sys.executable, "-c", code, "score", "d.parquet", "--input", "p", "--target", "y"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr == (
        "bcers score: error: reading d.parquet needs pyarrow, which is not installed: "
        "pip install bcers[parquet]\n"
    )
    # CSV falls back to Python's csv module.
    proc = subprocess.run(
        [sys.executable, "-c", code, "score", "d.csv", "--input", "p", "--target", "y", "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["count"] == N
    assert result["loss"] == expected("bce", np.full(N, 0.25), np.ones(N))
