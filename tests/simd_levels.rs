//! Every SIMD level this processor has gives the scalar reference's values (to a few ulp).
//! The level is process-wide: each test holds the settings lock while it runs.

#[path = "support/globals.rs"]
mod globals;
#[path = "support/random.rs"]
mod random;
use bcers::{binary_cross_entropy, binary_cross_entropy_with_logits_value_and_grad, Reduction};
use ndarray::Array1;
use random::uniform;

#[test]
fn every_simd_level_agrees_with_the_scalar_reference() {
    let _settings = globals::hold();
    let n = 5_003;
    let x = Array1::from_vec(uniform(n, 21)).mapv(|v| v as f32);
    let y = Array1::from_vec(uniform(n, 22)).mapv(|v| v as f32);
    let w = Array1::from_vec(uniform(n, 23)).mapv(|v| v as f32);
    let run = || {
        let a = binary_cross_entropy(
            x.view(),
            y.view(),
            Some(w.view().into_dyn()),
            Reduction::None,
        )
        .unwrap()
        .elementwise()
        .unwrap();
        let z = x.mapv(|v| (v - 0.5) * 30.0);
        let (b, g) = binary_cross_entropy_with_logits_value_and_grad(
            z.view(),
            y.view(),
            None,
            Some(w.view().into_dyn()),
            Reduction::None,
        )
        .unwrap();
        (a, b.elementwise().unwrap(), g)
    };
    bcers::set_simd_level(Some(bcers::SimdLevel::Scalar)).unwrap();
    let reference = run();
    for level in bcers::available_simd_levels() {
        bcers::set_simd_level(Some(level)).unwrap();
        let got = run();
        // The losses have no cancelling terms: a few ulp of the result.
        for (r, g) in [(&reference.0, &got.0), (&reference.1, &got.1)] {
            for (a, b) in r.iter().zip(g.iter()) {
                let ulps = (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs();
                assert!(ulps <= 4, "{level}: {a} vs {b}");
            }
        }
        // The gradient (1 - y) sigmoid(x) - pw y sigmoid(-x) may cancel: a few ulp of its
        // terms, which are at most 1 + pw <= 2 here.
        for (a, b) in reference.2.iter().zip(got.2.iter()) {
            assert!((a - b).abs() <= 8.0 * f32::EPSILON, "{level}: {a} vs {b}");
        }
    }
    bcers::set_simd_level(None).unwrap();
}

/// The range check at every level: each value in or out of [0, 1] (signed zeros, subnormals,
/// the neighbours of 0 and 1, infinities, NaNs of both signs) is classified the same, at every
/// position of a vector and of its tail.
fn range_check_at_every_level<F>(valid: &[F], invalid: &[F])
where
    F: bcers::Float,
{
    let n = 37;
    let half = F::from_f64(0.5);
    for level in bcers::available_simd_levels() {
        bcers::set_simd_level(Some(level)).unwrap();
        for &v in valid.iter().chain(invalid) {
            let ok = valid.iter().any(|u| u.to_bits() == v.to_bits());
            for p in 0..n {
                let mut a = Array1::from_elem(n, half);
                a[p] = v;
                let b = Array1::from_elem(n, half);
                for (x, y, arg) in [(&a, &b, "input"), (&b, &a, "target")] {
                    for r in [Reduction::None, Reduction::Mean] {
                        let got = binary_cross_entropy(x.view(), y.view(), None, r);
                        if ok {
                            assert!(got.is_ok(), "{level}: {v:?} at {p} as {arg} refused");
                        } else {
                            assert!(
                                matches!(
                                    got.unwrap_err(),
                                    bcers::Error::OutOfRange { arg: a, index, .. }
                                        if a == arg && index == vec![p]
                                ),
                                "{level}: {v:?} at {p}"
                            );
                        }
                    }
                }
            }
        }
    }
    bcers::set_simd_level(None).unwrap();
}

#[test]
fn range_check_is_exact_at_every_level() {
    let _settings = globals::hold();
    let tiny = f32::from_bits(1);
    range_check_at_every_level::<f32>(
        &[
            0.0,
            -0.0,
            1.0,
            tiny,
            f32::MIN_POSITIVE,
            0.5,
            1.0 - f32::EPSILON / 2.0,
        ],
        &[
            -tiny,
            -1e-30,
            -1.0,
            1.0 + f32::EPSILON,
            2.0,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
        ],
    );
    let tiny = f64::from_bits(1);
    range_check_at_every_level::<f64>(
        &[
            0.0,
            -0.0,
            1.0,
            tiny,
            f64::MIN_POSITIVE,
            0.5,
            1.0 - f64::EPSILON / 2.0,
        ],
        &[
            -tiny,
            -1e-300,
            -1.0,
            1.0 + f64::EPSILON,
            2.0,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
        ],
    );
}
