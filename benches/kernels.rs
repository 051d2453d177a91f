//! Criterion benchmarks of the loss kernels, with the streaming-read limit beside them.
//!
//! `cargo bench --bench kernels` runs, for `f32` and `f64`, every operation below over
//! contiguous 1-D arrays, each group with `Throughput::Elements(n)` so criterion reports
//! elements per second:
//!
//! - `<dtype>/<op>/threads`: n = 1e3 .. 1e7 at the best SIMD level, one series per thread
//!   count (`t1`, `t2`, and `available_parallelism` if larger);
//! - `<dtype>/<op>/simd`: n = 1e4 and 1e6 at one thread, one series per SIMD level this
//!   processor has (`scalar`, `baseline`, `avx2`, `avx512`).
//!
//! The operations: BCE forward, backward and value_and_grad, BCE with logits forward and
//! value_and_grad, sigmoid focal loss forward and value_and_grad (`alpha` 0.25, `gamma` 2,
//! targets in {0, 1}), all `mean`; and `stream_read` (the two arrays read once, summed in
//! chunks of 16,384 on as many rayon threads as bcers uses), defined here, the reference: no
//! loss over two arrays can be faster. `BCERS_BENCH_LARGE=1` adds n = 1e8 (about 3.2 GB of
//! float64 operands). `cargo bench --bench kernels -- --test` runs each benchmark once (a
//! smoke test); a filter such as `-- f32/bce_forward` or `-- focal` selects groups.
//!
//! `floor/f32/grad_hess` (filter `-- floor`), n = 1e7 at one and two threads: `bcers` is
//! `derivatives` of BCE with logits asking for the gradient and the second derivative (two
//! fresh output arrays), `bcers_into` the same written into two buffers already in memory
//! (`derivatives_into`), `read2_write2` reads the logits and the targets once and writes two
//! arrays already in memory (`z - y` and `z * y`, in chunks on a rayon pool): the least any
//! such call can cost on this machine, before the first touch of fresh output pages.
//!
//! `accumulate/<dtype>/<values>` (filter `-- accumulate`) times the summation of blocks of 1024
//! values, as the executor sums a block of losses: `exact` is `ExactSum::add_*_block` at the
//! best SIMD level, `lanes16` the executor's 16-lane `f64` sum (a copy of `cpu::block`'s
//! `AddLanes`, compiled for AVX2 where the processor has it, as the crate's dispatch does).
//! Four different blocks (16 KiB of `f32`, in L1 like the executor's block buffer) per
//! iteration; the values: `bce` losses of the operands below, `confident` losses of logits in
//! [-30, 30] (down to 1e-13), `signed_wide` signed magnitudes log-uniform in [2^-60, 2^10],
//! `full_range` every finite `f32`.

use std::hint::black_box;
use std::time::Duration;

use bcers::accumulate::ExactSum;
use bcers::{
    available_simd_levels, binary_cross_entropy, binary_cross_entropy_backward,
    binary_cross_entropy_value_and_grad, binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_value_and_grad, get_num_threads, set_num_threads,
    set_simd_level, sigmoid_focal_loss, sigmoid_focal_loss_value_and_grad, Float, Reduction,
    SimdLevel,
};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use ndarray::{arr0, ArrayView1};
use rayon::prelude::*;

/// The operations measured.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// `binary_cross_entropy`, `mean`.
    BceForward,
    /// `binary_cross_entropy_backward`, `mean`, `grad_output` 1.
    BceBackward,
    /// `binary_cross_entropy_value_and_grad`, `mean`.
    BceValueAndGrad,
    /// `binary_cross_entropy_with_logits`, `mean`.
    LogitsForward,
    /// `binary_cross_entropy_with_logits_value_and_grad`, `mean`.
    LogitsValueAndGrad,
    /// `sigmoid_focal_loss`, `mean`, `alpha` 0.25, `gamma` 2, targets in {0, 1}.
    FocalForward,
    /// `sigmoid_focal_loss_value_and_grad`, `mean`, `alpha` 0.25, `gamma` 2, targets in {0, 1}.
    FocalValueAndGrad,
    /// `stream_read` of the input and target: the memory-bandwidth reference.
    StreamRead,
}

const OPS: [Op; 8] = [
    Op::BceForward,
    Op::BceBackward,
    Op::BceValueAndGrad,
    Op::LogitsForward,
    Op::LogitsValueAndGrad,
    Op::FocalForward,
    Op::FocalValueAndGrad,
    Op::StreamRead,
];

