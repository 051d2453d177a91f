// Sigmoid focal loss: the WGSL twin of `focal.rs` (see there for the derivation).
// 1 - p_t = a / (1 + e), a = c1 + c_e e; log(1 - p_t) = log(a) - log1p(e), log(a) = log(c_e) - |x|
// where c1 = 0; (1 - p_t)^gamma = exp(gamma log(1 - p_t)); the gradient
// alpha_t (1 - p_t)^gamma (dce + gamma ce r), r = (1 - 2y) / ((1 + e)(a / e)).

fn focal_eval(x: f32, y: f32, alpha: f32, gamma: f32) -> Derivs {
    var d: Derivs;
    let abs_x = abs_bits(x);
    let e = exp_neg_abs(x);
    let sp = ln1p(e);
    let nonneg = x >= 0.0;
    let one_minus_y = 1.0 - y;
    let ce = weighted(one_minus_y, fmax(x, 0.0)) + weighted(y, fmax(-x, 0.0)) + sp;
    let c_e = select(one_minus_y, y, nonneg);
    let c1 = select(y, one_minus_y, nonneg);
    let hard = c1 == 0.0;
    let a = select(fma(c_e, e, c1), c_e, hard);
    let log_a = ln(a) - select(0.0, abs_x, hard);
    let exponent = weighted(gamma, log_a - sp);
    let modulating = ex(exponent);
    // Exactly 0 only where the exponent is -inf: an underflowing one keeps an infinite ce infinite.
    let ce_inf = (bitcast<u32>(ce) & 0x7fffffffu) == 0x7f800000u;
    let exponent_finite = (bitcast<u32>(exponent) & 0x7fffffffu) < 0x7f800000u;
    let m_value = select(modulating, 1.17549435e-38, ce_inf && modulating == 0.0 && exponent_finite);
    let alpha_t = select(1.0, fma(alpha, y, (1.0 - alpha) * one_minus_y), alpha >= 0.0);
    if WANT_VALUE {
        d.value = weighted(alpha_t, weighted(ce, m_value));
    }
    if WANT_GRAD {
        let s = sigmoids(x, e);
        let dce = weighted(one_minus_y, s.x) - weighted(y, s.y);
        let a_over_e = select(c1 / e + c_e, c_e, hard);
        let r = (one_minus_y - y) / ((1.0 + e) * a_over_e);
        let inner = dce + weighted(gamma, weighted(ce, r));
        d.grad = weighted(alpha_t, weighted(modulating, inner));
    }
    return d;
}
