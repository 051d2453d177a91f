//! The crate's public API: values against a float64 reference, torch's reference numbers,
//! layouts, broadcasting, determinism across thread counts, and every error path.

#[path = "support/random.rs"]
mod random;
use bcers::{
    binary_cross_entropy, binary_cross_entropy_backward, binary_cross_entropy_value_and_grad,
    binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_value_and_grad, Error, Loss, Reduction,
};
use ndarray::{arr0, array, s, Array, Array1, ArrayD, ArrayView1, IxDyn};
use random::uniform;

/// float64 reference of BCE per element.
fn bce_ref(x: f64, y: f64) -> f64 {
    -(y * x.ln().max(-100.0) + (1.0 - y) * (-x).ln_1p().max(-100.0))
}

/// float64 reference of BCE-with-logits per element (finite logits).
fn logits_ref(x: f64, y: f64, pw: f64) -> f64 {
    let log_sig = x.min(0.0) - (-x.abs()).exp().ln_1p();
    (1.0 - y) * x - (1.0 + (pw - 1.0) * y) * log_sig
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn close(a: f64, b: f64, rtol: f64) -> bool {
    (a - b).abs() <= rtol * b.abs().max(1e-30) || (a.is_nan() && b.is_nan()) || a == b
}

#[test]
fn first_seed_example_gives_torchs_number() {
    let input = array![0.4498f32, 0.9845, 0.4576, 0.3494, 0.2434];
    let target = array![0.2345f32, 0.5565, 0.3468, 0.1444, 0.3546];
    let loss = binary_cross_entropy(input.view(), target.view(), None, Reduction::Mean).unwrap();
    assert_eq!(format!("{:.4}", loss.reduced().unwrap()), "0.8746");
}

#[test]
// The literals are torch's measured values (one of them is ln 2 to 8 digits).
#[allow(clippy::approx_constant)]
fn reference_points_from_torch() {
    // Weighted mean divides by the element count: torch gives 1.19606721.
    let x = array![0.2f32, 0.4, 0.6];
    let y = array![0.0f32, 1.0, 1.0];
    let w = array![1.0f32, 2.0, 3.0];
    let loss = binary_cross_entropy(
        x.view(),
        y.view(),
        Some(w.view().into_dyn()),
        Reduction::Mean,
    )
    .unwrap();
    assert!(
        close(f64::from(loss.reduced().unwrap()), 1.19606721, 1e-7),
        "{loss:?}"
    );

    // Edges: the -100 clamp.
    let x = array![0.0f32, 1.0, 0.0, 1.0, 0.0, 1e-40];
    let y = array![1.0f32, 0.0, 0.0, 1.0, 0.5, 1.0];
    let l = binary_cross_entropy(x.view(), y.view(), None, Reduction::None)
        .unwrap()
        .elementwise()
        .unwrap();
    assert_eq!(l.to_vec()[..5], [100.0, 100.0, 0.0, 0.0, 50.0]);
    assert!(close(f64::from(l[5]), 92.1034, 1e-6));

    // The EPS of the gradient: f64 (0, 1) gives -1000000003995.8029, f32 -999999995904.
    let g64 = binary_cross_entropy_backward(
        Some(arr0(1.0f64).view().into_dyn()),
        array![0.0f64, 0.0, 1.0].view(),
        array![1.0f64, 0.0, 1.0].view(),
        None,
        Reduction::Sum,
    )
    .unwrap();
    assert!(close(g64[0], -1000000003995.8029, 1e-15));
    assert_eq!((g64[1], g64[2]), (0.0, 0.0));
    let g32 = binary_cross_entropy_backward(
        Some(arr0(1.0f32).view().into_dyn()),
        array![0.0f32].view(),
        array![1.0f32].view(),
        None,
        Reduction::Sum,
    )
    .unwrap();
    assert_eq!(g32[0], -999999995904.0);

    // Logits reference vectors, with and without pos_weight = 3.
    let z = array![-3.0f32, -0.5, 0.0, 0.5, 3.0, 20.0, -20.0];
    let t = array![1.0f32, 0.0, 0.5, 1.0, 0.0, 0.0, 1.0];
    let expect = [
        3.04858732, 0.47407699, 0.69314718, 0.47407699, 3.04858732, 20.0, 20.0,
    ];
    let expect_pw = [
        9.14576149, 0.47407699, 1.38629436, 1.42223096, 3.04858732, 20.0, 60.0,
    ];
    let l = binary_cross_entropy_with_logits(z.view(), t.view(), None, None, Reduction::None)
        .unwrap()
        .elementwise()
        .unwrap();
    let pw = arr0(3.0f32);
    let lp = binary_cross_entropy_with_logits(
        z.view(),
        t.view(),
        None,
        Some(pw.view().into_dyn()),
        Reduction::None,
    )
    .unwrap()
    .elementwise()
    .unwrap();
    for i in 0..7 {
        assert!(close(f64::from(l[i]), expect[i], 2e-7), "{i}: {}", l[i]);
        assert!(
            close(f64::from(lp[i]), expect_pw[i], 2e-7),
            "{i}: {}",
            lp[i]
        );
    }

    // A target outside [0, 1] is accepted by the logits loss: x = 3, y = 2 gives -2.95141268.
    let l = binary_cross_entropy_with_logits(
        array![3.0f32].view(),
        array![2.0f32].view(),
        None,
        None,
        Reduction::Sum,
    )
    .unwrap();
    assert!(close(f64::from(l.reduced().unwrap()), -2.95141268, 2e-7));
}

#[test]
fn infinite_logits_give_the_mathematical_limits() {
    let x = array![
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NEG_INFINITY
    ];
    let y = array![1.0f32, 0.0, 0.0, 1.0];
    let l = binary_cross_entropy_with_logits(x.view(), y.view(), None, None, Reduction::None)
        .unwrap()
        .elementwise()
        .unwrap();
    assert_eq!(l.to_vec(), [0.0, 0.0, f32::INFINITY, f32::INFINITY]);
    let g = binary_cross_entropy_with_logits_backward(
        Some(arr0(1.0f32).view().into_dyn()),
        x.view(),
        y.view(),
        None,
        None,
        Reduction::Sum,
    )
    .unwrap();
    assert_eq!(g.to_vec(), [0.0, 0.0, 1.0, -1.0]);
}

#[test]
fn mean_gradient_of_a_tiny_grad_output_is_not_rounded_away() {
    // grad_output / n is subnormal here; torch divides by n last, so the gradient stays a
    // normal number (x = 0, y = 1: g * -1 / 1e-12 / 15).
    let g = f32::from_bits(6260); // 8.772e-42
    let x = Array1::<f32>::zeros(15);
    let y = Array1::<f32>::ones(15);
    for (n, x, y) in [
        (15usize, x.view(), y.view()),
        (1, x.slice(s![..1]), y.slice(s![..1])),
    ] {
        let grad = binary_cross_entropy_backward(
            Some(arr0(g).into_dyn().view()),
            x,
            y,
            None,
            Reduction::Mean,
        )
        .unwrap();
        let want = (-(g as f64) / 1e-12_f32 as f64) / n as f64;
        for &v in grad.iter() {
            assert!(close(v as f64, want, 1e-6), "{v} vs {want}");
        }
    }
    // The smallest subnormal grad_output: a nonzero gradient, not 0.
    let g = f32::from_bits(1);
    let grad = binary_cross_entropy_backward(
        Some(arr0(g).into_dyn().view()),
        array![0.0f32, 0.0, 0.0].view(),
        array![1.0f32, 1.0, 1.0].view(),
        None,
        Reduction::Mean,
    )
    .unwrap();
    let want = (-(g as f64) / 1e-12_f32 as f64) / 3.0;
    assert!(grad.iter().all(|&v| close(v as f64, want, 1e-6)), "{grad}");
}

#[test]
fn logits_gradient_keeps_tiny_exact_values() {
    let g = binary_cross_entropy_with_logits_backward(
        Some(arr0(1.0f32).view().into_dyn()),
        array![20.0f32, 100.0].view(),
        array![1.0f32, 1.0].view(),
        None,
        None,
        Reduction::Sum,
    )
    .unwrap();
    assert!(close(f64::from(g[0]), -sigmoid(-20.0), 1e-6), "{}", g[0]);
    assert!(close(f64::from(g[1]), -(-100.0f64).exp(), 0.05), "{}", g[1]);
}

/// Checks every function on one set of operands against the float64 reference.
fn check_against_reference(
    x: ArrayD<f64>,
    y: ArrayD<f64>,
    w: Option<ArrayD<f64>>,
    pw: Option<ArrayD<f64>>,
) {
    let shape = x.shape().to_vec();
    let n = x.len();
    let wb = w
        .as_ref()
        .map(|w| w.broadcast(IxDyn(&shape)).unwrap().to_owned())
        .unwrap_or_else(|| ArrayD::ones(IxDyn(&shape)));
    let pwb = pw
        .as_ref()
        .map(|p| p.broadcast(IxDyn(&shape)).unwrap().to_owned())
        .unwrap_or_else(|| ArrayD::ones(IxDyn(&shape)));
    let wv = w.as_ref().map(|w| w.view());
    let pwv = pw.as_ref().map(|p| p.view());

    // BCE.
    let yc = y.mapv(|v| v.clamp(0.0, 1.0));
    let want: Vec<f64> = x
        .iter()
        .zip(yc.iter())
        .zip(wb.iter())
        .map(|((&a, &b), &c)| bce_ref(a, b) * c)
        .collect();
    let got = binary_cross_entropy(x.view(), yc.view(), wv.clone(), Reduction::None)
        .unwrap()
        .elementwise()
        .unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!(close(*g, *w, 1e-13), "{g} vs {w}");
    }
    let sum: f64 = want.iter().sum();
    let got_sum = binary_cross_entropy(x.view(), yc.view(), wv.clone(), Reduction::Sum).unwrap();
    assert!(close(got_sum.reduced().unwrap(), sum, 1e-12));
    let got_mean = binary_cross_entropy(x.view(), yc.view(), wv.clone(), Reduction::Mean).unwrap();
    assert!(close(got_mean.reduced().unwrap(), sum / n as f64, 1e-12));
    let (vg_loss, vg_grad) =
        binary_cross_entropy_value_and_grad(x.view(), yc.view(), wv.clone(), Reduction::Mean)
            .unwrap();
    assert_eq!(vg_loss, got_mean);
    let grad = binary_cross_entropy_backward(
        Some(arr0(1.0).view().into_dyn()),
        x.view(),
        yc.view(),
        wv.clone(),
        Reduction::Mean,
    )
    .unwrap();
    assert_eq!(grad, vg_grad);
    for ((g, (&a, &b)), &c) in grad.iter().zip(x.iter().zip(yc.iter())).zip(wb.iter()) {
        let want = (a - b) / ((1.0 - a) * a).max(f64::from(1e-12f32)) * c / n as f64;
        assert!(close(*g, want, 1e-13), "{g} vs {want}");
    }

    // Logits (x as logits, spread out).
    let z = x.mapv(|v| (v - 0.5) * 40.0);
    let want: Vec<f64> = z
        .iter()
        .zip(y.iter())
        .zip(wb.iter().zip(pwb.iter()))
        .map(|((&a, &b), (&c, &p))| logits_ref(a, b, p) * c)
        .collect();
    let got = binary_cross_entropy_with_logits(
        z.view(),
        y.view(),
        wv.clone(),
        pwv.clone(),
        Reduction::None,
    )
    .unwrap()
    .elementwise()
    .unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{g} vs {w}");
    }
    let g_out = Array::from_shape_vec(IxDyn(&shape), uniform(n, 99)).unwrap() + 0.5;
    let grad = binary_cross_entropy_with_logits_backward(
        Some(g_out.view()),
        z.view(),
        y.view(),
        wv.clone(),
        pwv.clone(),
        Reduction::None,
    )
    .unwrap();
    for (((&gr, &go), (&a, &b)), (&c, &p)) in grad
        .iter()
        .zip(g_out.iter())
        .zip(z.iter().zip(y.iter()))
        .zip(wb.iter().zip(pwb.iter()))
    {
        let (t1, t2) = ((1.0 - b) * sigmoid(a), p * b * sigmoid(-a));
        let want = go * c * (t1 - t2);
        // The two terms may cancel: the error is relative to their size, not the result's.
        assert!(
            (gr - want).abs() <= 1e-14 * go * c * (t1.abs() + t2.abs()) + 1e-300,
            "{gr} vs {want}"
        );
    }
    let (l, _) = binary_cross_entropy_with_logits_value_and_grad(
        z.view(),
        y.view(),
        wv,
        pwv,
        Reduction::Sum,
    )
    .unwrap();
    let sum: f64 = want.iter().sum();
    assert!(close(l.reduced().unwrap(), sum, 1e-11));
}