/// The focal loss's parameters (torchvision's defaults).
const FOCAL_ALPHA: f64 = 0.25;
const FOCAL_GAMMA: f64 = 2.0;

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::BceForward => "bce_forward_mean",
            Op::BceBackward => "bce_backward_mean",
            Op::BceValueAndGrad => "bce_value_and_grad_mean",
            Op::LogitsForward => "logits_forward_mean",
            Op::LogitsValueAndGrad => "logits_value_and_grad_mean",
            Op::FocalForward => "focal_forward_mean",
            Op::FocalValueAndGrad => "focal_value_and_grad_mean",
            Op::StreamRead => "stream_read",
        }
    }
}

/// The sizes of the thread series; 1e8 only with `BCERS_BENCH_LARGE=1`.
fn sizes() -> Vec<usize> {
    let mut sizes = vec![1_000, 10_000, 100_000, 1_000_000, 10_000_000];
    if std::env::var("BCERS_BENCH_LARGE").is_ok_and(|v| v.trim() == "1") {
        sizes.push(100_000_000);
    }
    sizes
}

/// The sizes of the SIMD-level series (at one thread: the scalar level is slow).
const LEVEL_SIZES: [usize; 2] = [10_000, 1_000_000];

/// The thread counts: 1, 2, and the processors available if more.
fn thread_counts() -> Vec<usize> {
    let available = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut counts = vec![1, 2];
    if available > 2 {
        counts.push(available);
    }
    counts
}

/// The operands of one size: probabilities in (0, 1), targets in [0, 1], logits in [-8, 8],
/// hard targets in {0, 1} (the focal loss's, as in detection).
struct Data<F> {
    x: Vec<F>,
    y: Vec<F>,
    z: Vec<F>,
    t: Vec<F>,
}

impl<F: Float> Data<F> {
    fn new(n: usize) -> Self {
        // A fixed 64-bit LCG: the same operands on every run, without a dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ n as u64;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut x = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        let mut z = Vec::with_capacity(n);
        let mut t = Vec::with_capacity(n);
        for _ in 0..n {
            x.push(F::from_f64(1e-6 + (1.0 - 2e-6) * uniform()));
            y.push(F::from_f64(uniform()));
            z.push(F::from_f64(16.0 * uniform() - 8.0));
            t.push(if uniform() < 0.5 { F::ZERO } else { F::ONE });
        }
        Data { x, y, z, t }
    }

    /// One call of `op`; what it returns is kept from the optimiser.
    fn run(&self, op: Op) {
        let x = ArrayView1::from(&self.x[..]);
        let y = ArrayView1::from(&self.y[..]);
        let z = ArrayView1::from(&self.z[..]);
        let t = ArrayView1::from(&self.t[..]);
        let (alpha, gamma) = (FOCAL_ALPHA, FOCAL_GAMMA);
        let one = arr0(F::ONE);
        let mean = Reduction::Mean;
        match op {
            Op::BceForward => {
                black_box(binary_cross_entropy(x, y, None, mean).expect("valid operands"));
            }
            Op::BceBackward => {
                let g = one.view().into_dyn();
                black_box(binary_cross_entropy_backward(Some(g), x, y, None, mean).expect("valid"));
            }
            Op::BceValueAndGrad => {
                black_box(binary_cross_entropy_value_and_grad(x, y, None, mean).expect("valid"));
            }
            Op::LogitsForward => {
                black_box(binary_cross_entropy_with_logits(z, y, None, None, mean).expect("valid"));
            }
            Op::LogitsValueAndGrad => {
                black_box(
                    binary_cross_entropy_with_logits_value_and_grad(z, y, None, None, mean)
                        .expect("valid"),
                );
            }
            Op::FocalForward => {
                black_box(sigmoid_focal_loss(z, t, alpha, gamma, None, mean).expect("valid"));
            }
            Op::FocalValueAndGrad => {
                black_box(
                    sigmoid_focal_loss_value_and_grad(z, t, alpha, gamma, None, mean)
                        .expect("valid"),
                );
            }
            Op::StreamRead => {
                black_box(stream_read(&self.x, &self.y));
            }
        }
    }
}

/// Sample counts and times that keep the whole run to a few minutes: big calls take fewer,
/// flat samples (criterion's minimum is 10).
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    group.throughput(Throughput::Elements(n as u64));
    if n >= 1_000_000 {
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
    } else {
        group
            .sampling_mode(SamplingMode::Auto)
            .sample_size(30)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500));
    }
}

