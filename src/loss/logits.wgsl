// Binary cross entropy on logits, with pos_weight: the WGSL twin of `logits.rs`.
// (1 - y) max(x, 0) + pw y max(-x, 0) + (1 + (pw - 1) y) log1p(exp(-|x|)); the gradient
// (1 - y) sigmoid(x) - pw y sigmoid(-x). Every product with a factor 0 is 0.

fn logits_eval(x: f32, y: f32, pw: f32) -> Derivs {
    var d: Derivs;
    let e = exp_neg_abs(x);
    let pw_y = weighted(pw, y);
    if WANT_VALUE {
        let sp = ln1p(e);
        let log_weight = weighted(pw - 1.0, y) + 1.0;
        d.value = weighted(1.0 - y, fmax(x, 0.0)) + weighted3(pw, y, fmax(-x, 0.0))
            + weighted(log_weight, sp);
    }
    if WANT_GRAD {
        let s = sigmoids(x, e);
        d.grad = weighted(1.0 - y, s.x) - weighted(pw_y, s.y);
    }
    return d;
}