#[test]
fn values_match_the_reference_over_shapes_and_broadcasts() {
    let shapes: &[&[usize]] = &[
        &[],
        &[1],
        &[7],
        &[3, 5],
        &[2, 3, 4],
        &[40_000],
        &[3, 20_000],
    ];
    for (k, shape) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let x = ArrayD::from_shape_vec(IxDyn(shape), uniform(n, k as u64)).unwrap();
        let y = ArrayD::from_shape_vec(IxDyn(shape), uniform(n, 100 + k as u64)).unwrap();
        check_against_reference(x.clone(), y.clone(), None, None);
        if let Some(&c) = shape.last() {
            let w = Array1::from_vec(uniform(c, 7)).into_dyn();
            let pw = Array1::from_vec(uniform(c, 8)).mapv(|v| v * 4.0).into_dyn();
            check_against_reference(x.clone(), y.clone(), Some(w), Some(pw));
        }
        let scalar = arr0(2.5).into_dyn();
        check_against_reference(x, y, Some(scalar.clone()), Some(scalar));
    }
}

#[test]
fn every_layout_gives_the_contiguous_answer() {
    let base = Array::from_shape_vec((64, 300), uniform(64 * 300, 3)).unwrap();
    let tgt = Array::from_shape_vec((64, 300), uniform(64 * 300, 4)).unwrap();
    let want = |x: ndarray::ArrayView2<f64>, y: ndarray::ArrayView2<f64>| {
        let xc = x.as_standard_layout().into_owned();
        let yc = y.as_standard_layout().into_owned();
        binary_cross_entropy(xc.view(), yc.view(), None, Reduction::None)
            .unwrap()
            .elementwise()
            .unwrap()
    };
    let views = [
        (base.view(), tgt.view()),
        (base.t(), tgt.t()),
        (base.slice(s![..;2, ..;3]), tgt.slice(s![..;2, ..;3])),
        (base.slice(s![..;-1, ..]), tgt.slice(s![.., ..;-1])),
        (
            base.slice(s![3..40, 7..290;5]),
            tgt.slice(s![10..47, 2..285;5]),
        ),
    ];
    for (x, y) in views {
        let got = binary_cross_entropy(x, y, None, Reduction::None)
            .unwrap()
            .elementwise()
            .unwrap();
        assert_eq!(got, want(x, y));
        let sum = binary_cross_entropy(x, y, None, Reduction::Sum).unwrap();
        let direct: f64 = want(x, y).sum();
        assert!(close(sum.reduced().unwrap(), direct, 1e-12));
    }
    // Fortran order in, Fortran order out.
    let f = base.t().as_standard_layout().into_owned();
    let ft = f.t();
    let out = binary_cross_entropy(ft, tgt.view(), None, Reduction::None)
        .unwrap()
        .elementwise()
        .unwrap();
    assert!(out.t().is_standard_layout());
}

