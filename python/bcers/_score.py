"""``bcers score``: the loss of predictions against labels stored in files too large for memory.

The values are read in batches (``--batch-size`` rows at a time) from ``.npy`` files (memory
mapped), CSV files (pyarrow's streaming reader when pyarrow is installed, the standard library's
``csv`` module otherwise) or Parquet files (through pyarrow, the ``parquet`` extra), and fed to
a :class:`bcers.metrics.LossMetric`, so memory stays bounded by the batch size whatever the
length of the files. Every problem with the command line or the data is one line on stderr,
``bcers score: error: ...``, and a non-zero exit status: 2 for the command line, 1 for the
data.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import itertools
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, Callable, NoReturn, TextIO

import numpy as np
import numpy.typing as npt

import bcers

PROG = "bcers score"
DEFAULT_BATCH_SIZE = 1 << 20
# The Python CSV reader turns at most this many rows into Python objects at a time.
_PYTHON_CSV_ROWS = 1 << 16
# The block pyarrow's streaming CSV reader parses at a time (its default; larger blocks only
# cost memory).
_ARROW_CSV_BLOCK = 1 << 20
# The read buffer of a Parquet column chunk.
_PARQUET_BUFFER = 1 << 20
_TABLE_EXTENSIONS = (".csv", ".parquet", ".pq")
_EXTENSIONS = (".npy", *_TABLE_EXTENSIONS)
_ROLES = ("input", "target", "weight", "mask")
# The spellings of a mask value in a CSV file (pyarrow's defaults for booleans).
_TRUE = ("1", "true", "True", "TRUE")
_FALSE = ("0", "false", "False", "FALSE")
_BOOLS = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}
_NUMERIC_KINDS = frozenset("biuf")

_Array = npt.NDArray[Any]


class ScoreError(Exception):
    """A problem with the command line (status 2) or the data (status 1), told in one line."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _one_line(text: object) -> str:
    """The first line of a message from a library (pyarrow's can run over several)."""
    lines = str(text).strip().splitlines()
    return lines[0] if lines else type(text).__name__


def _extension(path: str) -> str:
    """A file name's extension, lower case, with its dot (``""`` for none)."""
    return os.path.splitext(path)[1].lower()


def _value(v: Any) -> str:
    """A data value as the messages show it."""
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return "NaN" if math.isnan(f) else repr(f)
    return repr(v.item() if isinstance(v, np.generic) else v)


def _names(names: Sequence[str]) -> str:
    """A table's column names for a message (the first 20)."""
    shown = ", ".join(repr(n) for n in names[:20])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 20 else "")


def _import_pyarrow(module: str, path: str, extra: bool) -> Any:
    """``pyarrow`` or one of its modules, typed ``Any`` (pyarrow is optional, and its stubs
    vary by version); a ScoreError naming the extra to install when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        hint = "pip install bcers[parquet]" if extra else "pip install pyarrow"
        raise ScoreError(f"reading {path} needs pyarrow, which is not installed: {hint}") from e


def _have_pyarrow_csv() -> bool:
    """Whether pyarrow's CSV reader can be imported."""
    try:
        importlib.import_module("pyarrow.csv")
    except ImportError:
        return False
    return True


def _column_index(names: Sequence[str], column: str | None, path: str) -> int:
    """Where a column is among a table's columns; ``None`` means the only one."""
    if column is None:
        if len(names) == 1:
            return 0
        raise ScoreError(
            f"{path} has {len(names)} columns: name one, as {path}:COLUMN (its columns: "
            f"{_names(names)})"
        )
    matches = [i for i, n in enumerate(names) if n == column]
    if not matches:
        raise ScoreError(f"{path} has no column {column!r} (its columns: {_names(names)})")
    if len(matches) > 1:
        raise ScoreError(f"{path} has {len(matches)} columns named {column!r}")
    return matches[0]


# The readers: one per file, yielding the columns asked of it in batches of equal length.


class _Reader:
    """A file read in batches: each batch is a list of 1-D arrays of one length, one per
    column asked for, in the order asked."""

    path: str
    # The number of rows (elements, for a .npy array), when the file says so before it is read.
    rows: int | None = None
    # A .npy array's shape (its elements are read in C order).
    shape: tuple[int, ...] | None = None

    def batches(self, batch_size: int) -> Iterator[list[_Array]]:
        """The columns, ``batch_size`` rows at most at a time."""
        raise NotImplementedError

    def fraction(self) -> float | None:
        """How much of the file has been read, 0 to 1, for a file of unknown length."""
        return None

    def close(self) -> None:
        """Releases the file."""


