//! The fuzz harness: turns arbitrary bytes into a call of the crate's API and checks what must
//! hold whatever the input. Shared by the libFuzzer target (`fuzz/fuzz_targets/api.rs`) and the
//! corpus replay test (`tests/fuzz_corpus.rs`), so the committed corpus runs in `cargo test`.
//!
//! What must hold: no panic; an error only for a reason the input shows (mismatched shapes, a
//! weight that does not broadcast, a value outside [0, 1] for BCE, a non-scalar grad_output);
//! results of the input's shape; the one-pass value-and-gradient equal to the separate forward
//! and backward calls, bit for bit; BCE losses in [0, 100 * weight] where weights are finite.

use bcers::{
    binary_cross_entropy, binary_cross_entropy_backward, binary_cross_entropy_value_and_grad,
    binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_value_and_grad, Error, Float, Loss, Reduction,
};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice};

/// A reader of the fuzzer's bytes; past the end it yields zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |acc, _| (acc << 8) | u64::from(self.u8()))
    }
}

/// A shape of up to 4 axes, each 0..=7 long, or one long axis near a chunk boundary.
fn shape(b: &mut Bytes<'_>) -> Vec<usize> {
    let code = b.u8();
    if code >= 250 {
        return vec![16_380 + usize::from(b.u8() % 12)];
    }
    (0..code % 5).map(|_| usize::from(b.u8() % 8)).collect()
}

/// A shape that usually broadcasts to `of` (trailing axes, some set to 1), sometimes not.
fn broadcast_shape(b: &mut Bytes<'_>, of: &[usize]) -> Vec<usize> {
    let code = b.u8();
    if code % 16 == 15 {
        return shape(b);
    }
    let keep = usize::from(code) % (of.len() + 1);
    of[of.len() - keep..]
        .iter()
        .map(|&n| if b.u8() % 3 == 0 { 1 } else { n })
        .collect()
}

/// Values from raw bits (any float, NaN and infinities included), or from a small menu of the
/// interesting ones, or uniform in [0, 1].
fn values<F: Float>(b: &mut Bytes<'_>, n: usize) -> Vec<F> {
    let mode = b.u8() % 3;
    let menu = [
        0.0,
        1.0,
        0.5,
        -0.0,
        1e-40,
        1e-300,
        1.0 - 1e-7,
        20.0,
        -20.0,
        100.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        2.0,
        -1.0,
    ];
    (0..n)
        .map(|_| match mode {
            0 => F::from_f64(f64::from_bits(b.u64())),
            1 => F::from_f64(menu[usize::from(b.u8()) % menu.len()]),
            _ => F::from_f64(f64::from(b.u8()) / 255.0),
        })
        .collect()
}

/// An owned array of `values` and a way of viewing it: C order, reversed, or every other
/// element of a larger array.
struct Operand<F> {
    data: ArrayD<F>,
    layout: u8,
}

impl<F: Float> Operand<F> {
    fn new(b: &mut Bytes<'_>, shape: &[usize]) -> Self {
        let n = shape.iter().product();
        let layout = b.u8() % 3;
        let vals = values::<F>(b, n);
        let c = ArrayD::from_shape_vec(IxDyn(shape), vals)
            .unwrap_or_else(|_| ArrayD::from_elem(IxDyn(shape), F::ZERO));
        let data = if layout == 2 {
            let big: Vec<usize> = shape.iter().map(|&n| 2 * n).collect();
            let mut a = ArrayD::from_elem(IxDyn(&big), F::NAN);
            a.slice_each_axis_mut(|_| Slice::new(0, None, 2)).assign(&c);
            a
        } else {
            c
        };
        Operand { data, layout }
    }

    fn view(&self) -> ArrayViewD<'_, F> {
        match self.layout {
            1 => {
                let mut v = self.data.view();
                for ax in 0..v.ndim() {
                    v.invert_axis(Axis(ax));
                }
                v
            }
            2 => self.data.slice_each_axis(|_| Slice::new(0, None, 2)),
            _ => self.data.view(),
        }
    }
}

fn check_error(e: &Error, input: &[usize], target: &[usize]) {
    match e {
        Error::TargetShape { .. } => assert_ne!(input, target, "{e}"),
        Error::Broadcast { .. } | Error::GradOutputNotScalar { .. } | Error::OutOfRange { .. } => {}
        other => panic!("unexpected error: {other}"),
    }
}

