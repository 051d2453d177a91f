// The helpers the losses share: the WGSL twin of `src/loss/mod.rs`. The per-loss functions
// (`bce.wgsl`, `logits.wgsl`, `focal.wgsl`) return a `Derivs` and compute only what the
// pipeline's override constants ask for; the drivers fold the constants away.

override WANT_VALUE: bool = true;
override WANT_GRAD: bool = false;
override WANT_GRAD_TARGET: bool = false;
override WANT_HESS: bool = false;

// The loss and its derivatives: with respect to the input, to the target, and the second with
// respect to the input.
struct Derivs {
    value: f32,
    grad: f32,
    grad_target: f32,
    hess: f32,
}

// `max(a, b)` as the CPU kernels have it: b when a is NaN.
fn fmax(a: f32, b: f32) -> f32 {
    return select(b, a, a > b);
}

// `coef * v`, but 0 where one factor is 0 and the other infinite: the limit of a loss term or a
// weighted loss. A NaN factor still gives NaN; the zero has the sign a product of finite factors
// would have. Tested on the bits: a GPU may assume no NaN or infinity in float comparisons.
fn weighted(coef: f32, v: f32) -> f32 {
    let cb = bitcast<u32>(coef);
    let vb = bitcast<u32>(v);
    let c_abs = cb & 0x7fffffffu;
    let v_abs = vb & 0x7fffffffu;
    let inf_times_zero = (c_abs == 0x7f800000u && v_abs == 0u) || (v_abs == 0x7f800000u && c_abs == 0u);
    return select(coef * v, bitcast<f32>((cb ^ vb) & 0x80000000u), inf_times_zero);
}

// a * b * v with weighted's rule, where a nonzero a * b that underflows to 0 counts as the
// smallest normal number when v is infinite (the twin of `weighted3`).
fn weighted3(a: f32, b: f32, v: f32) -> f32 {
    var ab = a * b;
    let underflow = ab == 0.0 && a != 0.0 && b != 0.0;
    let inf = (bitcast<u32>(v) & 0x7fffffffu) == 0x7f800000u;
    if underflow && inf {
        ab = bitcast<f32>(((bitcast<u32>(a) ^ bitcast<u32>(b)) & 0x80000000u) | 0x00800000u);
    }
    return weighted(ab, v);
}

// Whether v is +-inf, from the bits (a GPU may assume no infinity in float comparisons).
fn is_inf_bits(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) == 0x7f800000u;
}

// Whether v is NaN, from the bits.
fn is_nan_bits(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// |x| from the bits.
fn abs_bits(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) & 0x7fffffffu);
}

// exp(-|x|)
fn exp_neg_abs(x: f32) -> f32 {
    return ex(-abs_bits(x));
}

// (sigmoid(x), sigmoid(-x)) from e = exp(-|x|), both without cancellation.
fn sigmoids(x: f32, e: f32) -> vec2<f32> {
    let d = 1.0 / (1.0 + e);
    let de = e * d;
    return select(vec2<f32>(de, d), vec2<f32>(d, de), x >= 0.0);
}
