//! The CPU sums (`sum`, `mean`, `weighted_mean`, full or per axis) are exact until rounded once:
//! they equal a correctly rounded reference sum of the per-element values, and are bitwise
//! identical across thread counts, permutations of the elements and layouts of the operands.
//!
//! The thread count is global: these tests live in their own binary, and each sets it under a
//! lock.

#[path = "support/fsum.rs"]
mod fsum;
#[path = "support/globals.rs"]
mod globals;
#[path = "support/random.rs"]
mod random;
use bcers::{Float, LossKind, Reduction, Request};
use fsum::fsum;
use ndarray::{s, Array1, Array2, ArrayD, ArrayView2, Axis, ShapeBuilder};
use random::uniform;

/// Operands of shape `shape`: probabilities in `(0, 1)`, targets in `[0, 1]`, weights in
/// `[0, 2)` and a mask keeping about 3 in 4.
struct Data<T> {
    x: ArrayD<T>,
    y: ArrayD<T>,
    w: ArrayD<T>,
    keep: ArrayD<bool>,
}

fn data<T: Float>(shape: &[usize], seed: u64) -> Data<T> {
    let n: usize = shape.iter().product();
    let make = |v: Vec<f64>| ArrayD::from_shape_vec(shape, v).unwrap();
    let x = uniform(n, seed).into_iter().map(|v| v * 0.998 + 0.001);
    Data {
        x: make(x.collect()).mapv(T::from_f64),
        y: make(uniform(n, seed + 1)).mapv(T::from_f64),
        w: make(uniform(n, seed + 2)).mapv(|v| T::from_f64(2.0 * v)),
        keep: make(uniform(n, seed + 3)).mapv(|v| v < 0.75),
    }
}

/// The four reductions this file checks: sum, mean, weighted mean, masked mean.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Sum,
    Mean,
    WeightedMean,
    MaskedMean,
}
const KINDS: [Kind; 4] = [Kind::Sum, Kind::Mean, Kind::WeightedMean, Kind::MaskedMean];

fn request<'a, T: Float>(d: &'a Data<T>, kind: Kind) -> Request<'a, T, ndarray::IxDyn> {
    let r = Request::new(LossKind::Bce, d.x.view(), d.y.view());
    match kind {
        Kind::Sum => r.reduction(Reduction::Sum),
        Kind::Mean => r.reduction(Reduction::Mean),
        Kind::WeightedMean => r.weight(d.w.view()).reduction(Reduction::WeightedMean),
        Kind::MaskedMean => r.mask(d.keep.view()).reduction(Reduction::Mean),
    }
}

/// The reduced values over `axis` (`None`: every axis, as a 0-d array).
fn reduce<T: Float>(d: &Data<T>, kind: Kind, axis: Option<&[isize]>) -> ArrayD<T> {
    let r = request(d, kind);
    match axis {
        None => ndarray::arr0(r.forward().unwrap().reduced().unwrap()).into_dyn(),
        Some(axis) => r.axis(axis).forward().unwrap().axes().unwrap(),
    }
}

/// The reference: the per-element values (as the call computes them, weighted and masked),
/// summed exactly and rounded once per slot, divided by the exactly summed denominator.
fn reference<T: Float>(d: &Data<T>, kind: Kind, axis: Option<usize>) -> ArrayD<T> {
    let mut elementwise = Request::new(LossKind::Bce, d.x.view(), d.y.view());
    elementwise = match kind {
        Kind::WeightedMean => elementwise.weight(d.w.view()),
        Kind::MaskedMean => elementwise.mask(d.keep.view()),
        _ => elementwise,
    };
    let v = elementwise
        .reduction(Reduction::None)
        .forward()
        .unwrap()
        .elementwise()
        .unwrap()
        .mapv(|v| v.to_f64());
    let w = d.w.mapv(|v| v.to_f64());
    let k = d.keep.mapv(|k| if k { 1.0 } else { 0.0 });
    let one = |v: ndarray::ArrayViewD<'_, f64>,
               w: ndarray::ArrayViewD<'_, f64>,
               k: ndarray::ArrayViewD<'_, f64>| {
        let sum = fsum(v.iter().copied());
        let value = match kind {
            Kind::Sum => sum,
            Kind::Mean => sum / v.len() as f64,
            Kind::WeightedMean => sum / fsum(w.iter().copied()),
            Kind::MaskedMean => sum / fsum(k.iter().copied()),
        };
        T::from_f64(value)
    };
    match axis {
        None => ndarray::arr0(one(v.view(), w.view(), k.view())).into_dyn(),
        Some(ax) => {
            let lanes: Vec<T> = v
                .axis_iter(Axis(ax))
                .zip(w.axis_iter(Axis(ax)))
                .zip(k.axis_iter(Axis(ax)))
                .map(|((v, w), k)| one(v, w, k))
                .collect();
            Array1::from(lanes).into_dyn()
        }
    }
}

