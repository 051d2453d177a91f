//! Property tests of the crate API: random shapes, layouts (C, Fortran, strided, reversed,
//! broadcast), lengths around the SIMD widths and the chunk size, and values including the
//! edges, against a float64 reference. And: no input, however odd, makes a function panic.
//!
//! `PROPTEST_CASES` sets the number of cases (default 256 per property); the slow profile of
//! the project runs many more.

use bcers::{
    binary_cross_entropy, binary_cross_entropy_backward, binary_cross_entropy_value_and_grad,
    binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_value_and_grad, Reduction,
};
use ndarray::{ArrayD, ArrayViewD, IxDyn, ShapeBuilder, Slice};
use proptest::prelude::*;

/// How an operand's memory is laid out.
#[derive(Clone, Copy, Debug)]
enum Layout {
    C,
    Fortran,
    /// Every other element along every axis of a larger array.
    Strided,
    /// Every axis reversed.
    Reversed,
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        Just(Layout::C),
        Just(Layout::Fortran),
        Just(Layout::Strided),
        Just(Layout::Reversed)
    ]
}

/// An owned array holding `values` (in C order of `shape`) and a view of it in `layout`.
struct Laid {
    base: ArrayD<f64>,
    layout: Layout,
}

impl Laid {
    fn new(shape: &[usize], values: &[f64], layout: Layout) -> Laid {
        let c = ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap();
        let base = match layout {
            Layout::C => c,
            Layout::Fortran => {
                let mut f = ArrayD::zeros(IxDyn(shape).f());
                f.assign(&c);
                f
            }
            Layout::Strided => {
                let big: Vec<usize> = shape.iter().map(|&n| 2 * n).collect();
                let mut b = ArrayD::from_elem(IxDyn(&big), f64::NAN);
                b.slice_each_axis_mut(|_| Slice::new(0, None, 2)).assign(&c);
                b
            }
            Layout::Reversed => {
                let mut r = c;
                for ax in 0..shape.len() {
                    r.invert_axis(ndarray::Axis(ax));
                }
                r
            }
        };
        Laid { base, layout }
    }

    fn view(&self) -> ArrayViewD<'_, f64> {
        match self.layout {
            Layout::C | Layout::Fortran => self.base.view(),
            Layout::Strided => self.base.slice_each_axis(|_| Slice::new(0, None, 2)),
            Layout::Reversed => {
                let mut v = self.base.view();
                for ax in 0..v.ndim() {
                    v.invert_axis(ndarray::Axis(ax));
                }
                v
            }
        }
    }
}

/// A shape: mostly small, sometimes one long axis whose length sits around a SIMD width or the
/// chunk size (16384), so that vector tails and chunk boundaries are crossed.
fn shape() -> impl Strategy<Value = Vec<usize>> {
    let long = prop_oneof![
        (14usize..=18),
        (30usize..=34),
        (1020usize..=1030),
        (16380usize..=16390),
        (32760usize..=32775),
    ];
    prop_oneof![
        4 => proptest::collection::vec(0usize..=6, 0..=4),
        1 => (long, 0usize..=2).prop_map(|(n, extra)| {
            let mut s = vec![n];
            s.extend(std::iter::repeat_n(1, extra));
            s
        }),
        1 => ((1usize..=3), (4000usize..=9000)).prop_map(|(a, b)| vec![a, b]),
    ]
}

/// A shape that broadcasts to `shape` without enlarging it: trailing axes, some set to 1.
fn broadcast_of(shape: Vec<usize>) -> impl Strategy<Value = Vec<usize>> {
    let k = shape.len();
    (0..=k, proptest::collection::vec(any::<bool>(), k)).prop_map(move |(keep, ones)| {
        shape[k - keep..]
            .iter()
            .zip(&ones[k - keep..])
            .map(|(&n, &one)| if one { 1 } else { n })
            .collect()
    })
}

fn values(n: usize, domain: impl Strategy<Value = f64> + Clone) -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec(domain, n)
}