#[test]
fn zero_stride_inputs_are_read_in_place() {
    // 2^31 + 3 elements through a broadcast view: no copy, 64-bit indexing.
    let n = (1usize << 31) + 3;
    let one = Array1::from_vec(vec![0.25f32]);
    let x: ArrayView1<f32> = one.broadcast(n).unwrap();
    let t = Array1::from_vec(vec![1.0f32]);
    let y: ArrayView1<f32> = t.broadcast(n).unwrap();
    let sum = binary_cross_entropy(x, y, None, Reduction::Sum).unwrap();
    let want = n as f64 * -(0.25f32.ln() as f64);
    assert!(close(f64::from(sum.reduced().unwrap()), want, 1e-6));
}

#[test]
fn sums_are_identical_for_every_thread_count() {
    let n = 1_000_003;
    let x = Array1::from_vec(uniform(n, 11)).mapv(|v| v as f32);
    let y = Array1::from_vec(uniform(n, 12)).mapv(|v| v as f32);
    let original = bcers::get_num_threads();
    let mut results = Vec::new();
    for threads in [1, 2, 3, 5] {
        bcers::set_num_threads(threads).unwrap();
        let a = binary_cross_entropy(x.view(), y.view(), None, Reduction::Sum).unwrap();
        let b = binary_cross_entropy_with_logits(x.view(), y.view(), None, None, Reduction::Mean)
            .unwrap();
        results.push((
            a.reduced().unwrap().to_bits(),
            b.reduced().unwrap().to_bits(),
        ));
    }
    bcers::set_num_threads(original).unwrap();
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
}

