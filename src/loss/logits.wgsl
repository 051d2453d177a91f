// Binary cross entropy on logits, with pos_weight: the WGSL twin of `logits.rs`.
// (1 - y) max(x, 0) + pw y max(-x, 0) + (1 + (pw - 1) y) log1p(exp(-|x|)); the gradient
// (1 - y) sigmoid(x) - pw y sigmoid(-x); the target gradient pw (max(-x, 0) + sp) -
// (max(x, 0) + sp), sp = log1p(exp(-|x|)); the second derivative (1 + (pw - 1) y) sigmoid(x)
// sigmoid(-x). Every product with a factor 0 is 0.

fn logits_eval(x: f32, y: f32, pw: f32) -> Derivs {
    var d: Derivs;
    let e = exp_neg_abs(x);
    let pw_y = weighted(pw, y);
    let log_weight = weighted(pw - 1.0, y) + 1.0;
    if WANT_VALUE || WANT_GRAD_TARGET {
        let sp = ln1p(e);
        let relu_pos = fmax(x, 0.0);
        let relu_neg = fmax(-x, 0.0);
        d.value = weighted(1.0 - y, relu_pos) + weighted3(pw, y, relu_neg)
            + weighted(log_weight, sp);
        d.grad_target = weighted(pw, relu_neg + sp) - (relu_pos + sp);
    }
    if WANT_GRAD || WANT_HESS {
        let s = sigmoids(x, e);
        d.grad = weighted(1.0 - y, s.x) - weighted(pw_y, s.y);
        d.hess = weighted(log_weight, s.x * s.y);
    }
    return d;
}