fn bench_dtype<F: Float>(c: &mut Criterion, dtype: &str) {
    let threads = thread_counts();
    let levels = available_simd_levels();

    // One thread per SIMD level, then the best level per thread count.
    let level_data: Vec<(usize, Data<F>)> =
        LEVEL_SIZES.iter().map(|&n| (n, Data::new(n))).collect();
    set_num_threads(1).expect("1 is a valid thread count");
    for op in OPS {
        let mut group = c.benchmark_group(format!("{dtype}/{}/simd", op.name()));
        for (n, data) in &level_data {
            configure(&mut group, *n);
            for &level in &levels {
                set_simd_level(Some(level)).expect("an available level");
                group.bench_with_input(BenchmarkId::new(level.name(), n), data, |b, data| {
                    b.iter(|| data.run(op));
                });
            }
        }
        group.finish();
    }
    set_simd_level(None).expect("the best level");
    drop(level_data);

    let data: Vec<(usize, Data<F>)> = sizes().into_iter().map(|n| (n, Data::new(n))).collect();
    for op in OPS {
        let mut group = c.benchmark_group(format!("{dtype}/{}/threads", op.name()));
        for (n, data) in &data {
            configure(&mut group, *n);
            for &t in &threads {
                set_num_threads(t).expect("a positive thread count");
                group.bench_with_input(BenchmarkId::new(format!("t{t}"), n), data, |b, data| {
                    b.iter(|| data.run(op));
                });
            }
        }
        group.finish();
    }
    set_num_threads(thread_counts().last().copied().unwrap_or(1)).expect("a thread count");
}

fn kernels(c: &mut Criterion) {
    let best = available_simd_levels()
        .last()
        .copied()
        .unwrap_or(SimdLevel::Baseline);
    eprintln!(
        "bcers kernels: SIMD levels {:?} (best {}), thread counts {:?}",
        available_simd_levels()
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>(),
        best.name(),
        thread_counts()
    );
    bench_accumulate(c);
    bench_write_floor(c);
    bench_dtype::<f32>(c, "f32");
    bench_dtype::<f64>(c, "f64");
}

criterion_group!(benches, kernels);
criterion_main!(benches);

/// Reads `x` and `y` once, in chunks of 16,384 on `get_num_threads()` rayon threads (a pool of
/// this file's, beside bcers' own), and returns the sum of their elements: the least work any
/// loss over the two arrays can do. Eight independent accumulators per chunk, so that the
/// compiler vectorises the sum and the read, not the additions' latency, bounds it.
fn stream_read<F: Float>(x: &[F], y: &[F]) -> f64 {
    const CHUNK: usize = 1 << 14;
    const LANES: usize = 8;
    let read = |(a, b): (&[F], &[F])| {
        let (a8, b8) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail: f64 = a8
            .remainder()
            .iter()
            .chain(b8.remainder())
            .map(|v| v.to_f64())
            .sum();
        let mut acc = [0.0f64; LANES];
        for (u, v) in a8.zip(b8) {
            for ((s, p), q) in acc.iter_mut().zip(u).zip(v) {
                *s += p.to_f64() + q.to_f64();
            }
        }
        acc.iter().sum::<f64>() + tail
    };
    let threads = get_num_threads();
    if threads == 1 || x.len() < 1 << 16 {
        return x.chunks(CHUNK).zip(y.chunks(CHUNK)).map(read).sum();
    }
    read_pool(threads).install(|| {
        x.par_chunks(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .with_max_len(4)
            .map(read)
            .sum()
    })
}

/// Reads `z` and `y` once and writes `z - y` into `g` and `z * y` into `h`, in chunks of
/// 16,384 on `get_num_threads()` rayon threads: the least work a call that reads two arrays
/// and writes two can do.
fn read2_write2(z: &[f32], y: &[f32], g: &mut [f32], h: &mut [f32]) {
    const CHUNK: usize = 1 << 14;
    read_pool(get_num_threads()).install(|| {
        z.par_chunks(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .zip(g.par_chunks_mut(CHUNK))
            .zip(h.par_chunks_mut(CHUNK))
            .with_max_len(4)
            .for_each(|(((z, y), g), h)| {
                for (((z, y), g), h) in z.iter().zip(y).zip(g.iter_mut()).zip(h.iter_mut()) {
                    *g = z - y;
                    *h = z * y;
                }
            });
    });
}

/// `floor/f32/grad_hess`: the logits loss's gradient and second derivative beside
/// [`read2_write2`].
fn bench_write_floor(c: &mut Criterion) {
    let n = 10_000_000;
    let data = Data::<f32>::new(n);
    let (z, y) = (ArrayView1::from(&data.z[..]), ArrayView1::from(&data.t[..]));
    let (mut g, mut h) = (vec![1.0f32; n], vec![1.0f32; n]);
    let outputs = bcers::Outputs {
        grad: true,
        hess: true,
        ..bcers::Outputs::default()
    };
    let mut group = c.benchmark_group("floor/f32/grad_hess");
    configure(&mut group, n);
    for t in thread_counts() {
        set_num_threads(t).expect("a positive thread count");
        group.bench_function(BenchmarkId::new("bcers", format!("t{t}")), |b| {
            b.iter(|| {
                let request = bcers::Request::new(bcers::LossKind::BceWithLogits, z, y);
                black_box(request.derivatives(outputs, None).expect("valid operands"));
            });
        });
        group.bench_function(BenchmarkId::new("bcers_into", format!("t{t}")), |b| {
            b.iter(|| {
                let request = bcers::Request::new(bcers::LossKind::BceWithLogits, z, y);
                let buffers = bcers::OutputBuffers {
                    grad: Some(&mut g[..]),
                    hess: Some(&mut h[..]),
                    ..bcers::OutputBuffers::default()
                };
                black_box(
                    request
                        .derivatives_into(outputs, None, buffers)
                        .expect("valid operands"),
                );
            });
        });
        group.bench_function(BenchmarkId::new("read2_write2", format!("t{t}")), |b| {
            b.iter(|| read2_write2(&data.z, &data.t, &mut g, &mut h));
        });
    }
    group.finish();
    set_num_threads(thread_counts().last().copied().unwrap_or(1)).expect("a thread count");
}

/// A rayon pool of `threads` threads for [`stream_read`], made once per thread count.
fn read_pool(threads: usize) -> std::sync::Arc<rayon::ThreadPool> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    Arc::clone(pools.entry(threads).or_insert_with(|| {
        Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a rayon pool"),
        )
    }))
}