class _NpyReader(_Reader):
    """A ``.npy`` array, memory mapped; its elements in C order."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise ScoreError(f"{path}: not a NumPy array file of numbers ({_one_line(e)})") from e
        if not isinstance(a, np.ndarray):
            raise ScoreError(f"{path}: an .npz archive, not an .npy array file")
        if a.dtype.kind not in _NUMERIC_KINDS:
            raise ScoreError(f"{path}: holds {a.dtype}, not numbers")
        self._array: _Array = a
        self.shape = tuple(a.shape)
        self.rows = int(a.size)

    def batches(self, batch_size: int) -> Iterator[list[_Array]]:
        a = self._array
        if a.ndim <= 1 or a.flags.c_contiguous:
            flat = a.reshape(-1)
            for start in range(0, flat.size, batch_size):
                yield [np.asarray(flat[start : start + batch_size])]
        else:
            # Not in C order (a Fortran-ordered array, say): whole rows along the first axis at a
            # time, copied into C order.
            row = math.prod(a.shape[1:]) or 1
            step = max(1, batch_size // row)
            for start in range(0, a.shape[0], step):
                yield [np.ascontiguousarray(a[start : start + step]).reshape(-1)]

    def close(self) -> None:
        del self._array


def _csv_header(path: str, delimiter: str) -> list[str]:
    """A CSV file's column names: its first non-empty row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for row in csv.reader(f, delimiter=delimiter):
                if row:
                    return row
    except UnicodeDecodeError as e:
        raise ScoreError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except csv.Error as e:
        raise ScoreError(f"{path}: {_one_line(e)}") from e
    raise ScoreError(f"{path}: empty file, without even a header row")


def _parse_floats(values: list[str], path: str, column: str, row0: int) -> _Array:
    """The numbers a CSV column's batch of text holds; a ScoreError at the first that is not
    one."""
    try:
        return np.fromiter(map(float, values), np.float64, len(values))
    except ValueError:
        pass
    for i, v in enumerate(values):
        try:
            float(v)
        except ValueError:
            what = "is empty" if not v.strip() else f"{v!r} is not a number"
            raise ScoreError(f"{path}: row {row0 + i}, column {column!r}: {what}") from None
    raise AssertionError("unreachable: a value failed to convert, then converted")


def _parse_bools(values: list[str], path: str, column: str, row0: int) -> _Array:
    """A mask column's batch of text as booleans (1/0, true/false)."""
    try:
        return np.fromiter(map(_BOOLS.__getitem__, values), np.bool_, len(values))
    except KeyError:
        pass
    i = next(i for i, v in enumerate(values) if v not in _BOOLS)
    raise ScoreError(
        f"{path}: row {row0 + i}, column {column!r}: {values[i]!r} is not a mask value (1, 0, "
        "true or false)"
    )


class _CsvPythonReader(_Reader):
    """A CSV file through the standard library's ``csv`` module (no pyarrow needed), at most
    65,536 rows at a time."""

    def __init__(
        self, path: str, columns: list[str | None], masks: list[bool], delimiter: str
    ) -> None:
        self.path = path
        self._header = _csv_header(path, delimiter)
        self._index = [_column_index(self._header, c, path) for c in columns]
        self._names = [self._header[i] for i in self._index]
        self._masks = masks
        self._raw = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._size = os.fstat(self._raw.fileno()).st_size
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8-sig", newline="")
        self._csv = csv.reader(self._text, delimiter=delimiter)

    def _rows(self, n: int) -> list[list[str]]:
        """The next ``n`` rows at most, as lists of fields."""
        try:
            return list(itertools.islice(self._csv, n))
        except UnicodeDecodeError as e:
            raise ScoreError(f"{self.path}: not UTF-8 text ({e.reason})") from e
        except csv.Error as e:
            raise ScoreError(f"{self.path}: line {self._csv.line_num}: {_one_line(e)}") from e

    def batches(self, batch_size: int) -> Iterator[list[_Array]]:
        n = min(batch_size, _PYTHON_CSV_ROWS)
        width = len(self._header)
        # The header: the first non-empty row.
        while True:
            first = self._rows(1)
            if not first or first[0]:
                break
        row0 = 0
        while True:
            rows = self._rows(n)
            if not rows:
                return
            if not all(rows):
                rows = [r for r in rows if r]  # blank lines are skipped, as pyarrow does
            for i, r in enumerate(rows):
                if len(r) != width:
                    raise ScoreError(
                        f"{self.path}: row {row0 + i} has {len(r)} fields, the header {width}"
                    )
            batch = []
            for index, name, mask in zip(self._index, self._names, self._masks):
                values = [r[index] for r in rows]
                parse = _parse_bools if mask else _parse_floats
                batch.append(parse(values, self.path, name, row0))
            yield batch
            row0 += len(rows)

    def fraction(self) -> float | None:
        if self._raw.closed:
            return None
        return self._raw.tell() / self._size if self._size else None

    def close(self) -> None:
        self._text.close()


def _arrow_numbers(
    pa: Any, array: Any, path: str, column: str, row0: int, null: str = "missing value (null)"
) -> _Array:
    """A pyarrow array of numbers (or booleans) as a NumPy array; a ScoreError at the first
    missing value (``null`` says what it is)."""
    if array.null_count:
        i = int(np.argmax(array.is_null().to_numpy(zero_copy_only=False)))
        raise ScoreError(f"{path}: row {row0 + i}, column {column!r}: {null}")
    if pa.types.is_decimal(array.type):
        array = array.cast(pa.float64())
    result: _Array = array.to_numpy(zero_copy_only=False)
    return result


