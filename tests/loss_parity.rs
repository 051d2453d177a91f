//! Every registered loss, with its parameters, through every backend: a float64 reference
//! written here (libm's functions, the textbook formulas), the scalar level, each SIMD level
//! this processor has, one and several threads, and the GPU (when there is one; CI requires
//! Mesa's lavapipe). In a test binary of its own: the SIMD level is process-wide.

#[path = "support/globals.rs"]
mod globals;
#[path = "support/random.rs"]
mod random;

use bcers::{Float, LossKind, Reduction, Request};
use ndarray::{Array1, ArrayD};
use random::uniform;

/// The float64 reference of one element: the value, the input gradient, and the magnitude of
/// the terms each is a sum of (for the tolerance: a sum of terms may cancel).
struct Reference {
    value: f64,
    value_terms: f64,
    grad: f64,
    grad_terms: f64,
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        x.exp() / (1.0 + x.exp())
    }
}

/// `a * b`, 0 where one factor is 0 and the other infinite (bcers' rule for the limits).
fn times(a: f64, b: f64) -> f64 {
    if (a == 0.0 && b.is_infinite()) || (b == 0.0 && a.is_infinite()) {
        0.0
    } else {
        a * b
    }
}

fn reference(loss: &LossKind, x: f64, y: f64, pw: f64) -> Reference {
    match *loss {
        LossKind::Bce => {
            let (lx, l1mx) = (x.ln().max(-100.0), (-x).ln_1p().max(-100.0));
            let eps = f64::from(1e-12f32);
            let grad = (x - y) / ((1.0 - x) * x).max(eps);
            Reference {
                value: -(y * lx + (1.0 - y) * l1mx),
                value_terms: (y * lx).abs() + ((1.0 - y) * l1mx).abs(),
                grad,
                grad_terms: (x.abs() + y.abs()) / ((1.0 - x) * x).max(eps),
            }
        }
        LossKind::BceWithLogits => {
            let sp = (-x.abs()).exp().ln_1p();
            let terms = [
                times(1.0 - y, x.max(0.0)),
                times(pw * y, (-x).max(0.0)),
                times(1.0 + (pw - 1.0) * y, sp),
            ];
            let g = [times(1.0 - y, sigmoid(x)), times(pw * y, sigmoid(-x))];
            Reference {
                value: terms.iter().sum(),
                value_terms: terms.iter().map(|t| t.abs()).sum(),
                grad: g[0] - g[1],
                grad_terms: g[0].abs() + g[1].abs(),
            }
        }
        LossKind::SigmoidFocal { alpha, gamma } => {
            let sp = (-x.abs()).exp().ln_1p();
            let ce = times(1.0 - y, x.max(0.0)) + times(y, (-x).max(0.0)) + sp;
            let (s, sn) = (sigmoid(x), sigmoid(-x));
            let q = y * sn + (1.0 - y) * s; // 1 - p_t, without cancellation
            let m = if gamma == 0.0 { 1.0 } else { q.powf(gamma) };
            let alpha_t = if alpha >= 0.0 {
                alpha * y + (1.0 - alpha) * (1.0 - y)
            } else {
                1.0
            };
            let dce = [(1.0 - y) * s, y * sn];
            // d log(q) / dx = (1 - 2y) s(x) s(-x) / q.
            let r = if q > 0.0 {
                (1.0 - 2.0 * y) * s * sn / q
            } else {
                0.0
            };
            let inner = dce[0] - dce[1] + times(gamma, times(ce, r));
            Reference {
                value: times(alpha_t, times(ce, m)),
                value_terms: times(alpha_t, times(ce, m)).abs(),
                grad: times(alpha_t, times(m, inner)),
                grad_terms: times(
                    (alpha_t * m).abs(),
                    dce[0] + dce[1] + times(gamma, times(ce, r)).abs(),
                ),
            }
        }
        _ => panic!("{loss}: no reference here yet"),
    }
}

