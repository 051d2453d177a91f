//! The GPU path against the CPU path: values, broadcasting, edge values, errors, chunking.
//!
//! Without a GPU adapter every test prints why and passes, unless `BCERS_REQUIRE_GPU=1` (CI
//! sets it), where they fail.
#![cfg(feature = "gpu")]

#[path = "support/random.rs"]
mod random;
use bcers::gpu::{self, Gpu, GpuArray, GpuLoss, GpuOptions};
use bcers::{Error, Loss, Reduction};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

/// The process-wide device, or `None` (after saying why) when there is none and none is
/// required.
fn device() -> Option<Gpu> {
    match Gpu::get() {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("BCERS_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("BCERS_REQUIRE_GPU=1 but the GPU path is unavailable: {e}");
            }
            eprintln!("skipping the GPU test: {e}");
            None
        }
    }
}

/// A device with tiny buffers (64 elements) and dispatches (3 workgroups a side), so small
/// arrays take many buffers, passes and 2-D dispatches; and one output slot, so that a call
/// with several array outputs takes several dispatches (as on a device with 8 storage
/// bindings).
fn tiny_device() -> Option<Gpu> {
    device()?;
    Some(
        Gpu::with_options(GpuOptions {
            max_binding_bytes: Some(64 * 4),
            max_workgroups_per_dimension: Some(3),
            max_output_slots: Some(1),
        })
        .expect("a second device on the same adapter"),
    )
}