def _arrow_numeric(pa: Any, type_: Any) -> bool:
    """Whether a pyarrow type holds numbers (or booleans)."""
    t = pa.types
    return bool(
        t.is_floating(type_) or t.is_integer(type_) or t.is_boolean(type_) or t.is_decimal(type_)
    )


class _CsvArrowReader(_Reader):
    """A CSV file through pyarrow's streaming reader (multi-threaded, in blocks of 1 MiB)."""

    def __init__(
        self, path: str, columns: list[str | None], masks: list[bool], delimiter: str
    ) -> None:
        self.path = path
        self._pa = _import_pyarrow("pyarrow", path, extra=False)
        self._csv = _import_pyarrow("pyarrow.csv", path, extra=False)
        self._delimiter = delimiter
        header = _csv_header(path, delimiter)
        names = [header[_column_index(header, c, path)] for c in columns]
        # Each column once (a column may serve twice), typed float64, or bool for a mask.
        self._unique = list(dict.fromkeys(names))
        self._positions = [self._unique.index(n) for n in names]
        types: dict[str, Any] = {}
        for name, mask in zip(names, masks):
            kind = self._pa.bool_() if mask else self._pa.float64()
            types[name] = kind if types.get(name, kind) == kind else self._pa.float64()
        self._types = types
        self._size = os.path.getsize(path)
        # For the progress bar: the bytes per row of the file's first MiB.
        with open(path, "rb") as f:
            sample = f.read(1 << 20)
        self._row_bytes = len(sample) / max(1, sample.count(b"\n"))
        self._done = 0

    def _open(self, types: dict[str, Any], invalid_row: Any = None) -> Any:
        """A streaming reader of the columns asked for, typed as ``types`` says; with an
        ``invalid_row`` handler (pyarrow's ``invalid_row_handler``) on one thread, so that the
        handler is told each malformed row's number."""
        c = self._csv
        return c.open_csv(
            self.path,
            read_options=c.ReadOptions(
                use_threads=invalid_row is None, block_size=_ARROW_CSV_BLOCK
            ),
            parse_options=c.ParseOptions(
                delimiter=self._delimiter, invalid_row_handler=invalid_row
            ),
            convert_options=c.ConvertOptions(
                include_columns=self._unique,
                column_types=types,
                null_values=[""],
                strings_can_be_null=False,
                true_values=list(_TRUE),
                false_values=list(_FALSE),
            ),
        )

    def batches(self, batch_size: int) -> Iterator[list[_Array]]:
        pa = self._pa
        row0 = 0
        try:
            reader = self._open(self._types)
        except pa.ArrowException as e:
            raise self._locate(0, e) from None
        with reader:
            while True:
                try:
                    record_batch = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowException as e:
                    raise self._locate(row0, e) from None
                for start in range(0, record_batch.num_rows, batch_size):
                    part = record_batch.slice(start, batch_size)
                    columns = [
                        _arrow_numbers(
                            pa, part.column(i), self.path, self._unique[i], row0, "is empty"
                        )
                        for i in range(len(self._unique))
                    ]
                    yield [columns[p] for p in self._positions]
                    row0 += part.num_rows
                    self._done = row0

    def _locate(self, row0: int, error: Exception) -> ScoreError:
        """The error pyarrow raised in the block after ``row0``, with its row and value: the
        file read again, its columns as text, and that block's values checked one by one."""
        pa = self._pa
        generic = ScoreError(f"{self.path}: after row {row0}: {_one_line(error)}")
        strings = {name: pa.string() for name in self._unique}
        malformed: list[ScoreError] = []

        def invalid_row(r: Any) -> str:
            # pyarrow numbers the rows from 1 with the header first (blank lines skipped), so
            # the data row counted from 0 as everywhere here is two less.
            malformed.append(
                ScoreError(
                    f"{self.path}: row {r.number - 2} has {r.actual_columns} fields, the "
                    f"header {r.expected_columns}"
                )
            )
            return "error"

        row = 0
        try:
            # Read from the start (rows counted as the reader that failed counted them, blank
            # lines skipped); the failing block held at most a block's bytes, so fewer rows.
            with self._open(strings, invalid_row) as reader:
                while row <= row0 + _ARROW_CSV_BLOCK:
                    record_batch = reader.read_next_batch()
                    n = record_batch.num_rows
                    if row + n > row0:
                        for name in self._unique:
                            values = record_batch.column(name).to_pylist()
                            mask = self._types[name] == pa.bool_()
                            (_parse_bools if mask else _parse_floats)(values, self.path, name, row)
                    row += n
        except ScoreError as e:
            return e
        except (pa.ArrowException, StopIteration):
            pass
        return malformed[0] if malformed else generic

    def fraction(self) -> float | None:
        return min(0.99, self._done * self._row_bytes / self._size) if self._size else None