#[test]
fn empty_and_zero_d_inputs() {
    let e = Array1::<f32>::zeros(0);
    let mean = binary_cross_entropy(e.view(), e.view(), None, Reduction::Mean).unwrap();
    assert!(mean.reduced().unwrap().is_nan());
    let sum = binary_cross_entropy(e.view(), e.view(), None, Reduction::Sum).unwrap();
    assert_eq!(sum.reduced(), Some(0.0));
    let none = binary_cross_entropy(e.view(), e.view(), None, Reduction::None).unwrap();
    assert_eq!(none.elementwise().unwrap().len(), 0);
    let (l, g) =
        binary_cross_entropy_value_and_grad(e.view(), e.view(), None, Reduction::Mean).unwrap();
    assert!(l.reduced().unwrap().is_nan() && g.is_empty());

    let x = arr0(0.25f64);
    let y = arr0(1.0f64);
    let l = binary_cross_entropy(x.view(), y.view(), None, Reduction::None).unwrap();
    let Loss::Elementwise(a) = l else {
        panic!("expected elementwise")
    };
    assert_eq!(a.ndim(), 0);
    assert!(close(a[()], 4f64.ln(), 1e-15));
}

#[test]
fn errors_name_the_argument() {
    let x = array![0.5f32, 0.5, 0.5];
    let y2 = Array::from_elem((3, 1), 0.5f32);
    let e = binary_cross_entropy(
        x.view().into_dyn(),
        y2.view().into_dyn(),
        None,
        Reduction::Mean,
    )
    .unwrap_err();
    assert_eq!(
        e,
        Error::TargetShape {
            input: vec![3],
            target: vec![3, 1]
        }
    );
    assert_eq!(
        e.to_string(),
        "Target size (3, 1) must be the same as input size (3,)"
    );
    let e = binary_cross_entropy_with_logits(
        x.view().into_dyn(),
        y2.view().into_dyn(),
        None,
        None,
        Reduction::Mean,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Target size (3, 1) must be the same as input size (3,)"
    );

    // A weight that would enlarge the output is refused in every reduction.
    let x = Array::from_elem((2, 3), 0.5f32);
    let w = Array::from_elem((1, 2, 3), 1.0f32);
    for r in [Reduction::None, Reduction::Mean, Reduction::Sum] {
        let e = binary_cross_entropy(x.view(), x.view(), Some(w.view().into_dyn()), r).unwrap_err();
        assert!(matches!(e, Error::Broadcast { arg: "weight", .. }), "{e}");
        let e = binary_cross_entropy_with_logits(
            x.view(),
            x.view(),
            None,
            Some(w.view().into_dyn()),
            r,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Broadcast {
                    arg: "pos_weight",
                    ..
                }
            ),
            "{e}"
        );
    }
    let w = Array::from_elem(2, 1.0f32);
    let e = binary_cross_entropy(
        x.view(),
        x.view(),
        Some(w.view().into_dyn()),
        Reduction::Sum,
    )
    .unwrap_err();
    assert!(e
        .to_string()
        .starts_with("weight of shape (2,) cannot be broadcast to the input's shape (2, 3)"));

    // Range checks, NaN included, in every function; the first bad element decides, and the
    // error says which element it is and its value.
    for (x, y, arg, index, value) in [
        (array![0.5f32, 1.5], array![0.5f32, 0.5], "input", 1, "1.5"),
        (
            array![0.5f32, f32::NAN],
            array![0.5f32, 0.5],
            "input",
            1,
            "NaN",
        ),
        (
            array![0.5f32, 0.5],
            array![-0.1f32, 0.5],
            "target",
            0,
            "-0.1",
        ),
        (
            array![0.5f32, 2.0],
            array![-0.1f32, 0.5],
            "target",
            0,
            "-0.1",
        ),
        (array![2.0f32, 0.5], array![0.5f32, -0.1], "input", 0, "2.0"),
        (
            array![0.5f32, 1e-30],
            array![0.5f32, -1e20],
            "target",
            1,
            "-1e+20",
        ),
        (
            array![0.5f32, 0.5],
            array![-1e-5f32, 0.5],
            "target",
            0,
            "-1e-05",
        ),
        (
            array![0.5f32, -1.25e-3],
            array![0.5f32, 0.5],
            "input",
            1,
            "-0.00125",
        ),
        (
            array![0.5f32, 123456.7],
            array![0.5f32, 0.5],
            "input",
            1,
            "123456.7",
        ),
        (
            array![0.5f32, 0.5],
            array![f32::NEG_INFINITY, 0.5],
            "target",
            0,
            "-inf",
        ),
    ] {
        let want = Error::OutOfRange {
            arg,
            index: vec![index],
            value: value.to_owned(),
        };
        for r in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            assert_eq!(
                binary_cross_entropy(x.view(), y.view(), None, r).unwrap_err(),
                want
            );
            assert_eq!(
                binary_cross_entropy_value_and_grad(x.view(), y.view(), None, r).unwrap_err(),
                want
            );
        }
        let g = arr0(1.0f32);
        assert_eq!(
            binary_cross_entropy_backward(
                Some(g.view().into_dyn()),
                x.view(),
                y.view(),
                None,
                Reduction::Mean
            )
            .unwrap_err(),
            want
        );
    }
    assert_eq!(
        Error::OutOfRange {
            arg: "input",
            index: vec![2, 0],
            value: "1.5".to_owned()
        }
        .to_string(),
        "all elements of input should be between 0 and 1; input[2, 0] is 1.5"
    );
    // The index of a 2-D array, in C order whatever the memory order.
    let x = array![[0.5f64, 0.5], [1e300, 0.5]];
    let e = binary_cross_entropy(x.t(), x.t(), None, Reduction::Sum).unwrap_err();
    assert_eq!(
        e.to_string(),
        "all elements of input should be between 0 and 1; input[0, 1] is 1e+300"
    );
    let e = binary_cross_entropy(
        arr0(-0.0f64 - 1.0).view(),
        arr0(0.5).view(),
        None,
        Reduction::Sum,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "all elements of input should be between 0 and 1; input[()] is -1.0"
    );

    // grad_output: a scalar for mean and sum; broadcastable for none.
    let x = array![0.5f32, 0.5];
    let g = array![1.0f32, 1.0];
    let e = binary_cross_entropy_backward(
        Some(g.view().into_dyn()),
        x.view(),
        x.view(),
        None,
        Reduction::Mean,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "grad_output must be a scalar for reduction='mean', got shape (2,)"
    );
    let g3 = array![1.0f32, 1.0, 1.0];
    let e = binary_cross_entropy_backward(
        Some(g3.view().into_dyn()),
        x.view(),
        x.view(),
        None,
        Reduction::None,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        Error::Broadcast {
            arg: "grad_output",
            ..
        }
    ));

    // Reduction names and the thread count.
    assert_eq!("sum".parse::<Reduction>(), Ok(Reduction::Sum));
    assert_eq!(
        "avg".parse::<Reduction>().unwrap_err().to_string(),
        "avg is not a valid value for reduction"
    );
    assert_eq!(
        bcers::set_num_threads(0),
        Err(Error::InvalidThreadCount { requested: 0 })
    );
    assert_eq!(
        bcers::set_num_threads(bcers::MAX_THREADS + 1),
        Err(Error::InvalidThreadCount { requested: 1025 })
    );
    assert_eq!(
        Error::InvalidThreadCount { requested: 0 }.to_string(),
        "the number of threads must be from 1 to 1024, got 0"
    );
}

