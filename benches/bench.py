"""bcers against the NumPy expressions a user would write and (if installed) torch CPU.

The cases: BCE and BCE with logits, forward and value_and_grad, and the sigmoid focal loss
(``alpha`` 0.25, ``gamma`` 2, logits ~ N(0, 3^2), targets in {0, 1}) forward and value_and_grad,
all ``mean``. The focal loss's NumPy expression is torchvision's code written in NumPy (its
gradient written out analytically); its torch column is ``torchvision.ops.sigmoid_focal_loss``
(with autograd for value_and_grad), empty without torchvision.

Everything runs in one process, the implementations of a case timed side by side (one batch of
each in turn, after a 5 ms pause for the previous one's threads to go idle, repeated; the
median batch is kept), at one thread count shared by bcers and torch. Beside every case is
the streaming-read limit ("stream"), the least time any loss over the same two arrays can
take: the two arrays read once by NumPy in ``bcers.get_num_threads()`` Python threads, each
thread ``np.add.reduce`` of its contiguous slice of both arrays (NumPy releases the GIL while
it sums), the calling thread taking one slice; below 65,536 elements (where bcers does not
split the work either) the calling thread reads both arrays alone. Its median is taken as
the others'. "bcers/stream" is bcers' time over it: 1.00x would be the memory limit. (At
small n the limit is mostly NumPy's per-call overhead, a few microseconds: there bcers/stream
near or below 1 says nothing about memory.)

    python benches/bench.py                      # the full sweep (a few minutes)
    python benches/bench.py --quick              # a smoke run (seconds)
    python benches/bench.py --plot docs/bench_plot.png --markdown /tmp/bench.md

Needs numpy and bcers; torch, torchvision and matplotlib are used when they import.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import bcers
from bcers import _bcers

try:  # torch is optional: its columns are left empty without it.
    import torch
    import torch.nn.functional as torch_f
except ImportError:  # pragma: no cover - depends on the environment
    torch = None
    torch_f = None

try:  # torchvision is optional too: the focal loss's torch column is empty without it.
    import torchvision
    from torchvision.ops import sigmoid_focal_loss as tv_sigmoid_focal_loss
except Exception:  # pragma: no cover - ImportError, or a torchvision built for another torch
    torchvision = None
    tv_sigmoid_focal_loss = None

IMPLS = ("numpy", "torch", "bcers")
OPS = ("bce", "logits", "bce_vg", "logits_vg", "focal", "focal_vg")
OP_TITLES = {
    "bce": "BCE forward (mean)",
    "logits": "BCE-with-logits forward (mean)",
    "bce_vg": "BCE value_and_grad (mean)",
    "logits_vg": "BCE-with-logits value_and_grad (mean)",
    "focal": "focal forward (mean)",
    "focal_vg": "focal value_and_grad (mean)",
}
# The sigmoid focal loss's parameters (torchvision's defaults).
ALPHA = 0.25
GAMMA = 2.0

Fn = Callable[[], object]


# ---------------------------------------------------------------------------------------------
# Timing.


def _calibrate(f: Fn, min_batch: float) -> int:
    """Calls per batch so that one batch lasts at least ``min_batch`` seconds."""
    f()  # warm-up: first-call costs (thread pools, page faults of fresh outputs) stay out
    t0 = time.perf_counter()
    f()
    once = max(time.perf_counter() - t0, 1e-7)
    return max(1, min(100_000, math.ceil(min_batch / once)))


# Pause before each batch. Thread pools keep their workers spinning for a while after a call
# (torch's OpenMP, bcers' rayon): without it, the workers of the implementation timed before
# take cores from the one timed next (measured: bcers right after a torch batch, 2 threads,
# n = 1e7: 5-10% slower).
SETTLE_S = 0.005


def measure(funcs: dict[str, Fn], reps: int, min_batch: float) -> dict[str, float]:
    """Median seconds per call of each function, batches of all of them taken in turn."""
    numbers = {name: _calibrate(f, min_batch) for name, f in funcs.items()}
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(reps):
            for name, f in funcs.items():
                number = numbers[name]
                time.sleep(SETTLE_S)
                t0 = time.perf_counter()
                for _ in range(number):
                    f()
                samples[name].append((time.perf_counter() - t0) / number)
    finally:
        if enabled:
            gc.enable()
    return {name: statistics.median(s) for name, s in samples.items()}


# ---------------------------------------------------------------------------------------------
# The cases.


@dataclass
class Data:
    """Probabilities ``x`` in (0, 1), soft targets ``y`` in [0, 1], logits ``z`` ~ N(0, 3^2),
    hard targets ``t`` in {0, 1} (the focal loss's, as in detection)."""

    x: np.ndarray[Any, Any]
    y: np.ndarray[Any, Any]
    z: np.ndarray[Any, Any]
    t: np.ndarray[Any, Any]
    tx: Any = None
    ty: Any = None
    tz: Any = None
    tt: Any = None

    @classmethod
    def make(cls, n: int, dtype: Any, seed: int = 0) -> Data:
        rng = np.random.default_rng(seed + n)
        x = rng.uniform(1e-6, 1 - 1e-6, n).astype(dtype)
        y = rng.random(n).astype(dtype)
        z = (3 * rng.standard_normal(n)).astype(dtype)
        t = (rng.random(n) < 0.5).astype(dtype)
        d = cls(x, y, z, t)
        if torch is not None:
            d.tx, d.ty, d.tz, d.tt = (torch.from_numpy(a) for a in (x, y, z, t))
        return d

    def operands(self, op: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The input and target of ``op``."""
        if op.startswith("focal"):
            return self.z, self.t
        return (self.z if op.startswith("logits") else self.x), self.y


def numpy_funcs(op: str, d: Data) -> Fn:
    x, y, z, n = d.x, d.y, d.z, d.x.size

    def bce() -> object:
        return -np.mean(y * np.maximum(np.log(x), -100) + (1 - y) * np.maximum(np.log1p(-x), -100))

    def bce_grad() -> object:
        return (x - y) / np.maximum((1 - x) * x, 1e-12) / n

    def logits() -> object:
        return np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))

    def logits_grad() -> object:
        return (1 / (1 + np.exp(-z)) - y) / n

    t, alpha, gamma = d.t, ALPHA, GAMMA

    def focal() -> object:
        # torchvision.ops.sigmoid_focal_loss, line by line (BCE with logits as torch computes it).
        p = 1 / (1 + np.exp(-z))
        ce = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        p_t = p * t + (1 - p) * (1 - t)
        loss = ce * ((1 - p_t) ** gamma)
        alpha_t = alpha * t + (1 - alpha) * (1 - t)
        return np.mean(alpha_t * loss)

    def focal_vg() -> object:
        # The loss as above, and its derivative: with q = 1 - p_t, dce/dz = p - t and
        # dq/dz = p (1 - p) (1 - 2t), so d/dz = alpha_t ((p - t) q^gamma
        # + gamma ce q^(gamma - 1) p (1 - p) (1 - 2t)) (gamma >= 1), over n for the mean.
        p = 1 / (1 + np.exp(-z))
        ce = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        q = 1 - (p * t + (1 - p) * (1 - t))
        alpha_t = alpha * t + (1 - alpha) * (1 - t)
        q_g1 = q ** (gamma - 1)
        loss = np.mean(alpha_t * ce * (q_g1 * q))
        grad = alpha_t * ((p - t) * (q_g1 * q) + gamma * ce * q_g1 * (p * (1 - p) * (1 - 2 * t)))
        return loss, grad / n

    table: dict[str, Fn] = {
        "bce": bce,
        "logits": logits,
        "bce_vg": lambda: (bce(), bce_grad()),
        "logits_vg": lambda: (logits(), logits_grad()),
        "focal": focal,
        "focal_vg": focal_vg,
    }
    return table[op]


def torch_funcs(op: str, d: Data) -> Fn | None:
    if torch is None or torch_f is None:
        return None
    tx, ty, tz, tt = d.tx, d.ty, d.tz, d.tt
    f = torch_f

    def vg(loss_fn: Callable[[Any, Any], Any], inp: Any, target: Any = ty) -> object:
        leaf = inp.detach().requires_grad_()  # a fresh leaf each call
        loss = loss_fn(leaf, target)
        loss.backward()
        return loss.detach(), leaf.grad

    table: dict[str, Fn] = {
        "bce": lambda: f.binary_cross_entropy(tx, ty),
        "logits": lambda: f.binary_cross_entropy_with_logits(tz, ty),
        "bce_vg": lambda: vg(f.binary_cross_entropy, tx),
        "logits_vg": lambda: vg(f.binary_cross_entropy_with_logits, tz),
    }
    focal = tv_sigmoid_focal_loss
    if focal is not None:

        def focal_mean(inp: Any, target: Any) -> Any:
            return focal(inp, target, alpha=ALPHA, gamma=GAMMA, reduction="mean")

        table["focal"] = lambda: focal_mean(tz, tt)
        table["focal_vg"] = lambda: vg(focal_mean, tz, tt)
    return table.get(op)


def bcers_funcs(op: str, d: Data) -> Fn:
    x, y, z = d.x, d.y, d.z
    table: dict[str, Fn] = {
        "bce": lambda: bcers.binary_cross_entropy(x, y),
        "logits": lambda: bcers.binary_cross_entropy_with_logits(z, y),
        "bce_vg": lambda: bcers.binary_cross_entropy_value_and_grad(x, y),
        "logits_vg": lambda: bcers.binary_cross_entropy_with_logits_value_and_grad(z, y),
        "focal": lambda: bcers.sigmoid_focal_loss(z, d.t, ALPHA, GAMMA, "mean"),
        "focal_vg": lambda: bcers.sigmoid_focal_loss_value_and_grad(z, d.t, ALPHA, GAMMA, "mean"),
    }
    return table[op]


def native_func(op: str, d: Data) -> Fn:
    """The native module's entry point called directly: no Python argument handling."""
    loss = "focal" if op.startswith("focal") else "logits" if op.startswith("logits") else "bce"
    alpha, gamma = (ALPHA, GAMMA) if loss == "focal" else (0.0, 0.0)
    a, b = d.operands(op)
    grad = op.endswith("_vg")
    compute = _bcers.compute
    return lambda: compute(loss, alpha, gamma, a, b, None, None, None, "mean", True, grad)


# The streaming-read limit: below this many elements one thread reads (bcers does not split
# such arrays either).
STREAM_SPLIT_MIN = 1 << 16

_READ_POOLS: dict[int, ThreadPoolExecutor] = {}


def _read(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> Any:
    """``a`` and ``b`` read once (summed); NumPy releases the GIL while it sums."""
    return np.add.reduce(a) + np.add.reduce(b)


class StreamRead:
    """The two arrays read once by NumPy in ``bcers.get_num_threads()`` threads (the count
    when called): each thread sums its contiguous slice of both, the calling thread one of
    them; one thread below ``STREAM_SPLIT_MIN`` elements."""

    def __init__(self, a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> None:
        self.a, self.b = a.reshape(-1), b.reshape(-1)
        self.slices: dict[int, list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]] = {}

    def __call__(self) -> Any:
        k = bcers.get_num_threads()
        if k == 1 or self.a.size < STREAM_SPLIT_MIN:
            return _read(self.a, self.b)
        parts = self.slices.get(k)
        if parts is None:
            cuts = [self.a.size * i // k for i in range(k + 1)]
            parts = [(self.a[lo:hi], self.b[lo:hi]) for lo, hi in zip(cuts, cuts[1:])]
            self.slices[k] = parts
        pool = _READ_POOLS.get(k - 1)
        if pool is None:
            pool = _READ_POOLS[k - 1] = ThreadPoolExecutor(k - 1, thread_name_prefix="read")
        futures = [pool.submit(_read, a, b) for a, b in parts[1:]]
        total = _read(*parts[0])
        return total + sum(f.result() for f in futures)


def stream_func(op: str, d: Data) -> Fn:
    return StreamRead(*d.operands(op))


def _loss_and_grad(value: object) -> tuple[float, np.ndarray[Any, Any] | None]:
    if isinstance(value, tuple):
        loss, grad = value
        if torch is not None and isinstance(grad, torch.Tensor):
            grad = grad.numpy()
        return float(loss), np.asarray(grad, dtype=np.float64)
    return float(value), None  # type: ignore[arg-type]


def check(funcs: dict[str, Fn]) -> float:
    """The largest relative difference of NumPy's and torch's results from bcers'."""
    ref_loss, ref_grad = _loss_and_grad(funcs["bcers"]())
    worst = 0.0
    for name in ("numpy", "torch"):
        if name not in funcs:
            continue
        loss, grad = _loss_and_grad(funcs[name]())
        worst = max(worst, abs(loss - ref_loss) / max(abs(ref_loss), 1e-30))
        if grad is not None and ref_grad is not None:
            scale = max(float(np.max(np.abs(ref_grad))), 1e-30)
            worst = max(worst, float(np.max(np.abs(grad - ref_grad))) / scale)
    return worst


@dataclass
class Row:
    op: str
    dtype: str
    n: int
    threads: int
    times: dict[str, float] = field(default_factory=dict)  # seconds per call
    err: float = 0.0

    def ns(self, impl: str) -> float | None:
        t = self.times.get(impl)
        return None if t is None else t / self.n * 1e9

    def ratio(self, num: str, den: str) -> float | None:
        a, b = self.times.get(num), self.times.get(den)
        return None if a is None or b is None else a / b


def run_case(op: str, d: Data, threads: int, reps: int, min_batch: float) -> Row:
    funcs: dict[str, Fn] = {"numpy": numpy_funcs(op, d)}
    tf = torch_funcs(op, d)
    if tf is not None:
        funcs["torch"] = tf
    funcs["bcers"] = bcers_funcs(op, d)
    funcs["stream"] = stream_func(op, d)
    row = Row(op, d.x.dtype.name, d.x.size, threads)
    with np.errstate(all="ignore"):
        row.err = check(funcs)
        row.times = measure(funcs, reps, min_batch)
    return row


def set_threads(k: int) -> None:
    bcers.set_num_threads(k)
    if torch is not None:
        torch.set_num_threads(k)


# ---------------------------------------------------------------------------------------------
# Reporting.


def machine() -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model", "flags") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break  # the first processor is enough
    except OSError:
        pass
    if "model name" in fields:
        cpu = fields["model name"]
        if "cpu family" in fields and "model" in fields:
            cpu += f" (family {fields['cpu family']}, model {fields['model']})"
        flags = fields.get("flags", "").split()
        vector = [f for f in ("avx2", "fma", "avx512f") if f in flags]
        if vector:
            cpu += ", " + " ".join(vector)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    levels = getattr(_bcers, "available_simd_levels", lambda: ["?"])()
    level = getattr(_bcers, "simd_level", lambda: "?")()
    return [
        ("CPU", cpu),
        ("cores", f"{os.cpu_count()} logical, {usable} usable by this process"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("bcers", f"{bcers.__version__} (SIMD level {level}; available: {', '.join(levels)})"),
        ("NumPy", np.__version__),
        ("torch", torch.__version__ if torch is not None else "not installed"),
        ("torchvision", torchvision.__version__ if torchvision is not None else "not installed"),
        ("load average", _loadavg()),
    ]


def _loadavg() -> str:
    """The 1/5/15-minute load averages: how busy the machine was (it may be shared)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


MAIN_HEADER = [
    "case",
    "dtype",
    "n",
    "NumPy ns/el",
    "torch ns/el",
    "bcers ns/el",
    "stream ns/el",
    "vs NumPy",
    "vs torch",
    "bcers/stream",
    "max rel diff",
]


def main_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        out.append(
            [
                OP_TITLES[r.op],
                r.dtype,
                f"{r.n:.0e}".replace("e+0", "e"),
                fmt(r.ns("numpy"), ".2f"),
                fmt(r.ns("torch"), ".2f"),
                fmt(r.ns("bcers"), ".3f"),
                fmt(r.ns("stream"), ".3f"),
                fmt(r.ratio("numpy", "bcers"), ".1f", "x"),
                fmt(r.ratio("torch", "bcers"), ".1f", "x"),
                fmt(r.ratio("bcers", "stream"), ".2f", "x"),
                f"{r.err:.1e}",
            ]
        )
    return out


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


@dataclass
class Report:
    sections: list[tuple[str, list[str], list[list[str]], str]] = field(default_factory=list)

    def add(self, title: str, header: list[str], rows: list[list[str]], note: str = "") -> None:
        self.sections.append((title, header, rows, note))
        print(f"\n== {title}")
        if note:
            print(note)
        print(text_table(header, rows), flush=True)

    def markdown(self, info: list[tuple[str, str]], command: str) -> str:
        parts = ["## Machine", "", md_table(["", ""], [[k, v] for k, v in info]), ""]
        parts += [f"Command: `{command}`", ""]
        for title, header, rows, note in self.sections:
            parts += [f"## {title}", ""]
            if note:
                parts += [note, ""]
            parts += [md_table(header, rows), ""]
        return "\n".join(parts)


def plot(rows: list[Row], path: str, threads: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"\nmatplotlib is not installed: no plot written to {path}")
        return
    nrows = math.ceil(len(OPS) / 2)
    fig, axes = plt.subplots(nrows, 2, figsize=(11, 4 * nrows), sharex=True, sharey=True)
    styles = {
        "numpy": ("NumPy expression", "tab:blue", "-", "o"),
        "torch": ("torch CPU", "tab:orange", "-", "s"),
        "bcers": ("bcers", "tab:green", "-", "^"),
        "stream": ("streaming-read limit", "black", "--", ""),
    }
    for ax, op in zip(axes.flat, OPS):
        series = sorted((r for r in rows if r.op == op and r.dtype == "float32"), key=lambda r: r.n)
        for impl, (label, color, ls, marker) in styles.items():
            pts = [(r.n, r.ns(impl)) for r in series if r.ns(impl) is not None]
            if pts:
                ns, vals = zip(*pts)
                ax.plot(ns, vals, label=label, color=color, linestyle=ls, marker=marker)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(OP_TITLES[op] + ", float32")
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("n (elements)")
    for ax in axes[:, 0]:
        ax.set_ylabel("ns per element")
    axes[0, 0].legend()
    fig.suptitle(
        f"Binary cross entropy and focal loss, ns/element (lower is better), {threads} threads"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nplot written to {path}")


# ---------------------------------------------------------------------------------------------
# The run.


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repetitions (CI smoke)")
    ap.add_argument("--large", action="store_true", help="add n = 1e8 (several GB of memory)")
    ap.add_argument("--threads", type=int, default=2, help="thread count of bcers and torch")
    ap.add_argument("--reps", type=int, default=None, help="batches per implementation")
    ap.add_argument("--plot", metavar="PATH", help="write a PNG of ns/element against n")
    ap.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown")
    args = ap.parse_args(argv)

    threads = max(1, args.threads)
    if args.quick:
        sizes = [1_000, 100_000, 1_000_000]
        reps, min_batch, big = args.reps or 3, 0.002, 1_000_000
    else:
        sizes = [1_000, 10_000, 100_000, 1_000_000, 10_000_000]
        reps, min_batch, big = args.reps or 7, 0.02, 10_000_000
    if args.large:
        sizes.append(100_000_000)

    info = machine()
    info.append(("threads", f"{threads} (bcers.set_num_threads and torch.set_num_threads)"))
    print("bcers benchmark")
    for k, v in info:
        print(f"  {k:8} {v}")
    report = Report()
    set_threads(threads)

    # 1. The sweep over n, float32, then float64 at the big size.
    rows: list[Row] = []
    for n in sizes:
        d = Data.make(n, np.float32)
        for op in OPS:
            rows.append(run_case(op, d, threads, reps, min_batch))
        del d
    d64 = Data.make(big, np.float64)
    rows64 = [run_case(op, d64, threads, reps, min_batch) for op in OPS]
    del d64
    note = (
        f"Median of {reps} batches, {threads} threads. ns/el: time per call / n. vs NumPy, "
        "vs torch: their time / bcers' time. bcers/stream: bcers' time / the time of the "
        "streaming read (both operands read once by NumPy, `np.add.reduce` of one slice per "
        "thread, in as many threads; 1.00x would be the memory limit). "
        "max rel diff: largest difference of NumPy's or torch's loss or gradient from bcers', "
        "relative to bcers' value (gradients: to its largest element)."
    )
    report.add("Results", MAIN_HEADER, main_rows(rows + rows64), note)

    # 2. Thread scaling at the big size: batches at 1 and `threads` threads taken in turn.
    counts = sorted({1, 2, threads})
    d = Data.make(big, np.float32)
    scale_rows = []
    per_op: dict[str, dict[int, dict[str, float]]] = {}
    for op in OPS:
        funcs: dict[str, Fn] = {"bcers": bcers_funcs(op, d), "stream": stream_func(op, d)}
        tf = torch_funcs(op, d)
        if tf is not None:
            funcs["torch"] = tf
        samples: dict[int, dict[str, list[float]]] = {k: {f: [] for f in funcs} for k in counts}
        for _ in range(reps):
            for k in counts:
                set_threads(k)
                t = measure(funcs, 1, min_batch)
                for f, v in t.items():
                    samples[k][f].append(v)
        per_op[op] = {
            k: {f: statistics.median(v) for f, v in s.items()} for k, s in samples.items()
        }
        for k in counts:
            if k == 1:
                continue
            t1, tk = per_op[op][1], per_op[op][k]
            scale_rows.append(
                [
                    OP_TITLES[op],
                    f"1 -> {k}",
                    f"{t1['bcers'] * 1e3:.2f} -> {tk['bcers'] * 1e3:.2f}",
                    fmt(t1["bcers"] / tk["bcers"], ".2f", "x"),
                    fmt(t1["stream"] / tk["stream"] if "stream" in tk else None, ".2f", "x"),
                    fmt(tk["bcers"] / tk["stream"] if "stream" in tk else None, ".2f", "x"),
                    fmt(t1["torch"] / tk["torch"] if "torch" in tk else None, ".2f", "x"),
                ]
            )
    del d
    set_threads(threads)
    report.add(
        f"Thread scaling, float32, n = {big:.0e}",
        [
            "case",
            "threads",
            "bcers ms",
            "bcers speed-up",
            "stream speed-up",
            "bcers/stream",
            "torch speed-up",
        ],
        scale_rows,
        f"Median of {reps} rounds; each round times every thread count in turn. "
        "bcers/stream at the larger thread count.",
    )

    # 3. One call on n = 1000: the per-call overhead.
    d = Data.make(1_000, np.float32)
    lat_rows = []
    lat: dict[str, dict[str, float]] = {}
    for op in OPS:
        funcs = {"numpy": numpy_funcs(op, d)}
        tf = torch_funcs(op, d)
        if tf is not None:
            funcs["torch"] = tf
        funcs["bcers"] = bcers_funcs(op, d)
        funcs["native"] = native_func(op, d)
        funcs["stream"] = stream_func(op, d)
        t = measure(funcs, max(reps, 9), max(min_batch, 0.01))
        lat[op] = t
        lat_rows.append(
            [
                OP_TITLES[op],
                fmt(t["numpy"] * 1e6, ".2f"),
                fmt(t["torch"] * 1e6 if "torch" in t else None, ".2f"),
                fmt(t["bcers"] * 1e6, ".2f"),
                fmt(t["native"] * 1e6, ".2f"),
                fmt(t["stream"] * 1e6 if "stream" in t else None, ".2f"),
            ]
        )
    del d
    report.add(
        "One call on n = 1000, float32 (microseconds per call)",
        ["case", "NumPy", "torch", "bcers", "bcers native call", "stream"],
        lat_rows,
        "bcers: the public function; native call: `bcers._bcers.compute` directly (no Python "
        "argument handling); stream: the streaming read (one thread at this size).",
    )

    # 4. The targets.
    def at(op: str, rs: list[Row]) -> Row:
        return next(r for r in rs if r.op == op and r.n == big)

    tgt_rows = []

    def target(
        name: str,
        measured: float | None,
        goal: float,
        unit: str,
        stream: float | None,
        extra: str = "",
        less: bool = False,
    ) -> None:
        ok = measured is not None and (measured <= goal if less else measured >= goal)
        tgt_rows.append(
            [
                name,
                f"{'<=' if less else '>='} {goal:g}{unit}",
                fmt(measured, ".2f" if unit == " us" else ".1f", unit),
                "PASS" if ok else "FAIL",
                fmt(stream, ".2f", "x"),
                extra,
            ]
        )

    for op, goal in (("bce", 15), ("logits", 10), ("bce_vg", 10), ("logits_vg", 8)):
        r = at(op, rows)
        target(
            f"{OP_TITLES[op]}, float32",
            r.ratio("numpy", "bcers"),
            goal,
            "x vs NumPy",
            r.ratio("bcers", "stream"),
            f"vs torch {fmt(r.ratio('torch', 'bcers'), '.1f', 'x')}",
        )
    r = at("bce", rows64)
    target(
        "BCE forward (mean), float64",
        r.ratio("numpy", "bcers"),
        8,
        "x vs NumPy",
        r.ratio("bcers", "stream"),
        f"vs torch {fmt(r.ratio('torch', 'bcers'), '.1f', 'x')}",
    )
    if 2 in per_op["bce"]:
        t1, t2 = per_op["bce"][1], per_op["bce"][2]
        stream_scale = t1["stream"] / t2["stream"] if "stream" in t2 else None
        target(
            "BCE forward 1 -> 2 threads",
            t1["bcers"] / t2["bcers"],
            1.6,
            "x",
            t2["bcers"] / t2["stream"] if "stream" in t2 else None,
            "the streaming read scales " + fmt(stream_scale, ".2f", "x"),
        )
    t = lat["bce"]
    torch_us = fmt(t["torch"] * 1e6 if "torch" in t else None, ".1f", " us")
    target(
        "BCE forward, one call on n = 1000",
        t["bcers"] * 1e6,
        3,
        " us",
        t["bcers"] / t["stream"] if "stream" in t else None,
        f"NumPy {t['numpy'] * 1e6:.1f} us, torch {torch_us}",
        less=True,
    )
    report.add(
        f"Targets (n = {big:.0e}, {threads} threads"
        + (", QUICK RUN: not the target size)" if args.quick else ")"),
        ["target", "goal", "measured", "", "bcers/stream", "note"],
        tgt_rows,
        "bcers/stream: how far from the streaming-read limit (1.00x = at the limit).",
    )

    info.append(("load average at the end", _loadavg()))
    print(f"\nload average at the end: {_loadavg()}")
    for path in (args.plot, args.markdown):
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    if args.markdown:
        cmd = "python " + " ".join(
            [os.path.relpath(__file__), *(argv if argv is not None else sys.argv[1:])]
        )
        with open(args.markdown, "w") as fh:
            fh.write(report.markdown(info, cmd))
        print(f"markdown written to {args.markdown}")
    if args.plot:
        plot(rows, args.plot, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