class _ParquetReader(_Reader):
    """A Parquet file through pyarrow, in record batches of the columns asked for."""

    def __init__(self, path: str, columns: list[str | None]) -> None:
        self.path = path
        self._pa = pa = _import_pyarrow("pyarrow", path, extra=True)
        pq = _import_pyarrow("pyarrow.parquet", path, extra=True)
        try:
            # No pre-buffering (pyarrow's default reads every column chunk asked for ahead, the
            # whole file), and buffered reads (a column chunk a MiB at a time, not whole): memory
            # stays bounded by the batch size, even for files of very large row groups.
            self._file = pq.ParquetFile(path, pre_buffer=False, buffer_size=_PARQUET_BUFFER)
        except pa.ArrowException as e:
            raise ScoreError(f"{path}: not a Parquet file ({_one_line(e)})") from None
        schema = self._file.schema_arrow
        names = [str(n) for n in schema.names]
        picked = [names[_column_index(names, c, path)] for c in columns]
        for name in picked:
            type_ = schema.field(name).type
            if not _arrow_numeric(pa, type_):
                raise ScoreError(f"{path}: column {name!r} holds {type_}, not numbers")
        self._unique = list(dict.fromkeys(picked))
        self._positions = [self._unique.index(n) for n in picked]
        self.rows = int(self._file.metadata.num_rows)

    def batches(self, batch_size: int) -> Iterator[list[_Array]]:
        pa = self._pa
        row0 = 0
        batches = self._file.iter_batches(
            batch_size=batch_size, columns=self._unique, use_threads=True
        )
        while True:
            try:
                record_batch = next(batches)
            except StopIteration:
                return
            except pa.ArrowException as e:
                raise ScoreError(f"{self.path}: after row {row0}: {_one_line(e)}") from None
            columns = [
                _arrow_numbers(pa, record_batch.column(i), self.path, name, row0)
                for i, name in enumerate(self._unique)
            ]
            yield [columns[p] for p in self._positions]
            row0 += record_batch.num_rows

    def close(self) -> None:
        self._file.close()


# Where each role's values come from.


class _Source:
    """Where one of input, target, weight and mask comes from: a .npy file, or a column of a
    table file (``column`` None: the table's only column)."""

    def __init__(self, role: str, spec: str, path: str, column: str | None) -> None:
        self.role = role
        self.spec = spec
        self.path = path
        self.column = column

    @property
    def table(self) -> bool:
        """Whether the values are a column of a table file (CSV or Parquet)."""
        return _extension(self.path) in _TABLE_EXTENSIONS


def _source(role: str, spec: str, table: str | None) -> _Source:
    """Reads ``--input`` and the like: ``FILE.npy``, ``FILE.{csv,parquet,pq}:COLUMN`` (or the
    file alone, for a table of one column), or a column of the TABLE argument."""
    ext = _extension(spec)
    if ext == ".npy":
        return _Source(role, spec, spec, None)
    path, sep, column = spec.rpartition(":")
    if sep and column and _extension(path) in _TABLE_EXTENSIONS:
        return _Source(role, spec, path, column)
    if table is not None:
        return _Source(role, spec, table, spec)
    if ext in _TABLE_EXTENSIONS:
        return _Source(role, spec, spec, None)
    if ext:
        _check_file(spec, f"--{role} ")
    raise ScoreError(
        f"--{role} {spec}: not a file name (FILE.npy, or FILE.csv:COLUMN); to name a column, "
        "give the table file first: bcers score TABLE --input COLUMN ...",
        2,
    )


def _check_file(path: str, option: str) -> None:
    """A ScoreError unless ``path`` is an existing file of a type bcers score reads; the
    message starts with ``option`` (the option that named the file, or nothing)."""
    ext = _extension(path)
    if ext not in _EXTENSIONS:
        shown = f"{ext!r}" if ext else "none"
        raise ScoreError(
            f"{option}{path}: unsupported file type (extension {shown}; bcers score reads .npy, "
            ".csv, .parquet and .pq files)",
            2,
        )
    if not os.path.exists(path):
        raise ScoreError(f"{option}{path}: no such file")
    if os.path.isdir(path):
        raise ScoreError(f"{option}{path}: a directory, not a file")


def _open_readers(
    sources: list[_Source], delimiter: str, engine: str
) -> tuple[list[_Reader], list[tuple[int, int]]]:
    """One reader per file (the columns of one table file are read together), and for each
    source the reader and the position of its column in that reader's batches."""
    readers: list[_Reader] = []
    try:
        return _open_each(sources, delimiter, engine, readers)
    except BaseException:
        for r in readers:
            r.close()
        raise