/// A deterministic pseudo-random sequence in [0, 1).
/// `n` numbers in `[0, 1)`, as `f32`.
fn uniform(n: usize, seed: u64) -> Vec<f32> {
    random::uniform(n, seed)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

fn array(shape: &[usize], seed: u64, lo: f32, hi: f32) -> ArrayD<f32> {
    let n = shape.iter().product();
    let v = uniform(n, seed)
        .into_iter()
        .map(|u| lo + (hi - lo) * u)
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

fn up(gpu: &Gpu, a: &ArrayD<f32>) -> GpuArray {
    GpuArray::from_view(gpu, a.view()).unwrap()
}

fn down(a: &GpuArray) -> ArrayD<f32> {
    a.to_array().unwrap()
}

/// Element by element within `rtol` (relative to the larger magnitude) or `atol`; infinities
/// and NaN must match exactly.
fn assert_close(gpu: &ArrayD<f32>, cpu: &ArrayD<f32>, rtol: f32, atol: f32, what: &str) {
    assert_eq!(gpu.shape(), cpu.shape(), "{what}: shape");
    for (i, (&g, &c)) in gpu.iter().zip(cpu.iter()).enumerate() {
        let ok = if c.is_nan() || g.is_nan() {
            c.is_nan() && g.is_nan()
        } else if c.is_infinite() || g.is_infinite() {
            c == g
        } else {
            (g - c).abs() <= rtol * g.abs().max(c.abs()) + atol
        };
        assert!(ok, "{what}: element {i}: gpu {g:e}, cpu {c:e}");
    }
}

fn assert_scalar(gpu: f32, cpu: f32, what: &str) {
    let ok = (gpu.is_nan() && cpu.is_nan())
        || gpu == cpu
        || (gpu - cpu).abs() <= 2e-5 * cpu.abs().max(gpu.abs());
    assert!(ok, "{what}: gpu {gpu:e}, cpu {cpu:e}");
}

const REDUCTIONS: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

/// One call's operands on the host.
struct Case {
    x: ArrayD<f32>,
    y: ArrayD<f32>,
    w: Option<ArrayD<f32>>,
    pw: Option<ArrayD<f32>>,
}

impl Case {
    fn probabilities(shape: &[usize], seed: u64) -> Self {
        Case {
            x: array(shape, seed, 0.0, 1.0),
            y: array(shape, seed + 1, 0.0, 1.0),
            w: None,
            pw: None,
        }
    }

    fn logits(shape: &[usize], seed: u64) -> Self {
        Case {
            x: array(shape, seed, -8.0, 8.0),
            y: array(shape, seed + 1, 0.0, 1.0),
            w: None,
            pw: None,
        }
    }

    fn weight(mut self, shape: &[usize]) -> Self {
        self.w = Some(array(shape, 77, 0.0, 2.0));
        self
    }

    fn pos_weight(mut self, shape: &[usize]) -> Self {
        self.pw = Some(array(shape, 78, 0.5, 3.0));
        self
    }

    fn w(&self) -> Option<ArrayViewD<'_, f32>> {
        self.w.as_ref().map(|w| w.view())
    }

    fn pw(&self) -> Option<ArrayViewD<'_, f32>> {
        self.pw.as_ref().map(|w| w.view())
    }

    /// Forward, backward (grad_output 1 and `g`), value_and_grad on both paths, compared.
    fn check(&self, gpu: &Gpu, logits: bool, g: Option<&ArrayD<f32>>, what: &str) {
        let (x, y) = (up(gpu, &self.x), up(gpu, &self.y));
        let w = self.w.as_ref().map(|a| up(gpu, a));
        let pw = self.pw.as_ref().map(|a| up(gpu, a));
        for reduction in REDUCTIONS {
            let what = format!("{what} {reduction}");
            // Forward.
            let (cpu, dev) = if logits {
                (
                    bcers::binary_cross_entropy_with_logits(
                        self.x.view(),
                        self.y.view(),
                        self.w(),
                        self.pw(),
                        reduction,
                    )
                    .unwrap(),
                    gpu::binary_cross_entropy_with_logits(
                        &x,
                        &y,
                        w.as_ref(),
                        pw.as_ref(),
                        reduction,
                    )
                    .unwrap(),
                )
            } else {
                (
                    bcers::binary_cross_entropy(self.x.view(), self.y.view(), self.w(), reduction)
                        .unwrap(),
                    gpu::binary_cross_entropy(&x, &y, w.as_ref(), reduction).unwrap(),
                )
            };
            compare_loss(&dev, &cpu, &format!("{what} forward"));

            // Backward, with grad_output 1 (None) and a given one.
            let ones = ArrayD::from_elem(IxDyn(&[]), 1.0f32);
            let scalar = ArrayD::from_elem(IxDyn(&[]), 2.5f32);
            let given = match (reduction, g) {
                (Reduction::None, Some(g)) => g.clone(),
                _ => scalar,
            };
            for (cpu_g, dev_g) in [(&ones, None), (&given, Some(up(gpu, &given)))] {
                let cpu = if logits {
                    bcers::binary_cross_entropy_with_logits_backward(
                        Some(cpu_g.view()),
                        self.x.view(),
                        self.y.view(),
                        self.w(),
                        self.pw(),
                        reduction,
                    )
                } else {
                    bcers::binary_cross_entropy_backward(
                        Some(cpu_g.view()),
                        self.x.view(),
                        self.y.view(),
                        self.w(),
                        reduction,
                    )
                }
                .unwrap();
                let dev = if logits {
                    gpu::binary_cross_entropy_with_logits_backward(
                        dev_g.as_ref(),
                        &x,
                        &y,
                        w.as_ref(),
                        pw.as_ref(),
                        reduction,
                    )
                } else {
                    gpu::binary_cross_entropy_backward(
                        dev_g.as_ref(),
                        &x,
                        &y,
                        w.as_ref(),
                        reduction,
                    )
                }
                .unwrap();
                assert_close(
                    &down(&dev),
                    &cpu,
                    2e-5,
                    1e-7,
                    &format!("{what} backward g={:?}", cpu_g.shape()),
                );
            }

            // Value and gradient.
            let (cpu_l, cpu_g) = if logits {
                bcers::binary_cross_entropy_with_logits_value_and_grad(
                    self.x.view(),
                    self.y.view(),
                    self.w(),
                    self.pw(),
                    reduction,
                )
            } else {
                bcers::binary_cross_entropy_value_and_grad(
                    self.x.view(),
                    self.y.view(),
                    self.w(),
                    reduction,
                )
            }
            .unwrap();
            let (dev_l, dev_g) = if logits {
                gpu::binary_cross_entropy_with_logits_value_and_grad(
                    &x,
                    &y,
                    w.as_ref(),
                    pw.as_ref(),
                    reduction,
                )
            } else {
                gpu::binary_cross_entropy_value_and_grad(&x, &y, w.as_ref(), reduction)
            }
            .unwrap();
            compare_loss(&dev_l, &cpu_l, &format!("{what} value_and_grad loss"));
            assert_close(
                &down(&dev_g),
                &cpu_g,
                2e-5,
                1e-7,
                &format!("{what} value_and_grad grad"),
            );
        }
    }
}

