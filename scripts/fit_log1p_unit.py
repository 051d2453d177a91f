"""Fit the coefficients of `LOG1P_UNIT_Q` in `src/kernels/math.rs`.

`log1p_unit` computes `log1p(f) ~ f - f^2/2 + f^3 Q(f)` for its reduced argument `f` in
`[-1/4, 1/2]`. This fits `Q` to the least maximum *relative* error of that sum against
`log1p(f)` (Lawson's iteratively reweighted least squares at Chebyshev nodes, in 60-digit
arithmetic), rounding one coefficient at a time to the target format and refitting the rest,
then prints the coefficients as Rust literals and the error measured on a dense grid.

    python scripts/fit_log1p_unit.py f32 8
    python scripts/fit_log1p_unit.py f64 20

Needs `mpmath` (`pip install mpmath`); about 20 s for f32 and a few minutes for f64.
"""

from __future__ import annotations

import struct
import sys

import mpmath as mp

mp.mp.dps = 60
LO, HI = mp.mpf(-0.25), mp.mpf(0.5)


def target(f: mp.mpf) -> mp.mpf:
    """`(log1p(f) - f + f^2/2) / f^3`: what `Q` approximates."""
    return (mp.log1p(f) - f + f * f / 2) / f**3


def weight(f: mp.mpf) -> mp.mpf:
    """Turns an error in `Q` into a relative error of `log1p`."""
    return abs(f**3 / mp.log1p(f))


def nodes(n: int) -> list[mp.mpf]:
    mid, half = (LO + HI) / 2, (HI - LO) / 2
    pts = [mid + half * mp.cos(mp.pi * (k + mp.mpf(0.5)) / n) for k in range(n)]
    return [p for p in pts if abs(p) > mp.mpf("1e-6")]


def fit_free(ncoef: int, fixed: list[mp.mpf], pts: list[mp.mpf], iters: int) -> list[mp.mpf]:
    """The coefficients after `fixed` that minimise the largest weighted error."""
    nf = len(fixed)
    rows, rhs = [], []
    for f in pts:
        w = weight(f)
        rest = target(f) - sum(c * f**j for j, c in enumerate(fixed))
        rows.append([w * f**j for j in range(nf, ncoef)])
        rhs.append(w * rest)
    lw = [mp.mpf(1) / len(pts)] * len(pts)
    best: tuple[mp.mpf, list[mp.mpf]] | None = None
    for _ in range(iters):
        a = mp.matrix([[mp.sqrt(lw[i]) * v for v in rows[i]] for i in range(len(pts))])
        b = mp.matrix([mp.sqrt(lw[i]) * rhs[i] for i in range(len(pts))])
        c = mp.qr_solve(a, b)[0]
        coefs = [c[j] for j in range(ncoef - nf)]
        err = [abs(sum(r * cj for r, cj in zip(rows[i], coefs)) - rhs[i]) for i in range(len(pts))]
        worst = max(err)
        if best is None or worst < best[0]:
            best = (worst, coefs)
        total = sum(lw[i] * err[i] for i in range(len(pts)))
        lw = [lw[i] * err[i] / total for i in range(len(pts))]
    assert best is not None
    return best[1]


def to_format(x: mp.mpf, fmt: str) -> float:
    v = float(x)
    return struct.unpack("f", struct.pack("f", v))[0] if fmt == "f32" else v


def literal(v: float, fmt: str) -> str:
    """The shortest decimal that reads back as `v` in the format."""
    if fmt == "f64":
        return repr(v)
    for digits in range(6, 10):
        s = f"{v:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(s)))[0] == v:
            return s
    return repr(v)


def max_relative_error(coefs: list[float]) -> mp.mpf:
    worst = mp.mpf(0)
    n = 4000
    for k in range(n + 1):
        f = LO + (HI - LO) * k / n
        if f == 0:
            continue
        q = sum(mp.mpf(c) * f**j for j, c in enumerate(coefs))
        worst = max(worst, abs((f - f * f / 2 + f**3 * q) / mp.log1p(f) - 1))
    return worst


def main() -> None:
    fmt, ncoef = sys.argv[1], int(sys.argv[2])
    if fmt not in ("f32", "f64"):
        raise SystemExit("usage: fit_log1p_unit.py f32|f64 NCOEF")
    pts = nodes(300)
    fixed: list[mp.mpf] = []
    while len(fixed) < ncoef:
        free = fit_free(ncoef, fixed, pts, iters=40 if fmt == "f32" else 60)
        fixed.append(mp.mpf(to_format(free[0], fmt)))
    coefs = [float(c) for c in fixed]
    err = max_relative_error(coefs)
    print(
        f"// Relative error of f - f^2/2 + f^3 Q(f) against log1p(f) on [-1/4, 1/2]: "
        f"2^{float(mp.log(err, 2)):.1f}."
    )
    for c in coefs:
        print(f"    {literal(c, fmt)},")


if __name__ == "__main__":
    main()