fn same_bits<T: Float>(a: &ArrayD<T>, b: &ArrayD<T>) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b.iter())
            .all(|(p, q)| p.to_f64().to_bits() == q.to_f64().to_bits())
}

/// Every reduction of `d` over every axis of its 2-d shape and over all, against the reference.
fn check_against_reference<T: Float>(d: &Data<T>) {
    for kind in KINDS {
        let full = reduce(d, kind, None);
        let want = reference(d, kind, None);
        assert!(
            same_bits(&full, &want),
            "{kind:?} of {:?}: {full} != {want}",
            d.x.shape()
        );
        for ax in 0..d.x.ndim() {
            // Reducing over `ax` keeps the other axis: the reference's slots are its lanes.
            let kept = 1 - ax;
            let got = reduce(d, kind, Some(&[ax as isize]));
            let want = reference(d, kind, Some(kept));
            assert!(
                same_bits(&got, &want),
                "{kind:?} over axis {ax} of {:?}",
                d.x.shape()
            );
        }
    }
}

#[test]
fn sums_are_correctly_rounded_float64() {
    // Shapes whose slots are shorter than a chunk, span several, and split across them; sizes
    // above and below the parallel threshold.
    for (shape, seed) in [
        ([1, 1], 1),
        ([3, 7], 2),
        ([300, 250], 3),
        ([5, 40_009], 4),
        ([70_001, 3], 5),
    ] {
        check_against_reference(&data::<f64>(&shape, seed));
    }
}

#[test]
fn sums_are_correctly_rounded_float32() {
    for (shape, seed) in [([2, 5], 6), ([400, 333], 7), ([3, 50_001], 8)] {
        check_against_reference(&data::<f32>(&shape, seed));
    }
}

/// Every reduction of `d` (full, over each axis), in a fixed order.
fn all_reductions<T: Float>(d: &Data<T>) -> Vec<ArrayD<T>> {
    let mut out = Vec::new();
    for kind in KINDS {
        out.push(reduce(d, kind, None));
        for ax in 0..d.x.ndim() {
            out.push(reduce(d, kind, Some(&[ax as isize])));
        }
    }
    out
}

fn all_same<T: Float>(a: &[ArrayD<T>], b: &[ArrayD<T>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(p, q)| same_bits(p, q))
}

#[test]
fn thread_counts_do_not_change_a_bit() {
    let _settings = globals::hold();
    let before = bcers::get_num_threads();
    let d64 = data::<f64>(&[9, 33_331], 11);
    let d32 = data::<f32>(&[40_000, 7], 12);
    bcers::set_num_threads(1).unwrap();
    let (one64, one32) = (all_reductions(&d64), all_reductions(&d32));
    for threads in [2, 3, 4, 7] {
        bcers::set_num_threads(threads).unwrap();
        assert!(all_same(&one64, &all_reductions(&d64)), "{threads} threads");
        assert!(all_same(&one32, &all_reductions(&d32)), "{threads} threads");
    }
    bcers::set_num_threads(before).unwrap();
}

/// `d` with each row's elements permuted (the same permutation for every operand).
fn permute_rows<T: Float>(d: &Data<T>, seed: u64) -> Data<T> {
    let (rows, cols) = (d.x.shape()[0], d.x.shape()[1]);
    let r = uniform(rows * cols, seed);
    let mut out = Data {
        x: d.x.clone(),
        y: d.y.clone(),
        w: d.w.clone(),
        keep: d.keep.clone(),
    };
    for i in 0..rows {
        let mut order: Vec<usize> = (0..cols).collect();
        // Fisher-Yates from the random numbers of this row.
        for j in (1..cols).rev() {
            let k = (r[i * cols + j] * (j + 1) as f64) as usize;
            order.swap(j, k.min(j));
        }
        for (j, &from) in order.iter().enumerate() {
            out.x[[i, j]] = d.x[[i, from]];
            out.y[[i, j]] = d.y[[i, from]];
            out.w[[i, j]] = d.w[[i, from]];
            out.keep[[i, j]] = d.keep[[i, from]];
        }
    }
    out
}

#[test]
fn permuting_the_elements_does_not_change_a_bit() {
    for (shape, seed) in [([1, 200_003], 21), ([6, 30_000], 22), ([500, 41], 23)] {
        // float64: the sums' last bits are the result's (float32 results would hide them).
        let d = data::<f64>(&shape, seed);
        let p = permute_rows(&d, seed + 100);
        // Full reductions, and the per-row ones (over axis 1): each row's elements are the same.
        for kind in KINDS {
            assert!(
                same_bits(&reduce(&d, kind, None), &reduce(&p, kind, None)),
                "{kind:?} of {shape:?}"
            );
            assert!(
                same_bits(&reduce(&d, kind, Some(&[1])), &reduce(&p, kind, Some(&[1]))),
                "{kind:?} over axis 1 of {shape:?}"
            );
        }
    }
}