fn compare_loss(dev: &GpuLoss, cpu: &Loss<f32, IxDyn>, what: &str) {
    match (dev, cpu) {
        (GpuLoss::Reduced(d), Loss::Reduced(c)) => assert_scalar(*d, *c, what),
        (GpuLoss::Elementwise(d), Loss::Elementwise(c)) => {
            assert_close(&down(d), c, 2e-5, 1e-6, what)
        }
        _ => panic!("{what}: different kinds of result"),
    }
}

const SHAPES: [&[usize]; 7] = [&[], &[0], &[1], &[7], &[3, 5], &[2, 3, 4], &[2, 1, 3, 5]];

#[test]
fn every_function_matches_the_cpu_over_shapes() {
    let Some(gpu) = device() else { return };
    for (i, shape) in SHAPES.iter().enumerate() {
        let seed = 10 * i as u64;
        Case::probabilities(shape, seed).check(&gpu, false, None, &format!("bce {shape:?}"));
        Case::logits(shape, seed).check(&gpu, true, None, &format!("logits {shape:?}"));
    }
    // Enough elements for many workgroups and partial sums.
    Case::probabilities(&[1000, 37], 5).check(&gpu, false, None, "bce (1000, 37)");
    Case::logits(&[1000, 37], 6).check(&gpu, true, None, "logits (1000, 37)");
}

/// Shapes that broadcast to `(a, b, c)`.
fn broadcasts([a, b, c]: [usize; 3]) -> Vec<Vec<usize>> {
    vec![
        vec![],
        vec![1],
        vec![c],
        vec![b, 1],
        vec![b, c],
        vec![a, 1, 1],
        vec![a, 1, c],
        vec![1, b, c],
        vec![a, b, c],
    ]
}

/// Every broadcast shape as weight, pos_weight and grad_output (`none`), in rotation.
fn check_broadcasts(gpu: &Gpu, input: [usize; 3], seed: u64) {
    let shapes = broadcasts(input);
    let k = shapes.len();
    for (i, b) in shapes.iter().enumerate() {
        let g = array(&shapes[(i + 3) % k], 99, -2.0, 2.0);
        Case::probabilities(&input, seed).weight(b).check(
            gpu,
            false,
            Some(&g),
            &format!("bce weight {b:?}"),
        );
        Case::logits(&input, seed).weight(b).check(
            gpu,
            true,
            Some(&g),
            &format!("logits weight {b:?}"),
        );
        Case::logits(&input, seed)
            .pos_weight(b)
            .weight(&shapes[(i + 5) % k])
            .check(gpu, true, Some(&g), &format!("logits pos_weight {b:?}"));
    }
}

#[test]
fn weight_pos_weight_and_grad_output_broadcast_as_on_the_cpu() {
    let Some(gpu) = device() else { return };
    check_broadcasts(&gpu, [4, 3, 5], 1);
    // Leading axes of length 1 in the input, and a weight of the input's size but fewer axes.
    Case::logits(&[1, 4, 1, 6], 3)
        .weight(&[4, 1, 6])
        .pos_weight(&[6])
        .check(&gpu, true, Some(&array(&[1, 6], 4, 0.0, 1.0)), "unit axes");
}