def _open_each(
    sources: list[_Source], delimiter: str, engine: str, readers: list[_Reader]
) -> tuple[list[_Reader], list[tuple[int, int]]]:
    """:func:`_open_readers`, appending each reader to ``readers`` as it is opened."""
    where: list[tuple[int, int]] = []
    tables: dict[str, list[_Source]] = {}
    for s in sources:
        if s.table:
            tables.setdefault(os.path.realpath(s.path), []).append(s)
    opened: dict[str, int] = {}
    for s in sources:
        if not s.table:
            where.append((len(readers), 0))
            readers.append(_NpyReader(s.path))
            continue
        key = os.path.realpath(s.path)
        group = tables[key]
        if key not in opened:
            opened[key] = len(readers)
            columns = [g.column for g in group]
            masks = [g.role == "mask" for g in group]
            if _extension(s.path) == ".csv":
                use_arrow = engine == "pyarrow" or (engine == "auto" and _have_pyarrow_csv())
                reader: _Reader = (
                    _CsvArrowReader(s.path, columns, masks, delimiter)
                    if use_arrow
                    else _CsvPythonReader(s.path, columns, masks, delimiter)
                )
            else:
                reader = _ParquetReader(s.path, columns)
            readers.append(reader)
        where.append((opened[key], group.index(s)))
    return readers, where


def _aligned(readers: list[_Reader], batch_size: int) -> Iterator[tuple[int, list[list[_Array]]]]:
    """The readers' batches cut to common lengths: ``(rows, [each reader's columns])``. A
    ScoreError when one file ends before another."""
    iterators = [r.batches(batch_size) for r in readers]
    # Each reader's batch at hand (None once it has ended), and the rows of it already used.
    current: list[list[_Array] | None] = [[np.empty(0)] for _ in readers]
    offset = [0] * len(readers)
    done = 0
    while True:
        for k, it in enumerate(iterators):
            batch = current[k]
            while batch is not None and offset[k] == len(batch[0]):
                batch = next(it, None)
                offset[k] = 0
            current[k] = batch
        ended = [k for k in range(len(readers)) if current[k] is None]
        if len(ended) == len(readers):
            return
        if ended:
            short = readers[ended[0]]
            longer = readers[next(k for k in range(len(readers)) if current[k] is not None)]
            more = f"{longer.rows:,}" if longer.rows is not None else "more"
            raise ScoreError(
                f"length mismatch: {short.path} has {done:,} rows, {longer.path} has {more}"
            )
        n = min(len(c[0]) - o for c, o in zip(current, offset) if c is not None)
        parts = []
        for k, c in enumerate(current):
            assert c is not None
            parts.append([a[offset[k] : offset[k] + n] for a in c])
            offset[k] += n
        done += n
        yield n, parts