/// The magnitude of the terms the derivative `what` of `loss` at one element is a sum of (for
/// a tolerance: a sum of terms may cancel). BCE's and the logits loss's `grad` are differences
/// (`(x - y) / (x (1 - x))`, `(1 + (pw - 1) y) sigmoid(x) - pw y`); their `hess` are sums of
/// terms of one sign.
#[cfg(feature = "gpu")]
fn magnitude(loss: &LossKind, what: &str, x: f64, y: f64, pw: f64) -> f64 {
    let sp = (-x.abs()).exp().ln_1p();
    let (s, sn) = (sigmoid(x), sigmoid(-x));
    match (*loss, what) {
        (LossKind::Bce | LossKind::BceWithLogits, "grad") => reference(loss, x, y, pw).grad_terms,
        (LossKind::Bce, "grad_target") => x.ln().max(-100.0).abs() + (-x).ln_1p().max(-100.0).abs(),
        (LossKind::BceWithLogits, "grad_target") => {
            times(pw, (-x).max(0.0) + sp).abs() + x.max(0.0) + sp
        }
        (LossKind::SigmoidFocal { alpha, gamma }, what) => {
            let ce = times(1.0 - y, x.max(0.0)) + times(y, (-x).max(0.0)) + sp;
            let q = y * sn + (1.0 - y) * s;
            let m = q.powf(gamma);
            let alpha_t = if alpha >= 0.0 {
                alpha * y + (1.0 - alpha) * (1.0 - y)
            } else {
                1.0
            };
            let dalpha = if alpha >= 0.0 { 2.0 * alpha - 1.0 } else { 0.0 };
            let r = (1.0 - 2.0 * y) * s * sn / q;
            let dce = (1.0 - y) * s + y * sn;
            match what {
                "grad_target" => {
                    dalpha.abs() * ce * m
                        + alpha_t * m * (x.abs() + gamma * ce * (sn - s).abs() / q)
                }
                "hess" => {
                    alpha_t
                        * m
                        * (s * sn
                            + 2.0 * gamma * (r * dce).abs()
                            + gamma * ce * ((gamma - 1.0).abs() * r * r + (r * (sn - s)).abs()))
                }
                _ => alpha_t * m * (dce + gamma * ce * r.abs()),
            }
        }
        _ => 0.0,
    }
}

/// Inputs the loss takes: probabilities (with 0, 1 and neighbours) for BCE, logits (with 0,
/// large and infinite values) otherwise; soft and hard targets; a weight; a pos_weight for
/// the loss that takes one.
struct Case {
    x: Vec<f64>,
    y: Vec<f64>,
    w: Vec<f64>,
    pw: Option<Vec<f64>>,
}

fn case(loss: &LossKind, n: usize, seed: u64) -> Case {
    let u = uniform(n, seed);
    let v = uniform(n, seed + 1);
    let x: Vec<f64> = if loss.checks_range() {
        let edges = [0.0, 1.0, 1e-30, 1.0 - 1e-7, 0.5];
        u.iter()
            .enumerate()
            .map(|(i, &a)| {
                if i % 17 == 3 {
                    edges[i % edges.len()]
                } else {
                    a
                }
            })
            .collect()
    } else {
        let edges = [
            0.0,
            30.0,
            -30.0,
            100.0,
            -100.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            12.0,
        ];
        u.iter()
            .enumerate()
            .map(|(i, &a)| {
                if i % 13 == 5 {
                    edges[i % edges.len()]
                } else {
                    // Roughly N(0, 3), from two uniforms.
                    6.0 * (a - 0.5) + 6.0 * (v[i] - 0.5)
                }
            })
            .collect()
    };
    let y: Vec<f64> = v
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if i % 2 == 0 {
                b
            } else {
                (b > 0.5) as u8 as f64
            }
        })
        .collect();
    let w = uniform(n, seed + 2).iter().map(|a| 0.5 + a).collect();
    let pw = loss.takes_pos_weight().then(|| {
        uniform(n, seed + 3)
            .iter()
            .map(|a| 0.25 + 3.0 * a)
            .collect()
    });
    Case { x, y, w, pw }
}

fn arr<F: Float>(v: &[f64]) -> Array1<F> {
    v.iter().map(|&a| F::from_f64(a)).collect()
}

/// The elementwise value and gradient, and the mean and sum, of `loss` on `c` in `F`.
struct Results<F> {
    value: ArrayD<F>,
    grad: ArrayD<F>,
    mean: F,
    sum: F,
}

fn compute<F: Float>(loss: &LossKind, c: &Case) -> Results<F> {
    let (x, y, w) = (arr::<F>(&c.x), arr::<F>(&c.y), arr::<F>(&c.w));
    let pw = c.pw.as_deref().map(arr::<F>);
    let request = |reduction| {
        let r = Request::new(*loss, x.view(), y.view())
            .weight(w.view())
            .reduction(reduction);
        match &pw {
            Some(pw) => r.pos_weight(pw.view()),
            None => r,
        }
    };
    let (value, grad) = request(Reduction::None).value_and_grad().unwrap();
    let value = value.elementwise().unwrap().into_dyn();
    let mean = request(Reduction::Mean)
        .forward()
        .unwrap()
        .reduced()
        .unwrap();
    let sum = request(Reduction::Sum)
        .forward()
        .unwrap()
        .reduced()
        .unwrap();
    let grad2 = request(Reduction::None).backward(None).unwrap();
    assert_eq!(
        grad.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        grad2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "{loss}: backward and value_and_grad differ"
    );
    Results {
        value,
        grad: grad.into_dyn(),
        mean,
        sum,
    }
}