#[test]
fn many_buffers_passes_and_2d_dispatches() {
    let Some(gpu) = tiny_device() else { return };
    assert_eq!(gpu.adapter().chunk_elements, 64);
    // 4 * 3 * 5 = 60 elements fit one buffer; these do not.
    check_broadcasts(&gpu, [10, 3, 5], 2);
    for shape in [&[1000usize][..], &[33, 31], &[7, 9, 11]] {
        Case::probabilities(shape, 8).check(&gpu, false, None, &format!("tiny bce {shape:?}"));
        Case::logits(shape, 9).check(&gpu, true, None, &format!("tiny logits {shape:?}"));
    }
    // A broadcast operand larger than one buffer: (300,) over (3, 300), (5, 40, 1) over
    // (5, 40, 3), (40, 3) over (5, 40, 3).
    Case::logits(&[3, 300], 10)
        .weight(&[300])
        .pos_weight(&[3, 1])
        .check(
            &gpu,
            true,
            Some(&array(&[300], 5, 0.0, 1.0)),
            "large weight",
        );
    Case::logits(&[5, 40, 3], 11)
        .weight(&[5, 40, 1])
        .pos_weight(&[40, 3])
        .check(
            &gpu,
            true,
            Some(&array(&[40, 1], 6, 0.0, 1.0)),
            "large weights",
        );
    Case::probabilities(&[5, 40, 3], 12).weight(&[40, 3]).check(
        &gpu,
        false,
        Some(&array(&[5, 40, 3], 7, 0.0, 1.0)),
        "large bce weight",
    );
    let x = up(&gpu, &array(&[1000], 1, 0.0, 1.0));
    assert_eq!(x.buffer_count(), 16);
}

#[test]
fn edge_values_match_the_cpu() {
    let Some(gpu) = device() else { return };
    // BCE: the -100 floor, EPS, subnormal-free tiny inputs.
    let xs = [0.0f32, 1.0, 1e-30, 1e-10, 0.5, 1.0 - 1e-7, 0.999, 1e-3];
    let ys = [0.0f32, 1.0, 0.5, 0.25];
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for &a in &xs {
        for &b in &ys {
            x.push(a);
            y.push(b);
        }
    }
    let n = x.len();
    let case = Case {
        x: ArrayD::from_shape_vec(IxDyn(&[n]), x).unwrap(),
        y: ArrayD::from_shape_vec(IxDyn(&[n]), y).unwrap(),
        w: None,
        pw: None,
    };
    case.check(&gpu, false, None, "bce edges");

    // Logits: infinities (limits, not NaN), large and tiny-gradient values, soft and
    // out-of-range targets.
    let inf = f32::INFINITY;
    let xs = [
        inf, -inf, 20.0, -20.0, 80.0, -80.0, 0.0, -0.0, 1e4, -1e4, 3.0,
    ];
    let ys = [0.0f32, 1.0, 0.5, 2.0];
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for &a in &xs {
        for &b in &ys {
            x.push(a);
            y.push(b);
        }
    }
    let n = x.len();
    let case = Case {
        x: ArrayD::from_shape_vec(IxDyn(&[n]), x).unwrap(),
        y: ArrayD::from_shape_vec(IxDyn(&[n]), y).unwrap(),
        w: None,
        pw: Some(ArrayD::from_elem(IxDyn(&[1]), 3.0)),
    };
    case.check(&gpu, true, None, "logits edges");

    // The tiny exact values themselves.
    let x = up(
        &gpu,
        &ArrayD::from_shape_vec(IxDyn(&[2]), vec![20.0, -20.0]).unwrap(),
    );
    let y = up(
        &gpu,
        &ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0, 0.0]).unwrap(),
    );
    let grad = down(
        &gpu::binary_cross_entropy_with_logits_backward(None, &x, &y, None, None, Reduction::None)
            .unwrap(),
    );
    assert!((grad[[0]] / -2.0611537e-9 - 1.0).abs() < 1e-5, "{grad}");
    let loss = gpu::binary_cross_entropy_with_logits(&x, &y, None, None, Reduction::None)
        .unwrap()
        .elementwise()
        .unwrap();
    assert!((down(&loss)[[1]] / 2.0611537e-9 - 1.0).abs() < 1e-5);
    // Infinite logits: 0 and inf, never NaN.
    let x = up(
        &gpu,
        &ArrayD::from_shape_vec(IxDyn(&[4]), vec![inf, -inf, inf, -inf]).unwrap(),
    );
    let y = up(
        &gpu,
        &ArrayD::from_shape_vec(IxDyn(&[4]), vec![1.0, 0.0, 0.0, 1.0]).unwrap(),
    );
    let loss = gpu::binary_cross_entropy_with_logits(&x, &y, None, None, Reduction::None)
        .unwrap()
        .elementwise()
        .unwrap();
    assert_eq!(
        down(&loss).into_raw_vec_and_offset().0,
        vec![0.0, 0.0, inf, inf]
    );
}