/// A probability, edges included.
fn probability() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => 0.0f64..=1.0,
        1 => prop_oneof![Just(0.0), Just(1.0), Just(1e-300), Just(1.0 - 1e-16), Just(0.5)],
    ]
}

/// A logit, infinities included.
fn logit() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -40.0f64..40.0,
        1 => prop_oneof![Just(0.0), Just(-800.0), Just(800.0), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
    ]
}

fn bce_ref(x: f64, y: f64) -> (f64, f64) {
    let (a, b) = (x.ln().max(-100.0), (-x).ln_1p().max(-100.0));
    // Value, and the size of the terms for the tolerance.
    (
        -(y * a + (1.0 - y) * b),
        (y * a).abs() + ((1.0 - y) * b).abs(),
    )
}

fn bce_grad_ref(x: f64, y: f64) -> f64 {
    (x - y) / ((1.0 - x) * x).max(f64::from(1e-12f32))
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        x.exp() / (1.0 + x.exp())
    }
}

fn logits_ref(x: f64, y: f64, pw: f64) -> (f64, f64) {
    let zero_if = |c: f64, v: f64| if c == 0.0 { 0.0 } else { c * v };
    let sp = (-x.abs()).exp().ln_1p();
    let lw = (pw - 1.0) * y + 1.0;
    let terms = [
        zero_if(1.0 - y, x.max(0.0)),
        zero_if(pw * y, (-x).max(0.0)),
        lw * sp,
    ];
    (terms.iter().sum(), terms.iter().map(|t| t.abs()).sum())
}

fn logits_grad_ref(x: f64, y: f64, pw: f64) -> (f64, f64) {
    let (a, b) = ((1.0 - y) * sigmoid(x), pw * y * sigmoid(-x));
    (a - b, a.abs() + b.abs())
}

/// `got` is `want` to within `rtol` of `scale` (the size of the terms), or both are the same
/// non-finite value.
fn near(got: f64, want: f64, scale: f64, rtol: f64) -> bool {
    if !want.is_finite() || !got.is_finite() {
        return got == want || (got.is_nan() && want.is_nan());
    }
    (got - want).abs() <= rtol * scale + 1e-300
}

const RTOL: f64 = 1e-13;

#[derive(Debug, Clone)]
struct Case {
    shape: Vec<usize>,
    x: Vec<f64>,
    y: Vec<f64>,
    w_shape: Vec<usize>,
    w: Vec<f64>,
    pw_shape: Vec<usize>,
    pw: Vec<f64>,
    layouts: [Layout; 3],
    use_w: bool,
    use_pw: bool,
}

fn case(
    x_domain: fn() -> BoxedStrategy<f64>,
    y_domain: fn() -> BoxedStrategy<f64>,
) -> impl Strategy<Value = Case> {
    shape().prop_flat_map(move |shape| {
        let n: usize = shape.iter().product();
        (
            Just(shape.clone()),
            values(n, x_domain()),
            values(n, y_domain()),
            broadcast_of(shape.clone()),
            broadcast_of(shape),
            [layout(), layout(), layout()],
            any::<bool>(),
            any::<bool>(),
        )
            .prop_flat_map(|(shape, x, y, w_shape, pw_shape, layouts, use_w, use_pw)| {
                let (wn, pwn) = (w_shape.iter().product(), pw_shape.iter().product());
                (
                    Just((shape, x, y, w_shape, pw_shape, layouts, use_w, use_pw)),
                    values(wn, 0.0f64..4.0),
                    values(pwn, 0.0f64..4.0),
                )
            })
            .prop_map(
                |((shape, x, y, w_shape, pw_shape, layouts, use_w, use_pw), w, pw)| Case {
                    shape,
                    x,
                    y,
                    w_shape,
                    w,
                    pw_shape,
                    pw,
                    layouts,
                    use_w,
                    use_pw,
                },
            )
    })
}

fn prob_box() -> BoxedStrategy<f64> {
    probability().boxed()
}