/// Holds `got` to the reference: within `rtol` of the value plus `rtol` of its terms'
/// magnitude, and a few of the type's smallest normals; NaN nowhere the reference is a
/// number; infinities exactly.
fn check<F: Float>(what: &str, loss: &LossKind, c: &Case, got: &Results<F>, rtol: f64) {
    let tiny = 8.0 * F::MIN_POSITIVE.to_f64();
    let mut total = 0.0;
    for i in 0..c.x.len() {
        let pw = c.pw.as_ref().map_or(1.0, |p| p[i]);
        // The reference at the values the call computed with (rounded to F).
        let (x, y, w) = (
            F::from_f64(c.x[i]).to_f64(),
            F::from_f64(c.y[i]).to_f64(),
            F::from_f64(c.w[i]).to_f64(),
        );
        let pw = F::from_f64(pw).to_f64();
        let r = reference(loss, x, y, pw);
        for (name, want, terms, have) in [
            (
                "value",
                times(w, r.value),
                times(w, r.value_terms),
                got.value[i].to_f64(),
            ),
            (
                "grad",
                times(w, r.grad),
                times(w, r.grad_terms),
                got.grad[i].to_f64(),
            ),
        ] {
            let ok = if want.is_finite() {
                (have - want).abs() <= rtol * (want.abs() + terms) + tiny
            } else {
                have == want || (want.is_nan() && have.is_nan())
            };
            assert!(
                ok,
                "{what} {loss} {name} at x={x}, y={y}, w={w}, pw={pw}: {have:e}, want {want:e}"
            );
        }
        total += times(w, r.value);
    }
    let n = c.x.len() as f64;
    if total.is_finite() {
        let close = |have: f64, want: f64| (have - want).abs() <= rtol * want.abs() + tiny;
        assert!(close(got.sum.to_f64(), total), "{what} {loss} sum");
        assert!(close(got.mean.to_f64(), total / n), "{what} {loss} mean");
    }
}

fn same_bits<F: Float>(a: &Results<F>, b: &Results<F>) -> bool {
    let bits = |v: &ArrayD<F>| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
    bits(&a.value) == bits(&b.value)
        && bits(&a.grad) == bits(&b.grad)
        && a.mean.to_f64().to_bits() == b.mean.to_f64().to_bits()
        && a.sum.to_f64().to_bits() == b.sum.to_f64().to_bits()
}

#[test]
fn every_loss_through_every_cpu_path() {
    // Changes the SIMD level and the thread count.
    let _settings = globals::hold();
    let lengths = [1usize, 37, 1_000, 70_001];
    for loss in LossKind::registry() {
        for (k, &n) in lengths.iter().enumerate() {
            let c = case(&loss, n, 100 + k as u64);
            for level in bcers::available_simd_levels() {
                bcers::set_simd_level(Some(level)).unwrap();
                let what = format!("{level} n={n}");
                check(&what, &loss, &c, &compute::<f32>(&loss, &c), 2e-6);
                check(&what, &loss, &c, &compute::<f64>(&loss, &c), 1e-13);
            }
            bcers::set_simd_level(None).unwrap();
            // The thread count changes no bit.
            let before = bcers::get_num_threads();
            bcers::set_num_threads(1).unwrap();
            let (one32, one64) = (compute::<f32>(&loss, &c), compute::<f64>(&loss, &c));
            for threads in [2, 3] {
                bcers::set_num_threads(threads).unwrap();
                assert!(
                    same_bits(&one32, &compute::<f32>(&loss, &c)),
                    "{loss} n={n}"
                );
                assert!(
                    same_bits(&one64, &compute::<f64>(&loss, &c)),
                    "{loss} n={n}"
                );
            }
            bcers::set_num_threads(before).unwrap();
        }
    }
}