#[test]
fn range_check_raises_the_cpus_error() {
    let Some(gpu) = device() else { return };
    let arr = |v: Vec<f32>| up(&gpu, &ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).unwrap());
    let good = arr(vec![0.5; 6]);
    let input = |arg, i, value: &str| Error::OutOfRange {
        arg,
        index: vec![i],
        value: value.to_owned(),
    };
    let cases = [
        (
            vec![0.5, f32::NAN, 0.5, 0.5, 0.5, 0.5],
            vec![0.5; 6],
            ("input", 1, "NaN"),
        ),
        (
            vec![0.5; 6],
            vec![0.5, 0.5, 1.5, 0.5, 0.5, 0.5],
            ("target", 2, "1.5"),
        ),
        (
            vec![0.5, 0.5, 0.5, -0.1, 0.5, 0.5],
            vec![0.5, 2.0, 0.5, 0.5, 0.5, 0.5],
            ("target", 1, "2.0"),
        ),
        (
            vec![0.5, -1e-40, 0.5, 0.5, 0.5, 0.5],
            vec![0.5, 2.0, 0.5, 0.5, 0.5, 0.5],
            ("input", 1, "-1e-40"),
        ),
        (vec![f32::INFINITY; 6], vec![0.5; 6], ("input", 0, "inf")),
    ];
    for (x, y, (arg, i, value)) in cases {
        let which = input(arg, i, value);
        let (dx, dy) = (arr(x.clone()), arr(y.clone()));
        for reduction in REDUCTIONS {
            let cpu = bcers::binary_cross_entropy(
                ndarray::ArrayView1::from(&x).into_dyn(),
                ndarray::ArrayView1::from(&y).into_dyn(),
                None,
                reduction,
            )
            .unwrap_err();
            assert_eq!(cpu, which);
            assert_eq!(
                gpu::binary_cross_entropy(&dx, &dy, None, reduction).unwrap_err(),
                cpu
            );
            assert_eq!(
                gpu::binary_cross_entropy_backward(None, &dx, &dy, None, reduction).unwrap_err(),
                cpu
            );
            assert_eq!(
                gpu::binary_cross_entropy_value_and_grad(&dx, &dy, None, reduction).unwrap_err(),
                cpu
            );
        }
    }
    // The logits loss checks nothing.
    let y = arr(vec![2.0, -1.0, 0.5, 0.5, 0.5, 0.5]);
    assert!(gpu::binary_cross_entropy_with_logits(&good, &y, None, None, Reduction::Sum).is_ok());
    // Chunked: the first bad element is found across buffers and passes.
    let tiny = tiny_device().unwrap();
    let mut x = vec![0.5f32; 1000];
    let mut y = vec![0.5f32; 1000];
    x[700] = 1.5;
    y[300] = -0.5;
    let dx = GpuArray::from_view(&tiny, ndarray::ArrayView1::from(&x)).unwrap();
    let dy = GpuArray::from_view(&tiny, ndarray::ArrayView1::from(&y)).unwrap();
    assert_eq!(
        gpu::binary_cross_entropy(&dx, &dy, None, Reduction::Mean).unwrap_err(),
        input("target", 300, "-0.5")
    );
    // Across buffers: the value is read from the buffer the element lives in.
    y[300] = 0.5;
    let dy = GpuArray::from_view(&tiny, ndarray::ArrayView1::from(&y)).unwrap();
    assert_eq!(
        gpu::binary_cross_entropy(&dx, &dy, None, Reduction::Mean).unwrap_err(),
        input("input", 700, "1.5")
    );
}