fn logit_box() -> BoxedStrategy<f64> {
    logit().boxed()
}

fn soft_target_box() -> BoxedStrategy<f64> {
    prop_oneof![3 => probability(), 1 => -2.0f64..3.0].boxed()
}

fn broadcast_values(c: &Case, shape: &[usize], v: &[f64]) -> Vec<f64> {
    let a = ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap();
    a.broadcast(IxDyn(&c.shape))
        .unwrap()
        .iter()
        .copied()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn bce_matches_the_reference(c in case(prob_box, prob_box)) {
        let (xl, yl) = (Laid::new(&c.shape, &c.x, c.layouts[0]), Laid::new(&c.shape, &c.y, c.layouts[1]));
        let wl = Laid::new(&c.w_shape, &c.w, c.layouts[2]);
        let w = c.use_w.then(|| wl.view());
        let wv = if c.use_w { broadcast_values(&c, &c.w_shape, &c.w) } else { vec![1.0; c.x.len()] };
        let n = c.x.len();

        let none = binary_cross_entropy(xl.view(), yl.view(), w.clone(), Reduction::None).unwrap().elementwise().unwrap();
        prop_assert_eq!(none.shape(), &c.shape[..]);
        let mut sum = 0.0;
        let mut scale = 0.0;
        for ((&got, (&x, &y)), &w) in none.iter().zip(c.x.iter().zip(&c.y)).zip(&wv) {
            let (want, terms) = bce_ref(x, y);
            prop_assert!(near(got, want * w, terms * w, RTOL), "{} vs {} at x={}, y={}", got, want * w, x, y);
            sum += want * w;
            scale += terms * w;
        }
        let total = binary_cross_entropy(xl.view(), yl.view(), w.clone(), Reduction::Sum).unwrap().reduced().unwrap();
        prop_assert!(near(total, sum, scale, 1e-12));
        let (mean, grad) = binary_cross_entropy_value_and_grad(xl.view(), yl.view(), w.clone(), Reduction::Mean).unwrap();
        let mean = mean.reduced().unwrap();
        if n == 0 { prop_assert!(mean.is_nan()); } else { prop_assert!(near(mean, sum / n as f64, scale / n as f64, 1e-12)); }
        let g = binary_cross_entropy_backward(Some(ndarray::arr0(1.0).into_dyn().view()), xl.view(), yl.view(), w, Reduction::Mean).unwrap();
        prop_assert_eq!(&g, &grad);
        for ((&got, (&x, &y)), &w) in g.iter().zip(c.x.iter().zip(&c.y)).zip(&wv) {
            let want = bce_grad_ref(x, y) * w / n as f64;
            prop_assert!(near(got, want, want.abs(), 1e-14), "{} vs {}", got, want);
        }
    }

    #[test]
    fn logits_match_the_reference(c in case(logit_box, soft_target_box)) {
        let (xl, yl) = (Laid::new(&c.shape, &c.x, c.layouts[0]), Laid::new(&c.shape, &c.y, c.layouts[1]));
        let wl = Laid::new(&c.w_shape, &c.w, c.layouts[2]);
        let pwl = Laid::new(&c.pw_shape, &c.pw, c.layouts[2]);
        let w = c.use_w.then(|| wl.view());
        let pw = c.use_pw.then(|| pwl.view());
        let n = c.x.len();
        let wv = if c.use_w { broadcast_values(&c, &c.w_shape, &c.w) } else { vec![1.0; n] };
        let pwv = if c.use_pw { broadcast_values(&c, &c.pw_shape, &c.pw) } else { vec![1.0; n] };

        let (none, grad) = binary_cross_entropy_with_logits_value_and_grad(xl.view(), yl.view(), w.clone(), pw.clone(), Reduction::None).unwrap();
        let none = none.elementwise().unwrap();
        let g = ArrayD::from_elem(IxDyn(&c.shape), 0.75);
        let grad2 = binary_cross_entropy_with_logits_backward(Some(g.view()), xl.view(), yl.view(), w.clone(), pw.clone(), Reduction::None).unwrap();
        // In logical (C) order, as the reference values are.
        let (none_c, grad_c, grad2_c): (Vec<f64>, Vec<f64>, Vec<f64>) = (
            none.iter().copied().collect(),
            grad.iter().copied().collect(),
            grad2.iter().copied().collect(),
        );
        for (i, (((&x, &y), &w), &pw)) in c.x.iter().zip(&c.y).zip(&wv).zip(&pwv).enumerate() {
            let (want, terms) = logits_ref(x, y, pw);
            let got = none_c[i];
            prop_assert!(near(got, want * w, terms * w, RTOL), "{} vs {} at x={}, y={}, pw={}", got, want * w, x, y, pw);
            let (gw, gterms) = logits_grad_ref(x, y, pw);
            let got = grad_c[i];
            prop_assert!(near(got, gw * w, gterms * w, RTOL), "grad {} vs {}", got, gw * w);
            let got2 = grad2_c[i];
            prop_assert!(near(got2, 0.75 * gw * w, 0.75 * gterms * w, RTOL), "backward {} vs {}", got2, 0.75 * gw * w);
        }
        let total = binary_cross_entropy_with_logits(xl.view(), yl.view(), w, pw, Reduction::Sum).unwrap().reduced().unwrap();
        let want: f64 = none.iter().sum();
        let scale: f64 = none.iter().map(|v| v.abs()).sum();
        prop_assert!(near(total, want, scale, 1e-12), "{} vs {}", total, want);
    }

    #[test]
    fn f32_agrees_with_f64_to_a_few_ulp(c in case(prob_box, prob_box)) {
        let x32: Vec<f32> = c.x.iter().map(|&v| v as f32).collect();
        let y32: Vec<f32> = c.y.iter().map(|&v| v as f32).collect();
        let x = ArrayD::from_shape_vec(IxDyn(&c.shape), x32.clone()).unwrap();
        let y = ArrayD::from_shape_vec(IxDyn(&c.shape), y32.clone()).unwrap();
        let got = binary_cross_entropy(x.view(), y.view(), None, Reduction::None).unwrap().elementwise().unwrap();
        for ((&g, &a), &b) in got.iter().zip(&x32).zip(&y32) {
            let (want, terms) = bce_ref(f64::from(a), f64::from(b));
            // Two logarithms within 2 ulp each, a few roundings: 1e-6 of the terms is ample.
            prop_assert!(near(f64::from(g), want, terms, 1e-6), "{} vs {} at {}, {}", g, want, a, b);
        }
    }

    /// Anything at all, shapes that do not match included: a value or an error, never a panic.
    #[test]
    fn never_panics(
        xs in proptest::collection::vec(0usize..=4, 0..=3),
        ys in proptest::collection::vec(0usize..=4, 0..=3),
        ws in proptest::collection::vec(0usize..=4, 0..=4),
        gs in proptest::collection::vec(0usize..=4, 0..=4),
        fill in prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(0.5)],
        red in prop_oneof![Just(Reduction::None), Just(Reduction::Mean), Just(Reduction::Sum)],
    ) {
        let a = |s: &[usize]| ArrayD::from_elem(IxDyn(s), fill);
        let (x, y, w, g) = (a(&xs), a(&ys), a(&ws), a(&gs));
        let _ = binary_cross_entropy(x.view(), y.view(), Some(w.view()), red);
        let _ = binary_cross_entropy_with_logits(x.view(), y.view(), Some(w.view()), Some(g.view()), red);
        let _ = binary_cross_entropy_backward(Some(g.view()), x.view(), y.view(), Some(w.view()), red);
        let _ = binary_cross_entropy_with_logits_backward(Some(g.view()), x.view(), y.view(), Some(w.view()), None, red);
        let _ = binary_cross_entropy_value_and_grad(x.view(), y.view(), Some(w.view()), red);
        let _ = binary_cross_entropy_with_logits_value_and_grad(x.view(), y.view(), None, Some(w.view()), red);
    }
}
