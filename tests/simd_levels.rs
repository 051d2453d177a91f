//! Every SIMD level this processor has gives the scalar reference's values (to a few ulp).
//! In a test binary of its own: the level is process-wide.

#[path = "support/random.rs"]
mod random;
use bcers::{binary_cross_entropy, binary_cross_entropy_with_logits_value_and_grad, Reduction};
use ndarray::Array1;
use random::uniform;

#[test]
fn every_simd_level_agrees_with_the_scalar_reference() {
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
