// Binary cross entropy on probabilities: the WGSL twin of `bce.rs`.

const BCE_LOG_FLOOR: f32 = -100.0;
// torch's EPSILON for the BCE input gradient: the float32 constant 1e-12.
const BCE_GRAD_EPS: f32 = 1e-12;

fn bce_eval(x: f32, y: f32) -> Derivs {
    var d: Derivs;
    if WANT_VALUE || WANT_GRAD_TARGET {
        let log_x = fmax(ln(x), BCE_LOG_FLOOR);
        let log_1mx = fmax(ln1p(-x), BCE_LOG_FLOOR);
        d.value = (y - 1.0) * log_1mx - y * log_x;
        d.grad_target = log_1mx - log_x;
    }
    if WANT_GRAD {
        d.grad = (x - y) / fmax((1.0 - x) * x, BCE_GRAD_EPS);
    }
    if WANT_HESS {
        let one_minus_x = 1.0 - x;
        d.hess = y / fmax(x * x, BCE_GRAD_EPS)
            + (1.0 - y) / fmax(one_minus_x * one_minus_x, BCE_GRAD_EPS);
    }
    return d;
}