/// The same values in another memory layout: Fortran order.
fn fortran<T: Clone>(a: &ArrayD<T>) -> ArrayD<T> {
    let v: ArrayView2<'_, T> = a.view().into_dimensionality().unwrap();
    Array2::from_shape_fn(v.dim().f(), |(i, j)| v[[i, j]].clone()).into_dyn()
}

/// The same values in another memory layout: both strides negative.
fn reversed<T: Clone>(a: &ArrayD<T>) -> ArrayD<T> {
    // Stored reversed, viewed reversed again: the values of `a`, with negative strides.
    let mut back = a.slice(s![..;-1, ..;-1]).as_standard_layout().into_owned();
    back.invert_axis(Axis(0));
    back.invert_axis(Axis(1));
    back.into_dyn()
}

#[test]
fn layouts_do_not_change_a_bit() {
    for (shape, seed) in [([3, 40_000], 31), ([2_000, 37], 32), ([257, 255], 33)] {
        let d = data::<f64>(&shape, seed);
        let c_order = all_reductions(&d);
        for relayout in [fortran::<f64> as fn(&ArrayD<f64>) -> ArrayD<f64>, reversed] {
            let other = Data {
                x: relayout(&d.x),
                y: relayout(&d.y),
                w: relayout(&d.w),
                keep: if shape[0] % 2 == 0 {
                    fortran(&d.keep)
                } else {
                    reversed(&d.keep)
                },
            };
            assert_eq!(other.x, d.x);
            assert!(other.x.as_slice().is_none(), "a C-order copy");
            assert!(all_same(&c_order, &all_reductions(&other)), "{shape:?}");
        }
    }
}

#[test]
fn request_sums_of_parts_merge_into_the_sums_of_the_whole() {
    use bcers::accumulate::LossSums;
    let n = 70_001;
    let x: Vec<f64> = uniform(n, 21).iter().map(|v| 0.001 + 0.998 * v).collect();
    let y: Vec<f64> = uniform(n, 22).iter().map(|v| v.round()).collect();
    let w: Vec<f64> = uniform(n, 23).iter().map(|v| 0.5 + v).collect();
    let mask: Vec<bool> = uniform(n, 24).iter().map(|v| *v < 0.9).collect();
    let (x, y, w, mask) = (
        Array1::from(x),
        Array1::from(y),
        Array1::from(w),
        Array1::from(mask),
    );
    let sums = |a: usize, b: usize| -> LossSums {
        let r = Request::new(LossKind::Bce, x.slice(s![a..b]), y.slice(s![a..b]))
            .weight(w.slice(s![a..b]))
            .mask(mask.slice(s![a..b]))
            .label_smoothing(0.1);
        let mut v = r.sums().unwrap();
        assert_eq!(v.len(), 1);
        v.pop().unwrap()
    };
    let whole = sums(0, n);
    for cuts in [
        vec![0, 1, n],
        vec![0, 5000, 5001, 40_000, n],
        vec![0, n / 2, n],
    ] {
        let mut parts: Vec<LossSums> = cuts.windows(2).map(|c| sums(c[0], c[1])).collect();
        parts.reverse();
        let mut total = LossSums::new();
        for p in &parts {
            total.merge(&LossSums::from_bytes(&p.to_bytes()).unwrap());
        }
        assert_eq!(total, whole, "cuts {cuts:?}");
    }
    // The reduced losses are finished from these sums.
    let r = Request::new(LossKind::Bce, x.view(), y.view())
        .weight(w.view())
        .mask(mask.view())
        .label_smoothing(0.1);
    let kept = mask.iter().filter(|&&k| k).count() as u64;
    assert_eq!(whole.count, kept);
    let mean = r.clone().reduction(Reduction::Mean).forward().unwrap();
    assert_eq!(mean.reduced(), Some(whole.values.finish() / kept as f64));
    let wm = r
        .clone()
        .reduction(Reduction::WeightedMean)
        .forward()
        .unwrap();
    assert_eq!(
        wm.reduced(),
        Some(whole.values.finish() / whole.weights.finish())
    );
    let sum = r.reduction(Reduction::Sum).forward().unwrap();
    assert_eq!(sum.reduced(), Some(whole.values.finish()));
    // Per axis: one per slot, in C order of the reduced shape.
    let x2 = x
        .slice(s![..70_000])
        .into_shape_with_order((700, 100))
        .unwrap();
    let y2 = y
        .slice(s![..70_000])
        .into_shape_with_order((700, 100))
        .unwrap();
    let per_row = Request::new(LossKind::Bce, x2, y2)
        .axis(&[1])
        .sums()
        .unwrap();
    assert_eq!(per_row.len(), 700);
    let rows = Request::new(LossKind::Bce, x2, y2)
        .axis(&[1])
        .reduction(Reduction::Sum)
        .forward()
        .unwrap()
        .axes()
        .unwrap();
    for (s, r) in per_row.iter().zip(rows.iter()) {
        assert_eq!(s.values.finish(), *r);
        assert_eq!(s.count, 100);
    }
}
