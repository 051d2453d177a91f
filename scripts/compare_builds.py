"""Compares two builds of bcers, each installed in its own Python environment: the bytes of
every result on the torch golden cases, and the speed of the main calls, side by side.

    python scripts/compare_builds.py OLD_PYTHON NEW_PYTHON [--rounds 5] [--n 10000000]
        [--labels soft|hard] [--no-bits]

``OLD_PYTHON`` and ``NEW_PYTHON`` are interpreters of environments with the two builds
installed (``pip install`` of each build's wheel). The script runs in either. The speed cases
alternate between the builds, round after round, each round in fresh processes of both; it
prints the median time per element of each case for each build and their ratio (new / old,
below 1 is faster). The results of every golden case (each function, each reduction, float16,
float32 and float64) must be the same bytes, or it says which differ.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DUMP = r"""
import json, pickle, sys
import numpy as np
import bcers

golden = json.load(open(sys.argv[1]))
def arr(e):
    return np.array(e["value"], dtype=e["dtype"]).reshape(e["shape"])
out = {}
for case in golden["cases"]:
    a = case["args"]
    x, y = arr(a["input"]), arr(a["target"])
    kw = {}
    if "weight" in a:
        kw["weight"] = arr(a["weight"])
    logits = case["function"] == "binary_cross_entropy_with_logits"
    if logits and "pos_weight" in a:
        kw["pos_weight"] = arr(a["pos_weight"])
    g_none = arr(case["grad_output_none"])
    if logits:
        f = bcers.binary_cross_entropy_with_logits
        b = bcers.binary_cross_entropy_with_logits_backward
        v = bcers.binary_cross_entropy_with_logits_value_and_grad
    else:
        f = bcers.binary_cross_entropy
        b = bcers.binary_cross_entropy_backward
        v = bcers.binary_cross_entropy_value_and_grad
    variants = [(x, "")]
    if x.dtype == np.float32:
        variants.append((x.astype(np.float16), "f16"))
    for xv, tag in variants:
        for r in ("none", "mean", "sum"):
            g = g_none if r == "none" else np.array(0.75, x.dtype)
            try:
                res = [np.asarray(f(xv, y, reduction=r, **kw)).tobytes(),
                       np.asarray(b(g, xv, y, reduction=r, **kw)).tobytes()]
                loss, grad = v(xv, y, reduction=r, **kw)
                res += [np.asarray(loss).tobytes(), grad.tobytes()]
            except Exception as e:
                res = ["error", type(e).__name__, str(e)]
            out[(case["name"], tag, r)] = res
pickle.dump(out, open(sys.argv[2], "wb"))
"""

TIME = r"""
import json, statistics, sys, time
import numpy as np
import bcers

n = int(sys.argv[1])
rng = np.random.default_rng(0)
p = rng.uniform(1e-6, 1 - 1e-6, n).astype(np.float32)
z = (3 * rng.standard_normal(n)).astype(np.float32)
y = rng.random(n).astype(np.float32)
if sys.argv[2] == "hard":
    y = (y < 0.5).astype(np.float32)
p64 = p.astype(np.float64)
small_p, small_y = p[:1000].copy(), y[:1000].copy()
cases = {
    "BCE forward": (lambda: bcers.binary_cross_entropy(p, y), n),
    "BCE-with-logits forward": (lambda: bcers.binary_cross_entropy_with_logits(z, y), n),
    "BCE value_and_grad": (lambda: bcers.binary_cross_entropy_value_and_grad(p, y), n),
    "BCE-with-logits value_and_grad": (
        lambda: bcers.binary_cross_entropy_with_logits_value_and_grad(z, y), n),
    "BCE forward, float64": (lambda: bcers.binary_cross_entropy(p64, y), n),
    "one BCE call on n = 1000": (lambda: bcers.binary_cross_entropy(small_p, small_y), 1000),
}
out = {}
for name, (f, m) in cases.items():
    f()
    reps = max(3, min(200, int(2e7 / m)))
    times = []
    for _ in range(9):
        t0 = time.perf_counter()
        for _ in range(reps if m < 10**5 else 1):
            f()
        times.append((time.perf_counter() - t0) / (reps if m < 10**5 else 1))
    out[name] = statistics.median(times) / m * 1e9 if m >= 10**5 else statistics.median(times) * 1e6
print(json.dumps(out))
"""


def run(python: str, code: str, *args: str) -> str:
    proc = subprocess.run(
        [python, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
        cwd=tempfile.gettempdir(),  # never import the checkout's python/bcers by accident
    )
    if proc.returncode != 0:
        sys.exit(f"{python} failed:\n{proc.stderr}")
    return proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--no-bits", action="store_true", help="skip the byte comparison")
    parser.add_argument(
        "--labels",
        choices=("soft", "hard"),
        default="soft",
        help="targets of the timed cases: uniform in [0, 1) (soft) or 0 and 1 (hard)",
    )
    args = parser.parse_args()

    status = 0
    if not args.no_bits:
        golden = str(ROOT / "tests" / "fixtures" / "torch_golden.json")
        with tempfile.TemporaryDirectory() as tmp:
            dumps = []
            for python, name in ((args.old, "old"), (args.new, "new")):
                path = os.path.join(tmp, f"{name}.pkl")
                run(python, DUMP, golden, path)
                with open(path, "rb") as f:
                    dumps.append(pickle.load(f))
        old, new = dumps
        differ = sorted(k for k in old if old[k] != new.get(k))
        print(f"golden cases: {len(old)} (case, dtype variant, reduction), {len(differ)} differ")
        for key in differ[:20]:
            print("  differs:", key)
        status = 1 if differ else 0

    times: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    for _ in range(args.rounds):
        for python, name in ((args.old, "old"), (args.new, "new")):
            for case, t in json.loads(run(python, TIME, str(args.n), args.labels)).items():
                times[name].setdefault(case, []).append(t)
    print(
        f"\nmedian of {args.rounds} alternating rounds, {args.labels} targets "
        "(ns/element; us for the n = 1000 call)"
    )
    print("| case | old | new | new / old |")
    print("|---|---|---|---|")
    for case in times["old"]:
        o, n = statistics.median(times["old"][case]), statistics.median(times["new"][case])
        print(f"| {case} | {o:.3f} | {n:.3f} | {n / o:.3f} |")
    return status


if __name__ == "__main__":
    sys.exit(main())