fn run<F: Float>(data: &[u8]) {
    let mut b = Bytes(data);
    let logits = b.u8() % 2 == 1;
    let reduction = [Reduction::None, Reduction::Mean, Reduction::Sum][usize::from(b.u8() % 3)];
    let xs = shape(&mut b);
    let ys = if b.u8() % 8 == 0 {
        shape(&mut b)
    } else {
        xs.clone()
    };
    let x = Operand::<F>::new(&mut b, &xs);
    let y = Operand::<F>::new(&mut b, &ys);
    let w = (b.u8() % 2 == 1).then(|| {
        let s = broadcast_shape(&mut b, &xs);
        Operand::<F>::new(&mut b, &s)
    });
    let pw = (logits && b.u8() % 2 == 1).then(|| {
        let s = broadcast_shape(&mut b, &xs);
        Operand::<F>::new(&mut b, &s)
    });
    let g = {
        let s = if reduction == Reduction::None {
            broadcast_shape(&mut b, &xs)
        } else if b.u8() % 8 == 0 {
            shape(&mut b)
        } else {
            Vec::new()
        };
        Operand::<F>::new(&mut b, &s)
    };
    let (xv, yv) = (x.view(), y.view());
    let wv = w.as_ref().map(Operand::view);
    let pwv = pw.as_ref().map(Operand::view);
    let gv = g.view();
    let one = ArrayD::from_elem(IxDyn(&[]), F::ONE);

    let (forward, backward, fused) = if logits {
        (
            binary_cross_entropy_with_logits(
                xv.clone(),
                yv.clone(),
                wv.clone(),
                pwv.clone(),
                reduction,
            ),
            binary_cross_entropy_with_logits_backward(
                Some(gv.clone()),
                xv.clone(),
                yv.clone(),
                wv.clone(),
                pwv.clone(),
                reduction,
            ),
            binary_cross_entropy_with_logits_value_and_grad(
                xv.clone(),
                yv.clone(),
                wv.clone(),
                pwv.clone(),
                reduction,
            ),
        )
    } else {
        (
            binary_cross_entropy(xv.clone(), yv.clone(), wv.clone(), reduction),
            binary_cross_entropy_backward(
                Some(gv.clone()),
                xv.clone(),
                yv.clone(),
                wv.clone(),
                reduction,
            ),
            binary_cross_entropy_value_and_grad(xv.clone(), yv.clone(), wv.clone(), reduction),
        )
    };

    match (&forward, &fused) {
        (Ok(f), Ok((l, grad))) => {
            assert_eq!(grad.shape(), &xs[..]);
            // The one-pass result is the forward result, bit for bit.
            match (f, l) {
                (Loss::Reduced(a), Loss::Reduced(b)) => assert!(
                    a.to_bits() == b.to_bits() || (a.to_f64().is_nan() && b.to_f64().is_nan())
                ),
                (Loss::Elementwise(a), Loss::Elementwise(b)) => {
                    assert_eq!(a.shape(), &xs[..]);
                    for (p, q) in a.iter().zip(b.iter()) {
                        assert!(
                            p.to_bits() == q.to_bits()
                                || (p.to_f64().is_nan() && q.to_f64().is_nan())
                        );
                    }
                    if !logits {
                        // BCE per element lies in [0, 100] times the weight.
                        let wb: Vec<f64> = match wv.as_ref().and_then(|w| w.broadcast(IxDyn(&xs))) {
                            Some(w) => w.iter().map(|v| v.to_f64()).collect(),
                            None => vec![1.0; a.len()],
                        };
                        for (&v, &wt) in a.iter().zip(&wb) {
                            let v = v.to_f64();
                            if wt.is_finite() && wt >= 0.0 && v.is_finite() {
                                assert!(
                                    v >= -1e-6 * wt && v <= 100.0 * wt * (1.0 + 1e-6),
                                    "{v} with weight {wt}"
                                );
                            }
                        }
                    }
                }
                _ => panic!("forward and value_and_grad disagree on the reduction"),
            }
            // The separate backward with grad_output 1 gives the fused gradient.
            let ones = ArrayD::from_elem(IxDyn(&xs), F::ONE);
            let g1 = if reduction == Reduction::None {
                ones.view()
            } else {
                one.view()
            };
            let sep = if logits {
                binary_cross_entropy_with_logits_backward(
                    Some(g1),
                    xv.clone(),
                    yv.clone(),
                    wv.clone(),
                    pwv.clone(),
                    reduction,
                )
            } else {
                binary_cross_entropy_backward(
                    Some(g1),
                    xv.clone(),
                    yv.clone(),
                    wv.clone(),
                    reduction,
                )
            };
            let sep = sep.expect("backward fails where value_and_grad succeeds");
            for (p, q) in sep.iter().zip(grad.iter()) {
                assert!(p.to_bits() == q.to_bits() || (p.to_f64().is_nan() && q.to_f64().is_nan()));
            }
        }
        (Err(e1), Err(e2)) => {
            assert_eq!(e1, e2);
            check_error(e1, &xs, &ys);
        }
        _ => panic!(
            "forward and value_and_grad disagree: {:?} vs {:?}",
            forward.as_ref().err(),
            fused.as_ref().err()
        ),
    }
    match backward {
        Ok(grad) => assert_eq!(grad.shape(), &xs[..]),
        Err(e) => check_error(&e, &xs, &ys),
    }
}

/// One fuzz input: the first byte picks float32 or float64.
pub fn fuzz_one(data: &[u8]) {
    match data.split_first() {
        Some((&t, rest)) if t % 2 == 1 => run::<f64>(rest),
        Some((_, rest)) => run::<f32>(rest),
        None => {}
    }
}