#[cfg(feature = "gpu")]
#[test]
fn every_loss_on_the_gpu_agrees_with_the_cpu() {
    // Compares CPU results bit for bit: the SIMD level must hold still.
    let _settings = globals::hold();
    use bcers::gpu::{Gpu, GpuArray};
    let gpu = match Gpu::get() {
        Ok(gpu) => gpu,
        Err(e) => {
            if std::env::var("BCERS_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("BCERS_REQUIRE_GPU=1 but the GPU path is unavailable: {e}");
            }
            eprintln!("skipped: {e}");
            return;
        }
    };
    let up = |v: &[f64]| {
        let a: Array1<f32> = arr(v);
        GpuArray::from_view(&gpu, a.view()).unwrap()
    };
    for loss in LossKind::registry() {
        let c = case(&loss, 5_003, 7);
        let cpu = compute::<f32>(&loss, &c);
        let (x, y, w) = (up(&c.x), up(&c.y), up(&c.w));
        let pw = c.pw.as_deref().map(up);
        let request = |reduction| {
            let r = bcers::gpu::Request::new(loss, &x, &y)
                .weight(&w)
                .reduction(reduction);
            match &pw {
                Some(pw) => r.pos_weight(pw),
                None => r,
            }
        };
        let (value, grad) = request(Reduction::None).value_and_grad().unwrap();
        let value = value.elementwise().unwrap().to_array().unwrap();
        let grad = grad.to_array().unwrap();
        let mean = request(Reduction::Mean)
            .forward()
            .unwrap()
            .reduced()
            .unwrap();
        let sum = request(Reduction::Sum)
            .forward()
            .unwrap()
            .reduced()
            .unwrap();
        let got = Results {
            value: value.into_dyn(),
            grad: grad.into_dyn(),
            mean,
            sum,
        };
        // The GPU's own log, log1p and exp (ports of musl's), and float32 sums per workgroup:
        // a few ulp per element, 2e-5 on the sums; subnormal results may be flushed to zero.
        check("gpu", &loss, &c, &got, 2e-5);
        // And the CPU's float32 results, element by element: within a few ulp of the terms
        // each is a sum of (a difference of two rounded terms is exact only to their ulp).
        for (what, g, k) in [
            ("value", &got.value, &cpu.value),
            ("grad", &got.grad, &cpu.grad),
        ] {
            for (i, (&a, &b)) in g.iter().zip(k.iter()).enumerate() {
                let (x, y, w) = (
                    f64::from(c.x[i] as f32),
                    f64::from(c.y[i] as f32),
                    c.w[i] as f32,
                );
                let pw = c.pw.as_ref().map_or(1.0, |p| f64::from(p[i] as f32));
                let r = reference(&loss, x, y, pw);
                let terms = f64::from(w)
                    * if what == "value" {
                        r.value_terms
                    } else {
                        r.grad_terms
                    };
                let same = a == b || (a.is_nan() && b.is_nan());
                let close = (terms.is_finite()
                    && (f64::from(a) - f64::from(b)).abs()
                        <= 1e-5 * (f64::from(b).abs().max(1e-3) + terms))
                    || a.abs() < 1e-30;
                assert!(same || close, "gpu {loss} {what}[{i}]: {a:e}, cpu {b:e}");
            }
        }
        // Every derivative in one call (more outputs than some devices' kernels write at once:
        // several dispatches), elementwise and for a mean with a grad_output, against the
        // CPU's float32 results.
        let all = bcers::Outputs {
            value: true,
            grad: true,
            grad_target: true,
            hess: true,
        };
        let (hx, hy, hw) = (arr::<f32>(&c.x), arr::<f32>(&c.y), arr::<f32>(&c.w));
        let hpw = c.pw.as_deref().map(arr::<f32>);
        let half = ndarray::arr0(0.5f32).into_dyn();
        let dev_half = GpuArray::from_view(&gpu, half.view()).unwrap();
        for (reduction, g) in [(Reduction::None, false), (Reduction::Mean, true)] {
            let cpu_request = {
                let r = Request::new(loss, hx.view(), hy.view())
                    .weight(hw.view())
                    .reduction(reduction);
                match &hpw {
                    Some(pw) => r.pos_weight(pw.view()),
                    None => r,
                }
            };
            let want = cpu_request
                .derivatives(all, g.then(|| half.view()))
                .unwrap();
            let have = request(reduction)
                .derivatives(all, g.then_some(&dev_half))
                .unwrap();
            for (what, h, k) in [
                ("grad", have.grad, want.grad),
                ("grad_target", have.grad_target, want.grad_target),
                ("hess", have.hess, want.hess),
            ] {
                let h = h.unwrap().to_array().unwrap();
                let k = k.unwrap();
                let scale = if g { 0.5 / c.x.len() as f64 } else { 1.0 };
                for (i, (&a, &b)) in h.iter().zip(k.iter()).enumerate() {
                    let (x, y) = (f64::from(hx[i]), f64::from(hy[i]));
                    let pw = hpw.as_ref().map_or(1.0, |p| f64::from(p[i]));
                    // Within a few ulp of the terms each is a sum of (they may cancel).
                    let terms = f64::from(hw[i]).abs() * scale * magnitude(&loss, what, x, y, pw);
                    let (a64, b64) = (f64::from(a), f64::from(b));
                    let same = a == b || (a.is_nan() && b.is_nan());
                    let close = if terms.is_finite() {
                        (a64 - b64).abs() <= 2e-5 * (b64.abs() + terms) + 1e-30
                    } else {
                        a.is_finite() == b.is_finite()
                    };
                    assert!(
                        same || close,
                        "gpu {loss} {reduction:?} {what}[{i}] at x={x}, y={y}: {a:e}, cpu {b:e}"
                    );
                }
            }
        }
    }
}
