// Sigmoid focal loss: the WGSL twin of `focal.rs` (see there for the derivation).
// 1 - p_t = a / (1 + e), a = c1 + c_e e; log(1 - p_t) = log(a) - log1p(e), log(a) = log(c_e) - |x|
// where c1 = 0; (1 - p_t)^gamma = exp(gamma log(1 - p_t)); the gradient
// alpha_t (1 - p_t)^gamma (dce + gamma ce r), r = (1 - 2y) / ((1 + e)(a / e)); the target
// gradient and the second derivative as derived there.

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
    // Exactly 0 only where the exponent is -inf: an underflowing one keeps an infinite factor
    // infinite.
    let exponent_finite = (bitcast<u32>(exponent) & 0x7fffffffu) < 0x7f800000u;
    let m_for_inf = select(modulating, 1.17549435e-38, modulating == 0.0 && exponent_finite);
    let ce_inf = is_inf_bits(ce);
    let alpha_t = select(1.0, fma(alpha, y, (1.0 - alpha) * one_minus_y), alpha >= 0.0);
    if WANT_VALUE {
        d.value = weighted(alpha_t, weighted(ce, select(modulating, m_for_inf, ce_inf)));
    }
    let s = sigmoids(x, e);
    if WANT_GRAD || WANT_HESS {
        let dce = weighted(one_minus_y, s.x) - weighted(y, s.y);
        let a_over_e = select(c1 / e + c_e, c_e, hard);
        let r = (one_minus_y - y) / ((1.0 + e) * a_over_e);
        let gamma_ce = weighted(gamma, ce);
        if WANT_GRAD {
            let inner = dce + weighted(gamma_ce, r);
            d.grad = weighted(alpha_t, weighted(modulating, inner));
        }
        if WANT_HESS {
            let curvature = weighted(gamma - 1.0, r * r) + r * (s.y - s.x);
            let inner = s.x * s.y + weighted((1.0 + 1.0) * gamma, r * dce)
                + weighted(gamma_ce, curvature);
            d.hess = weighted(alpha_t, weighted(modulating, inner));
        }
    }
    if WANT_GRAD_TARGET {
        let dalpha = select(0.0, alpha + alpha - 1.0, alpha >= 0.0);
        // ce / a_true, a_true = a e where c1 = 0 (then ce = log1p(e)).
        let sp_over_e = select(sp / e, 1.0, e == 0.0);
        let ce_over_a = select(ce / a, sp_over_e / c_e, hard);
        let one_minus_e = 1.0 - e;
        let dq = select(one_minus_e, -one_minus_e, nonneg);
        let inner = -x + weighted(gamma, dq * ce_over_a);
        let m_ce = select(modulating, m_for_inf, ce_inf);
        let m_inner = select(modulating, m_for_inf, is_inf_bits(inner));
        d.grad_target = weighted(dalpha, weighted(ce, m_ce))
            + weighted(alpha_t, weighted(m_inner, inner));
        // At an infinite logit: the limit |x| (1 - p_t)^gamma (dalpha c1 - s alpha_t (1 + gamma)).
        if is_inf_bits(x) && !hard && !is_nan_bits(modulating) {
            let s_alpha_t = select(-alpha_t, alpha_t, nonneg);
            d.grad_target = weighted(dalpha * c1 - s_alpha_t * (1.0 + gamma), abs_x);
        }
    }
    return d;
}
