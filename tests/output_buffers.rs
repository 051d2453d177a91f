//! `Request::derivatives_into`: the caller's buffers hold, bit for bit, what
//! `Request::derivatives` allocates, for every loss, reduction, option and layout (C-ordered
//! inputs are written in place, others through a copy); bad buffers are errors that write
//! nothing.

#[path = "support/random.rs"]
mod random;
use bcers::{Error, Float, LossKind, OutputBuffers, Outputs, Reduction, Request};
use ndarray::{Array2, ArrayView2, ShapeBuilder};
use random::uniform;

const ALL: Outputs = Outputs {
    value: true,
    grad: true,
    grad_target: true,
    hess: true,
};

fn losses() -> [LossKind; 3] {
    [
        LossKind::Bce,
        LossKind::BceWithLogits,
        LossKind::SigmoidFocal {
            alpha: 0.25,
            gamma: 2.0,
        },
    ]
}

/// Operands of `shape` for `loss`: probabilities for BCE, logits otherwise; soft targets.
fn operands<T: Float>(loss: LossKind, rows: usize, cols: usize, seed: u64) -> [Array2<T>; 2] {
    let n = rows * cols;
    let x: Vec<T> = uniform(n, seed)
        .into_iter()
        .map(|u| match loss {
            LossKind::Bce => T::from_f64(0.001 + 0.998 * u),
            _ => T::from_f64(12.0 * u - 6.0),
        })
        .collect();
    let y: Vec<T> = uniform(n, seed + 1).into_iter().map(T::from_f64).collect();
    [
        Array2::from_shape_vec((rows, cols), x).expect("shape"),
        Array2::from_shape_vec((rows, cols), y).expect("shape"),
    ]
}

fn bits<T: Float>(values: impl IntoIterator<Item = T>) -> Vec<u64> {
    values.into_iter().map(|v| v.to_f64().to_bits()).collect()
}

/// Every elementwise output of `request` written into buffers (NaN-filled first, so that an
/// element left unwritten shows) against the outputs `derivatives` allocates.
fn check<T: Float>(request: &Request<'_, T, ndarray::Ix2>, elementwise_value: bool, what: &str) {
    let fresh = request.derivatives(ALL, None).expect("fresh call");
    let n = fresh.grad.as_ref().expect("grad").len();
    let mut buffers: [Vec<T>; 4] = core::array::from_fn(|_| vec![T::NAN; n]);
    let [bv, bg, bt, bh] = &mut buffers;
    let into = request
        .derivatives_into(
            ALL,
            None,
            OutputBuffers {
                value: elementwise_value.then_some(&mut bv[..]),
                grad: Some(bg),
                grad_target: Some(bt),
                hess: Some(bh),
            },
        )
        .expect("call into buffers");
    assert!(into.grad.is_none() && into.grad_target.is_none() && into.hess.is_none());
    let arrays = [
        fresh.value.clone().and_then(|v| v.elementwise()),
        fresh.grad,
        fresh.grad_target,
        fresh.hess,
    ];
    for (k, (array, buffer)) in arrays.into_iter().zip(&buffers).enumerate() {
        if k == 0 && !elementwise_value {
            assert_eq!(into.value, fresh.value, "{what}: the reduced value");
            continue;
        }
        let array = array.expect("an elementwise output");
        assert_eq!(
            bits(array.iter().copied()),
            bits(buffer.iter().copied()),
            "{what}: output {k}"
        );
    }
}