/// Values per block, as the executor's block buffer holds.
const ACC_BLOCK: usize = 1024;
/// Blocks per iteration.
const ACC_BLOCKS: usize = 4;

/// `ACC_BLOCKS` blocks of values of the kind `kind` names.
fn accumulate_values(kind: &str) -> Vec<f64> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..ACC_BLOCK * ACC_BLOCKS)
        .map(|_| match kind {
            "bce" => {
                let x = 1e-6 + (1.0 - 2e-6) * uniform();
                let y = uniform();
                -(y * x.ln() + (1.0 - y) * (-x).ln_1p())
            }
            "confident" => {
                let z = 60.0 * uniform() - 30.0;
                (-z).exp().ln_1p().max(0.0)
            }
            "signed_wide" => {
                let m = (70.0 * uniform() - 60.0).exp2();
                if uniform() < 0.5 {
                    -m
                } else {
                    m
                }
            }
            _ => {
                let bits = (uniform() * f64::from(u32::MAX)) as u32;
                let v = f32::from_bits(bits);
                if v.is_finite() {
                    f64::from(v)
                } else {
                    0.0
                }
            }
        })
        .collect()
}

fn bench_accumulate(c: &mut Criterion) {
    for kind in ["bce", "confident", "signed_wide", "full_range"] {
        let values = accumulate_values(kind);
        let v32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let mut group = c.benchmark_group(format!("accumulate/f32/{kind}"));
        group
            .throughput(Throughput::Elements(v32.len() as u64))
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        group.bench_function("exact", |b| {
            b.iter(|| {
                let mut s = ExactSum::new();
                for block in black_box(&v32).chunks(ACC_BLOCK) {
                    s.add_f32_block(block);
                }
                black_box(s.finish())
            });
        });
        group.bench_function("lanes16", |b| {
            b.iter(|| {
                let mut acc = [0.0f64; 16];
                for block in black_box(&v32).chunks(ACC_BLOCK) {
                    lanes16(&mut acc, block);
                }
                black_box(acc.iter().sum::<f64>())
            });
        });
        group.finish();
        if kind == "bce" || kind == "signed_wide" {
            let mut group = c.benchmark_group(format!("accumulate/f64/{kind}"));
            group
                .throughput(Throughput::Elements(values.len() as u64))
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(2));
            group.bench_function("exact", |b| {
                b.iter(|| {
                    let mut s = ExactSum::new();
                    for block in black_box(&values).chunks(ACC_BLOCK) {
                        s.add_f64_block(block);
                    }
                    black_box(s.finish())
                });
            });
            group.bench_function("lanes16", |b| {
                b.iter(|| {
                    let mut acc = [0.0f64; 16];
                    for block in black_box(&values).chunks(ACC_BLOCK) {
                        lanes16(&mut acc, block);
                    }
                    black_box(acc.iter().sum::<f64>())
                });
            });
            group.finish();
        }
    }
}

/// The executor's 16-lane sum (`cpu::block::AddLanes` from lane 0), at the best level this
/// processor has of AVX2 and the baseline, as the crate dispatches it.
fn lanes16<F: Float>(acc: &mut [f64; 16], v: &[F]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA, the features `lanes16_avx2` enables, were just detected.
        unsafe { lanes16_avx2(acc, v) };
        return;
    }
    lanes16_body(acc, v);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn lanes16_avx2<F: Float>(acc: &mut [f64; 16], v: &[F]) {
    lanes16_body(acc, v);
}

#[inline(always)]
fn lanes16_body<F: Float>(acc_out: &mut [f64; 16], v: &[F]) {
    let mut acc = *acc_out;
    let mut chunks = v.chunks_exact(16);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x.to_f64();
        }
    }
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        *a += x.to_f64();
    }
    *acc_out = acc;
}