#[test]
fn shape_errors_match_the_cpu() {
    let Some(gpu) = device() else { return };
    let a = |shape: &[usize]| up(&gpu, &array(shape, 1, 0.1, 0.9));
    let (x, y) = (a(&[2, 3]), a(&[2, 3]));
    assert_eq!(
        gpu::binary_cross_entropy(&x, &a(&[3, 2]), None, Reduction::Mean).unwrap_err(),
        Error::TargetShape {
            input: vec![2, 3],
            target: vec![3, 2]
        }
    );
    assert_eq!(
        gpu::binary_cross_entropy_with_logits(&x, &y, Some(&a(&[1, 2, 3])), None, Reduction::None)
            .unwrap_err(),
        Error::Broadcast {
            arg: "weight",
            shape: vec![1, 2, 3],
            input: vec![2, 3]
        }
    );
    assert_eq!(
        gpu::binary_cross_entropy_with_logits(&x, &y, None, Some(&a(&[2])), Reduction::Sum)
            .unwrap_err(),
        Error::Broadcast {
            arg: "pos_weight",
            shape: vec![2],
            input: vec![2, 3]
        }
    );
    assert_eq!(
        gpu::binary_cross_entropy_backward(Some(&a(&[3])), &x, &y, None, Reduction::Mean)
            .unwrap_err(),
        Error::GradOutputNotScalar {
            reduction: "mean",
            shape: vec![3]
        }
    );
    assert_eq!(
        gpu::binary_cross_entropy_backward(Some(&a(&[2, 2])), &x, &y, None, Reduction::None)
            .unwrap_err(),
        Error::Broadcast {
            arg: "grad_output",
            shape: vec![2, 2],
            input: vec![2, 3]
        }
    );
    // Arrays of another device.
    let other = Gpu::new().unwrap();
    let z = GpuArray::from_view(&other, array(&[2, 3], 1, 0.1, 0.9).view()).unwrap();
    assert_eq!(
        gpu::binary_cross_entropy(&x, &z, None, Reduction::Mean).unwrap_err(),
        Error::GpuDeviceMismatch
    );
}

#[test]
fn arrays_round_trip_in_any_layout() {
    let Some(gpu) = device() else { return };
    let a = array(&[4, 6], 3, -1.0, 1.0);
    for view in [
        a.view(),
        a.t(),
        a.slice(ndarray::s![..;2, ..;-3]).into_dyn(),
    ] {
        let d = GpuArray::from_view(&gpu, view.view()).unwrap();
        assert_eq!(d.shape(), view.shape());
        assert_eq!(down(&d), view.to_owned());
    }
    let empty = GpuArray::from_view(&gpu, ArrayD::<f32>::zeros(IxDyn(&[3, 0])).view()).unwrap();
    assert!(empty.is_empty());
    assert_eq!(down(&empty).shape(), &[3, 0]);
    let scalar = GpuArray::from_view(&gpu, ndarray::arr0(2.5f32).view()).unwrap();
    assert_eq!(scalar.ndim(), 0);
    assert_eq!(down(&scalar)[[]], 2.5);
    let info = gpu.adapter();
    assert!(!info.name.is_empty() && !info.backend.is_empty());
}