#[test]
fn a_zero_factor_times_an_infinite_one_is_zero_not_nan() {
    // pos_weight = inf: pos_weight * log1p(exp(-x)) grows without bound except at x = +inf,
    // where the term is 0 * inf (its limit, 0).
    let x = array![0.5f64, 0.0, -2.0, f64::INFINITY, f64::NEG_INFINITY];
    let y = Array1::from_elem(5, 1.0f64);
    let pw = arr0(f64::INFINITY).into_dyn();
    let (loss, grad) = binary_cross_entropy_with_logits_value_and_grad(
        x.view(),
        y.view(),
        None,
        Some(pw.view()),
        Reduction::None,
    )
    .unwrap();
    let inf = f64::INFINITY;
    assert_eq!(
        loss.elementwise().unwrap().to_vec(),
        vec![inf, inf, inf, 0.0, inf]
    );
    assert_eq!(grad.to_vec(), vec![-inf, -inf, -inf, 0.0, -inf]);

    // pos_weight * target overflows float32: the elements' values overflow too.
    let x = array![0.5f32, 0.0, -1.0];
    let y = Array1::from_elem(3, 2.0f32);
    let pw = arr0(3e38f32).into_dyn();
    let loss = binary_cross_entropy_with_logits(
        x.view(),
        y.view(),
        None,
        Some(pw.view()),
        Reduction::None,
    )
    .unwrap()
    .elementwise()
    .unwrap();
    assert!(loss.iter().all(|v| *v == f32::INFINITY), "{loss}");

    // A zero weight on an infinite loss, an infinite weight on a zero loss: 0 either way.
    let x = array![f64::INFINITY, f64::NEG_INFINITY, 1.0];
    let y = array![0.0f64, 1.0, 0.5];
    let w = array![0.0f64, 0.0, 1.0].into_dyn();
    let (loss, grad) = binary_cross_entropy_with_logits_value_and_grad(
        x.view(),
        y.view(),
        Some(w.view()),
        None,
        Reduction::None,
    )
    .unwrap();
    let loss = loss.elementwise().unwrap();
    assert_eq!((loss[0], loss[1], grad[0], grad[1]), (0.0, 0.0, 0.0, 0.0));
    let p = array![0.0f64, 1.0];
    let winf = array![f64::INFINITY, f64::INFINITY].into_dyn();
    let bce = binary_cross_entropy(p.view(), p.view(), Some(winf.view()), Reduction::Sum).unwrap();
    assert_eq!(bce.reduced(), Some(0.0));
    // NaN is never hidden.
    let nan = binary_cross_entropy_with_logits(
        array![f64::NAN].view(),
        array![1.0f64].view(),
        Some(array![0.0f64].into_dyn().view()),
        None,
        Reduction::Sum,
    )
    .unwrap();
    assert!(nan.reduced().unwrap().is_nan());
}