#[test]
fn buffers_hold_the_bits_of_the_allocated_outputs() {
    for loss in losses() {
        for (rows, cols) in [(1, 7), (300, 301), (3, 70_001)] {
            let [x, y] = operands::<f32>(loss, rows, cols, 11);
            let w: Vec<f32> = uniform(cols, 13)
                .into_iter()
                .map(|u| 0.5 + u as f32)
                .collect();
            let w = ndarray::Array1::from(w);
            let keep: Vec<bool> = uniform(rows * cols, 17)
                .into_iter()
                .map(|u| u < 0.9)
                .collect();
            let keep = Array2::from_shape_vec((rows, cols), keep).expect("shape");
            for reduction in [
                Reduction::None,
                Reduction::Mean,
                Reduction::Sum,
                Reduction::WeightedMean,
            ] {
                let request = Request::new(loss, x.view(), y.view())
                    .weight(w.view())
                    .mask(keep.view())
                    .label_smoothing(0.1)
                    .reduction(reduction);
                let what = format!("{loss:?} {rows}x{cols} {reduction:?}");
                check(&request, reduction == Reduction::None, &what);
            }
            // A reduction over rows: one slot per column.
            let request = Request::new(loss, x.view(), y.view()).axis(&[0]);
            check(&request, false, &format!("{loss:?} {rows}x{cols} axis 0"));
        }
        // float64, and F-ordered operands (the walk is not in C order: written through a copy).
        let [x, y] = operands::<f64>(loss, 400, 300, 19);
        check(
            &Request::new(loss, x.view(), y.view()),
            false,
            &format!("{loss:?} f64"),
        );
        let xf = x.t().as_standard_layout().into_owned().reversed_axes();
        let yf = y.t().as_standard_layout().into_owned().reversed_axes();
        let (xf, yf): (ArrayView2<f64>, ArrayView2<f64>) = (xf.view(), yf.view());
        assert!(!xf.is_standard_layout());
        let request = Request::new(loss, xf, yf).reduction(Reduction::None);
        check(&request, true, &format!("{loss:?} F order"));
    }
}

#[test]
fn the_values_are_right_in_a_buffer() {
    // The logits loss's mean gradient and second derivative against a float64 reference.
    let [x, y] = operands::<f64>(LossKind::BceWithLogits, 1, 100_000, 23);
    let (mut g, mut h) = (vec![f64::NAN; x.len()], vec![f64::NAN; x.len()]);
    let outputs = Outputs {
        value: false,
        grad: true,
        grad_target: false,
        hess: true,
    };
    let buffers = OutputBuffers {
        grad: Some(&mut g),
        hess: Some(&mut h),
        ..Default::default()
    };
    Request::new(LossKind::BceWithLogits, x.view(), y.view())
        .derivatives_into(outputs, None, buffers)
        .expect("call");
    let n = x.len() as f64;
    for ((&xi, &yi), (&gi, &hi)) in x.iter().zip(&y).zip(g.iter().zip(&h)) {
        let p = 1.0 / (1.0 + (-xi).exp());
        assert!(
            (gi - (p - yi) / n).abs() <= 1e-15 * (1.0 + (p - yi).abs()) / n * 8.0,
            "{gi}"
        );
        assert!((hi - p * (1.0 - p) / n).abs() <= 1e-14 / n, "{hi}");
    }
}

#[test]
fn bad_buffers_are_errors_that_write_nothing() {
    let [x, y] = operands::<f32>(LossKind::BceWithLogits, 10, 10, 29);
    let request = Request::new(LossKind::BceWithLogits, x.view(), y.view());
    let grad_only = Outputs {
        value: false,
        grad: true,
        grad_target: false,
        hess: false,
    };
    let mut a = vec![f32::NAN; 100];
    let mut short = vec![f32::NAN; 99];
    let err = request
        .derivatives_into(
            grad_only,
            None,
            OutputBuffers {
                hess: Some(&mut a),
                ..Default::default()
            },
        )
        .expect_err("hess not asked for");
    assert_eq!(
        err.to_string(),
        "the buffer for hess is given, but the call does not ask for hess"
    );
    let value = Outputs {
        value: true,
        ..grad_only
    };
    let err = request
        .derivatives_into(
            value,
            None,
            OutputBuffers {
                value: Some(&mut a),
                ..Default::default()
            },
        )
        .expect_err("a reduced value");
    assert!(
        matches!(
            err,
            Error::OutputBuffer {
                output: "value",
                ..
            }
        ),
        "{err}"
    );
    let err = request
        .derivatives_into(
            grad_only,
            None,
            OutputBuffers {
                grad: Some(&mut short),
                ..Default::default()
            },
        )
        .expect_err("short");
    assert_eq!(
        err.to_string(),
        "the buffer for grad has 99 elements; the input has 100"
    );
    assert!(a.iter().chain(&short).all(|v| v.is_nan()));
    // A failing call of another kind: the error of the call, as without buffers.
    let bad = Array2::from_elem((10, 10).f(), 2.0f32);
    let request = Request::new(LossKind::Bce, bad.view(), y.view());
    let err = request
        .derivatives_into(
            grad_only,
            None,
            OutputBuffers {
                grad: Some(&mut a),
                ..Default::default()
            },
        )
        .expect_err("out of range");
    assert!(matches!(err, Error::OutOfRange { .. }), "{err}");
}