#[test]
fn sums_are_deterministic() {
    let Some(gpu) = device() else { return };
    let case = Case::logits(&[300_000], 4);
    let (x, y) = (up(&gpu, &case.x), up(&gpu, &case.y));
    let first = gpu::binary_cross_entropy_with_logits(&x, &y, None, None, Reduction::Sum).unwrap();
    for _ in 0..3 {
        let again =
            gpu::binary_cross_entropy_with_logits(&x, &y, None, None, Reduction::Sum).unwrap();
        assert_eq!(
            again.reduced().unwrap().to_bits(),
            first.reduced().unwrap().to_bits()
        );
    }
}

/// 40M elements: more than one 128 MiB binding (on lavapipe and many GPUs), and more than
/// 65,535 workgroups in the `none` dispatches (256 elements a workgroup).
#[test]
fn arrays_larger_than_one_binding_and_one_dispatch() {
    let Some(gpu) = device() else { return };
    let n = 40_000_000;
    let case = Case::logits(&[n], 21).weight(&[1]);
    let (x, y) = (up(&gpu, &case.x), up(&gpu, &case.y));
    let w = up(&gpu, case.w.as_ref().unwrap());
    let chunk = gpu.adapter().chunk_elements;
    eprintln!(
        "{} elements in {} buffers of at most {chunk}",
        n,
        x.buffer_count()
    );
    assert!(x.buffer_count() >= n.div_ceil(chunk));
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let cpu = bcers::binary_cross_entropy_with_logits(
            case.x.view(),
            case.y.view(),
            case.w(),
            None,
            reduction,
        )
        .unwrap()
        .reduced()
        .unwrap();
        let dev = gpu::binary_cross_entropy_with_logits(&x, &y, Some(&w), None, reduction)
            .unwrap()
            .reduced()
            .unwrap();
        assert_scalar(dev, cpu, "40M logits");
    }
    let (cpu_l, cpu_g) = bcers::binary_cross_entropy_with_logits_value_and_grad(
        case.x.view(),
        case.y.view(),
        case.w(),
        None,
        Reduction::None,
    )
    .unwrap();
    let (dev_l, dev_g) = gpu::binary_cross_entropy_with_logits_value_and_grad(
        &x,
        &y,
        Some(&w),
        None,
        Reduction::None,
    )
    .unwrap();
    compare_loss(&dev_l, &cpu_l, "40M none loss");
    assert_close(&down(&dev_g), &cpu_g, 2e-5, 1e-7, "40M none grad");
}