#[test]
fn an_output_too_large_for_memory_is_an_error_not_an_abort() {
    // 2^60 elements of a broadcast input: its output can never be allocated.
    let one = arr0(0.5f64);
    let huge = one.broadcast(1usize << 60).unwrap();
    let e = binary_cross_entropy(huge, huge, None, Reduction::None).unwrap_err();
    assert_eq!(
        e,
        Error::OutOfMemory {
            what: "the output",
            bytes: 1 << 63
        }
    );
    assert_eq!(
        e.to_string(),
        "out of memory: could not allocate 9223372036854775808 bytes for the output"
    );
    let e = binary_cross_entropy_with_logits_value_and_grad(huge, huge, None, None, Reduction::Sum)
        .unwrap_err();
    assert!(matches!(e, Error::OutOfMemory { .. }), "{e}");
    let e = binary_cross_entropy_backward(None, huge, huge, None, Reduction::Mean).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory { .. }), "{e}");
}

#[test]
fn grad_output_none_means_one() {
    let x = array![0.2f64, 0.7, 0.9];
    let y = array![0.0f64, 1.0, 0.5];
    for r in [Reduction::None, Reduction::Mean, Reduction::Sum] {
        let one = if r == Reduction::None {
            Array::from_elem(3, 1.0f64).into_dyn()
        } else {
            arr0(1.0f64).into_dyn()
        };
        assert_eq!(
            binary_cross_entropy_backward(None, x.view(), y.view(), None, r).unwrap(),
            binary_cross_entropy_backward(Some(one.view()), x.view(), y.view(), None, r).unwrap()
        );
        let (_, grad) =
            binary_cross_entropy_with_logits_value_and_grad(x.view(), y.view(), None, None, r)
                .unwrap();
        assert_eq!(
            binary_cross_entropy_with_logits_backward(None, x.view(), y.view(), None, None, r)
                .unwrap(),
            grad
        );
    }
}