class _Progress:
    """A one-line progress bar on a terminal, redrawn at most ten times a second."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self._stream = stream
        self._enabled = enabled
        self._start = time.perf_counter()
        self._last = 0.0
        self._drawn = False

    def _width(self) -> int:
        """The terminal's width, less one column (no wrap at the last)."""
        try:
            columns = os.get_terminal_size(self._stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        if columns <= 0:  # not known (a terminal may say 0)
            columns = shutil.get_terminal_size((80, 24)).columns
        return max(20, columns) - 1

    def update(self, rows: int, fraction: float | None) -> None:
        """Redraws the bar: ``rows`` done, ``fraction`` of the work (None: unknown)."""
        if not self._enabled:
            return
        now = time.perf_counter()
        if now - self._last < 0.1:
            return
        self._last = now
        elapsed = now - self._start
        rate = rows / elapsed if elapsed > 0 else 0.0
        width = self._width()
        text = f" {rows:,} rows  {_si(rate)} rows/s"
        if fraction is not None:
            fraction = min(max(fraction, 0.0), 1.0)
            left = elapsed * (1 - fraction) / fraction if fraction > 0 else math.inf
            eta = f"  {_clock(left)} left" if math.isfinite(left) else ""
            bar_width = max(10, min(30, width - 56))
            full = int(fraction * bar_width)
            text = f"{fraction:4.0%} |{'#' * full}{' ' * (bar_width - full)}|{text}{eta}"
        self._stream.write("\r" + text[:width].ljust(width))
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erases the bar."""
        if self._drawn:
            self._stream.write("\r" + " " * self._width() + "\r")
            self._stream.flush()
            self._drawn = False


def _si(x: float) -> str:
    """A rate in a few digits: ``2.1M``."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def _clock(seconds: float) -> str:
    """A duration as ``m:ss`` or ``h:mm:ss``."""
    s = int(seconds)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


# The options.


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """A ScoreError of status 2 (argparse prints the usage, then the error, then exits)."""
        raise ScoreError(f"{message} (see {self.prog} --help)", 2)


def _positive_int(text: str) -> int:
    """``--batch-size``: a whole number from 1, written ``65536``, ``65_536`` or ``1e6``."""
    try:
        value = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value != int(value) or value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(value)


def _float(text: str) -> float:
    """A loss parameter: any number but NaN (the loss checks its range)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError("must not be NaN")
    return value


_EPILOG = """\
Each of --input, --target, --weight and --mask is a column of TABLE when TABLE is given, or
otherwise a file: FILE.npy (one array; multi-dimensional arrays are read as their elements in
C order), or FILE.csv:COLUMN, FILE.parquet:COLUMN (FILE alone for a table of one column).
CSV files have a header row; Parquet needs pyarrow (pip install bcers[parquet]), and CSV uses
it when it is installed. A mask is true/1 for a row kept, false/0 for a row dropped; the
values of dropped rows are not checked (NaN, or a label of 255, is fine), though a file's text
must still be numbers. Exit status: 0; 1 for bad data; 2 for a bad command line.

examples:
  bcers score preds.parquet --input prob --target label
  bcers score --input logits.npy --target labels.npy --loss logits --pos-weight 3
  bcers score scores.csv --input p --target y --weight w --reduction weighted_mean --json
"""


def _parser() -> _Parser:
    """The command line of ``bcers score``."""
    p = _Parser(
        prog=PROG,
        usage=(f"{PROG} [TABLE] --input SRC --target SRC [--weight SRC] [--mask SRC] [options]"),
        description=(
            "The loss of predictions against labels read from .npy, CSV or Parquet files, in\n"
            "batches: the files may be larger than memory. The result is the bcers loss of the\n"
            "whole arrays, bit for bit, in the input's dtype (CSV values are float64)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "table",
        nargs="?",
        metavar="TABLE",
        help="a .csv, .parquet or .pq file whose columns --input, --target, ... name",
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--input", "-i", required=True, metavar="SRC", help="the predictions (required)"
    )
    data.add_argument("--target", "-t", required=True, metavar="SRC", help="the labels, in [0, 1]")
    data.add_argument("--weight", "-w", metavar="SRC", help="a weight per row")
    data.add_argument("--mask", "-m", metavar="SRC", help="which rows to keep (bool, or 1/0)")
    loss = p.add_argument_group("loss")
    loss.add_argument(
        "--loss",
        choices=("bce", "logits", "focal"),
        default="bce",
        help="bce: BCELoss on probabilities (default); logits: BCEWithLogitsLoss; "
        "focal: SigmoidFocalLoss on logits",
    )
    loss.add_argument("--pos-weight", type=_float, metavar="P", help="logits: positives' weight")
    loss.add_argument("--alpha", type=_float, metavar="A", help="focal: alpha (default 0.25)")
    loss.add_argument("--gamma", type=_float, metavar="G", help="focal: gamma (default 2)")
    loss.add_argument(
        "--label-smoothing", type=_float, default=0.0, metavar="S", help="in [0, 1] (default 0)"
    )
    loss.add_argument(
        "--reduction",
        choices=("mean", "sum", "weighted_mean"),
        default="mean",
        help="mean: divided by the rows kept (default); sum; weighted_mean: divided by the sum "
        "of the kept rows' weights",
    )
    run = p.add_argument_group("reading and output")
    run.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"rows read at a time; memory grows with it (default {DEFAULT_BATCH_SIZE:,})",
    )
    run.add_argument("--delimiter", default=",", metavar="C", help="CSV field separator")
    run.add_argument(
        "--csv-engine",
        choices=("auto", "pyarrow", "python"),
        default="auto",
        help="CSV reader: pyarrow's (fast) when installed, else Python's csv module",
    )
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    run.add_argument(
        "--no-progress", action="store_true", help="no progress bar (shown only on a terminal)"
    )
    return p


def _make_loss(args: argparse.Namespace) -> Any:
    """The bcers loss object the options describe."""
    for option, value, loss_names in (
        ("--pos-weight", args.pos_weight, ("logits",)),
        ("--alpha", args.alpha, ("focal",)),
        ("--gamma", args.gamma, ("focal",)),
    ):
        if value is not None and args.loss not in loss_names:
            raise ScoreError(f"{option} applies to --loss {loss_names[0]}, not {args.loss}", 2)
    try:
        if args.loss == "bce":
            return bcers.BCELoss(label_smoothing=args.label_smoothing)
        if args.loss == "logits":
            pos_weight = None if args.pos_weight is None else np.float64(args.pos_weight)
            return bcers.BCEWithLogitsLoss(
                pos_weight=pos_weight, label_smoothing=args.label_smoothing
            )
        return bcers.SigmoidFocalLoss(
            alpha=0.25 if args.alpha is None else args.alpha,
            gamma=2.0 if args.gamma is None else args.gamma,
            label_smoothing=args.label_smoothing,
        )
    except ValueError as e:
        raise ScoreError(_one_line(e), 2) from None


def _describe(loss: Any) -> str:
    """The loss object's name and parameters, for the human-readable output."""
    if isinstance(loss, bcers.SigmoidFocalLoss):
        params = [f"alpha={loss.alpha!r}", f"gamma={loss.gamma!r}"]
    elif isinstance(loss, bcers.BCEWithLogitsLoss) and loss.pos_weight is not None:
        params = [f"pos_weight={float(np.asarray(loss.pos_weight))!r}"]
    else:
        params = []
    if loss.label_smoothing:
        params.append(f"label_smoothing={loss.label_smoothing!r}")
    return f"{type(loss).__name__}({', '.join(params)})"


# Scoring.


class _Locator:
    """Row numbers as the messages give them: ``row N``, or for a multi-dimensional .npy
    array ``element N (index (i, j))``."""

    def __init__(self, shape: tuple[int, ...] | None) -> None:
        self._shape = shape if shape is not None and len(shape) > 1 else None

    def __call__(self, row: int) -> str:
        if self._shape is None:
            return f"row {row}"
        index = tuple(int(i) for i in np.unravel_index(row, self._shape))
        return f"element {row} (index {index})"


def _as_role(role: str, a: _Array, where: Callable[[int], str], row0: int) -> _Array:
    """A batch of one column, in the form the metric takes for its role."""
    if a.dtype.kind not in _NUMERIC_KINDS:
        raise ScoreError(f"the {role} holds {a.dtype}, not numbers")
    if role == "mask":
        if a.dtype.kind == "b":
            return a
        bad = (a != 0) & (a != 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise ScoreError(f"{where(row0 + i)}: mask value {_value(a[i])} is neither 0 nor 1")
        return np.not_equal(a, 0)
    if role == "input" and a.dtype.kind != "f":
        return a.astype(np.float64)
    return a


def _check_unit(
    role: str,
    a: _Array,
    keep: _Array | None,
    where: Callable[[int], str],
    row0: int,
    hint: str,
) -> None:
    """A ScoreError at the first kept value of ``a`` outside [0, 1] (NaN included)."""
    kept = a if keep is None else a[keep]
    if kept.size == 0 or (kept.min() >= 0 and kept.max() <= 1):
        return
    bad = ~((a >= 0) & (a <= 1))
    if keep is not None:
        bad &= keep
    i = int(np.argmax(bad))
    v = a[i]
    what = "is NaN" if v != v else f"{_value(v)} is outside [0, 1]"
    raise ScoreError(f"{where(row0 + i)}: {role} {what}{hint}")


def _nan_error(
    arrays: dict[str, _Array | None], keep: _Array | None, where: Callable[[int], str], row0: int
) -> ScoreError:
    """The error for a batch whose loss came out NaN: the first NaN among the kept values, or
    the batch's rows."""
    n = 0
    for role in ("input", "target", "weight"):
        a = arrays[role]
        if a is None:
            continue
        n = len(a)
        if a.dtype.kind != "f":
            continue
        bad = np.isnan(a)
        if keep is not None:
            bad &= keep
        if bad.any():
            return ScoreError(f"{where(row0 + int(np.argmax(bad)))}: {role} is NaN")
    return ScoreError(
        f"{where(row0)} to {where(row0 + n - 1)}: the loss is NaN (an infinite weight?)"
    )


def score(args: argparse.Namespace, stderr: TextIO) -> dict[str, Any]:
    """Scores the files the options name; the result as ``--json`` prints it."""
    from .metrics import LossMetric

    start = time.perf_counter()
    loss = _make_loss(args)
    table: str | None = args.table
    if table is not None:
        _check_file(table, "")
        if not table.lower().endswith(_TABLE_EXTENSIONS):
            raise ScoreError(
                f"{table}: TABLE must be a .csv, .parquet or .pq file (a .npy file is given "
                "with --input FILE.npy)",
                2,
            )
    sources: list[_Source] = []
    for role in _ROLES:
        spec = getattr(args, role)
        if spec is not None:
            s = _source(role, spec, table)
            _check_file(s.path, f"--{role} " if s.path != table else "")
            sources.append(s)
    if args.reduction == "weighted_mean" and args.weight is None:
        raise ScoreError("--reduction weighted_mean needs --weight", 2)
    if len(args.delimiter) != 1:
        raise ScoreError(f"--delimiter must be one character, got {args.delimiter!r}", 2)

    readers, where_ = _open_readers(sources, args.delimiter, args.csv_engine)
    try:
        known = [r for r in readers if r.rows is not None]
        for r in known[1:]:
            a = known[0]
            multi = a.shape is not None and r.shape is not None and len(a.shape + r.shape) > 2
            if multi and a.shape != r.shape:
                raise ScoreError(f"shape mismatch: {a.path} is {a.shape}, {r.path} is {r.shape}")
            if a.rows != r.rows:
                raise ScoreError(
                    f"length mismatch: {a.path} has {a.rows:,} rows, {r.path} has {r.rows:,}"
                )
        total = known[0].rows if known else None
        shape = next((r.shape for r in readers if r.shape is not None), None)
        where = _Locator(shape)
        bar = _Progress(stderr, enabled=not args.no_progress and stderr.isatty())
        metric = LossMetric(loss)
        rows = 0
        roles = [s.role for s in sources]
        hint_input = " (--loss bce takes probabilities; for logits use --loss logits)"
        hint_target = " (labels lie in [0, 1]; --mask drops rows)"
        try:
            for n, parts in _aligned(readers, args.batch_size):
                arrays: dict[str, _Array | None] = dict.fromkeys(_ROLES)
                for role, (k, c) in zip(roles, where_):
                    arrays[role] = _as_role(role, parts[k][c], where, rows)
                x, y, w, keep = (arrays[r] for r in _ROLES)
                assert x is not None
                assert y is not None
                if args.loss == "bce":
                    _check_unit("input", x, keep, where, rows, hint_input)
                _check_unit("target", y, keep, where, rows, hint_target)
                try:
                    metric.update(x, y, weight=w, mask=keep)
                except (ValueError, TypeError) as e:
                    last = where(rows + n - 1)
                    raise ScoreError(f"{where(rows)} to {last}: {_one_line(e)}") from None
                if math.isnan(metric.sum) or math.isnan(metric.weight_sum):
                    raise _nan_error(arrays, keep, where, rows)
                rows += n
                fraction = rows / total if total else max((r.fraction() or 0) for r in readers)
                bar.update(rows, fraction)
        finally:
            bar.close()
    finally:
        for r in readers:
            r.close()
    seconds = time.perf_counter() - start

    if rows == 0:
        raise ScoreError(
            f"empty input: {', '.join(dict.fromkeys(s.path for s in sources))} holds no rows"
        )
    if metric.count == 0:
        raise ScoreError(f"every one of the {rows:,} rows is masked out: nothing to score")
    # The result in the dtype the in-memory loss returns (the input's; float32 for float32
    # columns), rounded from the exact sums as the in-memory loss rounds them: the same bits.
    result_type = np.asarray(metric.compute()).dtype.type
    if args.reduction == "weighted_mean" and metric.weight_sum == 0:
        raise ScoreError("the kept rows' weights sum to 0: their weighted mean is undefined")
    with np.errstate(over="ignore"):
        if args.reduction == "sum":
            value = result_type(metric.sum)
        elif args.reduction == "mean":
            value = result_type(metric.sum / metric.count)
        else:
            value = result_type(metric.compute())
    if math.isnan(value):
        raise ScoreError(f"the loss is NaN (sum {metric.sum!r}, weight sum {metric.weight_sum!r})")
    return {
        "loss": float(value),
        "dtype": np.dtype(result_type).name,
        "reduction": args.reduction,
        "sum": float(metric.sum),
        "count": int(metric.count),
        "weight_sum": float(metric.weight_sum),
        "rows": rows,
        "seconds": seconds,
        "rows_per_second": rows / seconds if seconds > 0 else None,
        "options": {
            "table": table,
            **{role: getattr(args, role) for role in _ROLES},
            "loss": args.loss,
            "pos_weight": args.pos_weight,
            "alpha": getattr(loss, "alpha", None),
            "gamma": getattr(loss, "gamma", None),
            "label_smoothing": args.label_smoothing,
            "batch_size": args.batch_size,
            "delimiter": args.delimiter,
            "csv_engine": args.csv_engine,
        },
        "loss_function": _describe(loss),
        "bcers_version": bcers.__version__,
    }


def _json_number(x: Any) -> Any:
    """A float as JSON has it: the infinities (a logit loss can be infinite) as strings."""
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else "-inf"
    return x


def _human(result: dict[str, Any]) -> str:
    """The result for a person: the loss (in its dtype's shortest form), the rows, the time."""
    loss = np.dtype(result["dtype"]).type(result["loss"])
    kept, rows = result["count"], result["rows"]
    what = f"{result['loss_function']}, reduction {result['reduction']}, {result['dtype']}"
    counts = f"rows  {rows:,}" + (f", {kept:,} kept" if kept != rows else "")
    if result["options"]["weight"] is not None:
        counts += f", weight sum {result['weight_sum']!r}"
    timing = f"time  {result['seconds']:.3f} s"
    if result["rows_per_second"]:
        timing += f" ({_si(result['rows_per_second'])} rows/s)"
    return f"loss  {loss!s}  ({what})\n{counts}\n{timing}"


def main(argv: Sequence[str] | None = None) -> int:
    """``bcers score ...``: the exit status (0; 1 for bad data; 2 for a bad command line)."""
    try:
        args = _parser().parse_args(argv)
        result = score(args, sys.stderr)
    except ScoreError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{PROG}: error: out of memory (a smaller --batch-size may help)", file=sys.stderr)
        return 1
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"{PROG}: error: {where}{e.strerror or _one_line(e)}", file=sys.stderr)
        return 1
    except Exception as e:  # never a traceback: one line, with the exception's type
        print(f"{PROG}: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 1
    if args.json:
        cleaned = {k: _json_number(v) for k, v in result.items()}
        print(json.dumps(cleaned, allow_nan=False))
    else:
        print(_human(result))
    return 0