/// Masks (broadcast, with slices where nothing is kept) and reductions over some axes (with
/// and without `keepdims`), every loss, every output, with a `grad_output` of the reduced
/// shape: as on the CPU, on the normal device and on one with tiny buffers (the mask read
/// across buffers, passes split).
#[test]
fn masks_and_axes_agree_with_the_cpu() {
    use bcers::{LossKind, Outputs, Request};
    let Some(normal) = device() else { return };
    let Some(tiny) = tiny_device() else { return };
    let shape = [6usize, 5, 4];
    let n: usize = shape.iter().product();
    let all = Outputs {
        value: true,
        grad: true,
        grad_target: true,
        hess: true,
    };
    let keep = array(&[6, 1, 4], 40, 0.0, 1.0).mapv(|u| u < 0.7);
    // Nothing kept in column 1 of the last axis: its means are NaN, its derivatives 0.
    let mut keep = keep;
    keep.slice_mut(ndarray::s![.., .., 1]).fill(false);
    let kept_everywhere = keep.broadcast(IxDyn(&shape)).unwrap().to_owned();
    let w = array(&[5, 1], 41, 0.5, 2.0);
    for gpu in [&normal, &tiny] {
        for loss in LossKind::registry() {
            let (mut x, mut y) = if loss.checks_range() {
                (array(&shape, 42, 0.0, 1.0), array(&shape, 43, 0.0, 1.0))
            } else {
                (array(&shape, 42, -8.0, 8.0), array(&shape, 43, 0.0, 1.0))
            };
            if loss.checks_range() {
                // Out of range where nothing is kept: not checked.
                ndarray::Zip::from(&mut x)
                    .and(&mut y)
                    .and(&kept_everywhere)
                    .for_each(|x, y, &k| {
                        if !k {
                            *x = 7.0;
                            *y = 255.0;
                        }
                    });
            }
            let m = keep.mapv(|k| if k { 1.0f32 } else { 0.0 });
            let (dx, dy, dw, dm) = (up(gpu, &x), up(gpu, &y), up(gpu, &w), up(gpu, &m));
            let axes: [(Option<&[isize]>, bool); 6] = [
                (None, false),
                (None, true),
                (Some(&[0]), false),
                (Some(&[-1]), true),
                (Some(&[0, 2]), false),
                (Some(&[2, 0, 1]), true),
            ];
            for reduction in [
                Reduction::None,
                Reduction::Mean,
                Reduction::Sum,
                Reduction::WeightedMean,
            ] {
                for &(axis, keepdims) in &axes {
                    if reduction == Reduction::None && (axis.is_some() || keepdims) {
                        continue;
                    }
                    let what = format!("{loss} {reduction} axis={axis:?} keepdims={keepdims}");
                    let mut cpu = Request::new(loss, x.view(), y.view())
                        .weight(w.view())
                        .mask(keep.view())
                        .reduction(reduction)
                        .keepdims(keepdims);
                    let mut dev = gpu::Request::new(loss, &dx, &dy)
                        .weight(&dw)
                        .mask(&dm)
                        .reduction(reduction)
                        .keepdims(keepdims);
                    if let Some(axis) = axis {
                        cpu = cpu.axis(axis);
                        dev = dev.axis(axis);
                    }
                    let value = cpu.forward().unwrap();
                    // A grad_output of the reduced result's shape, of both signs.
                    let g_shape: Vec<usize> = match &value {
                        Loss::Reduced(_) => Vec::new(),
                        Loss::Axes(a) => a.shape().to_vec(),
                        Loss::Elementwise(a) => a.shape().to_vec(),
                    };
                    let g_len: usize = g_shape.iter().product();
                    let g = ArrayD::from_shape_vec(
                        IxDyn(&g_shape),
                        (0..g_len).map(|i| 0.5 - i as f32 / g_len as f32).collect(),
                    )
                    .unwrap();
                    let want = cpu.derivatives(all, Some(g.view())).unwrap();
                    let have = dev.derivatives(all, Some(&up(gpu, &g))).unwrap();
                    match (have.value.unwrap(), want.value.unwrap()) {
                        (GpuLoss::Axes(d), Loss::Axes(c)) => {
                            assert_close(&down(&d), &c, 2e-5, 1e-6, &what)
                        }
                        (d, c) => compare_loss(&d, &c, &what),
                    }
                    for (name, d, c) in [
                        ("grad", have.grad, want.grad),
                        ("grad_target", have.grad_target, want.grad_target),
                        ("hess", have.hess, want.hess),
                    ] {
                        let (d, c) = (down(&d.unwrap()), c.unwrap());
                        // A few ulp of the largest term (a target gradient is a difference
                        // of logarithms); exactly 0 where nothing is kept.
                        let scale = c.iter().fold(0f32, |a, &v| a.max(v.abs()));
                        assert_close(&d, &c, 2e-5, 2e-5 * scale, &format!("{what} {name}"));
                        for ((&dv, &k), i) in d.iter().zip(&kept_everywhere).zip(0..n) {
                            assert!(k || dv == 0.0, "{what} {name}[{i}]: {dv:e} left out");
                        }
                    }
                }
            }
        }
    }
}
