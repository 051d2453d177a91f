// The elementary functions of the BCE kernels, in float32, written out rather than taken from
// WGSL's built-ins: the built-ins' accuracy is left to the driver (Vulkan allows `log` an
// absolute error of 2^-21 near 1 and `exp` 3 + 2|x| ulp), and WGSL has no `log1p`. These are
// ports of musl's `logf`, `log1pf` and `expf` (after FreeBSD's), accurate to about 1 ulp,
// so the GPU's losses stay within a few ulp of the CPU's.
//
// Inputs are decoded through their bits, so subnormal inputs are exact even where the GPU
// flushes subnormal arithmetic to zero.

const LN2_HI: f32 = 6.9313812256e-01;
const LN2_LO: f32 = 9.0580006145e-06;
const LG1: f32 = 0.666666626930236816;
const LG2: f32 = 0.400009721517562866;
const LG3: f32 = 0.284987866878509521;
const LG4: f32 = 0.242790788412094116;
const F32_INF: u32 = 0x7f800000u;

// log(1 + f) for the reduced argument `f = m - 1`, m in [sqrt(2)/2, sqrt(2)), scaled by 2^k,
// plus the correction `c` (log1p's rounding of 1 + x).
fn log_kernel(f: f32, k: i32, c: f32) -> f32 {
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * LG4);
    let t2 = z * (LG1 + w * LG3);
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    let dk = f32(k);
    return s * (hfsq + r) + (dk * LN2_LO + c) - hfsq + f + dk * LN2_HI;
}

// Natural logarithm: -inf at +-0, NaN below 0, x at +inf and NaN.
fn ln(x: f32) -> f32 {
    var ix = bitcast<u32>(x);
    var k = 0i;
    if ix < 0x00800000u || (ix >> 31u) != 0u {
        if (ix << 1u) == 0u {
            return bitcast<f32>(0xff800000u); // -inf
        }
        if (ix >> 31u) != 0u {
            return bitcast<f32>(0x7fc00000u); // NaN
        }
        // Subnormal: normalise the significand with integer operations, as if x * 2^25.
        let shift = countLeadingZeros(ix) - 8u;
        ix = ((26u - shift) << 23u) | ((ix << shift) & 0x007fffffu);
        k = -25i;
    } else if ix >= F32_INF {
        return x;
    } else if ix == 0x3f800000u {
        return 0.0;
    }
    // Reduce x into [sqrt(2)/2, sqrt(2)).
    ix += 0x3f800000u - 0x3f3504f3u;
    k += i32(ix >> 23u) - 0x7f;
    ix = (ix & 0x007fffffu) + 0x3f3504f3u;
    return log_kernel(bitcast<f32>(ix) - 1.0, k, 0.0);
}

// log(1 + x), accurate for small x: -inf at -1, NaN below.
fn ln1p(x: f32) -> f32 {
    let ix = bitcast<u32>(x);
    var k = 1i;
    var c = 0.0;
    var f = 0.0;
    if ix < 0x3ed413d0u || (ix >> 31u) != 0u {
        // 1 + x < sqrt(2)
        if ix >= 0xbf800000u {
            // x <= -1 (or a negative NaN)
            if x == -1.0 {
                return bitcast<f32>(0xff800000u);
            }
            return bitcast<f32>(0x7fc00000u);
        }
        if (ix << 1u) < (0x33800000u << 1u) {
            // |x| < 2^-24
            return x;
        }
        if ix <= 0xbe95f619u {
            // sqrt(2)/2 <= 1 + x < sqrt(2)
            k = 0i;
            f = x;
        }
    } else if ix >= F32_INF {
        return x;
    }
    if k != 0i {
        let u = 1.0 + x;
        var iu = bitcast<u32>(u);
        iu += 0x3f800000u - 0x3f3504f3u;
        k = i32(iu >> 23u) - 0x7f;
        // The rounding error of 1 + x, divided by it.
        if k < 25i {
            if k >= 2i {
                c = 1.0 - (u - x);
            } else {
                c = x - (u - 1.0);
            }
            c /= u;
        }
        iu = (iu & 0x007fffffu) + 0x3f3504f3u;
        f = bitcast<f32>(iu) - 1.0;
    }
    return log_kernel(f, k, c);
}

// y * 2^k for y near 1 and k in [-152, 128].
fn scale2(y: f32, k: i32) -> f32 {
    if k > 127i {
        // 2^127 * 2^(k - 127)
        return y * bitcast<f32>(0x7f000000u) * bitcast<f32>(u32(k) << 23u);
    }
    if k < -126i {
        // 2^-126 * 2^(k + 126): the result is subnormal (and may be flushed to zero)
        return y * bitcast<f32>(0x00800000u) * bitcast<f32>(u32(k + 253i) << 23u);
    }
    return y * bitcast<f32>(u32(k + 127i) << 23u);
}

const EXP_LN2_HI: f32 = 6.9314575195e-1;
const EXP_LN2_LO: f32 = 1.4286067653e-6;
const INV_LN2: f32 = 1.4426950216e+0;
const EXP_P1: f32 = 1.6666625440e-1;
const EXP_P2: f32 = -2.7667332906e-3;

// e^x: 0 below -103.97, +inf above 88.72, NaN for NaN.
fn ex(x_in: f32) -> f32 {
    var x = x_in;
    var hx = bitcast<u32>(x);
    let sign = hx >> 31u;
    hx &= 0x7fffffffu;
    if hx >= 0x42aeac50u {
        // |x| >= 87.33655 or NaN
        if hx > F32_INF {
            return x;
        }
        if hx >= 0x42b17218u && sign == 0u {
            return bitcast<f32>(F32_INF);
        }
        if sign != 0u && hx >= 0x42cff1b5u {
            return 0.0;
        }
    }
    var k = 0i;
    var hi = 0.0;
    var lo = 0.0;
    if hx > 0x3eb17218u {
        // |x| > ln(2)/2
        if hx > 0x3f851592u {
            // |x| > 1.5 ln(2)
            k = i32(INV_LN2 * x + select(0.5, -0.5, sign != 0u));
        } else {
            k = 1i - i32(sign) - i32(sign);
        }
        hi = x - f32(k) * EXP_LN2_HI;
        lo = f32(k) * EXP_LN2_LO;
        x = hi - lo;
    } else if hx > 0x39000000u {
        // |x| > 2^-14
        hi = x;
    } else {
        return 1.0 + x;
    }
    let xx = x * x;
    let c = x - xx * (EXP_P1 + xx * EXP_P2);
    let y = 1.0 + (x * c / (2.0 - c) - lo + hi);
    if k == 0i {
        return y;
    }
    return scale2(y, k);
}
