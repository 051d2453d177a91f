//! The general elementary functions' throughput at every SIMD level, in the combinations of
//! BCE, `log(x) + log1p(-x)`, and of the losses on logits, `log1p(exp(-x))`, over 1e6 uniform
//! `x` in `[0, 1)` (`cargo test --release --lib -- --ignored bench_math --nocapture`). The loss
//! kernels call the unit variants there instead (`log_unit` and `log1m_unit`; `exp_nonpos`
//! and `log1p_unit`), which this does not time.

use super::tests::{Rng, TestFloat};
use super::*;
use crate::simd::{available_simd_levels, dispatch, Kernel};

struct Bench<'a, F> {
    logits: bool,
    x: &'a [F],
    out: &'a mut [F],
}

impl<F: Real> Kernel for Bench<'_, F> {
    type Output = ();
    #[inline(always)]
    fn run<I: Isa>(self) {
        let n = self.x.len().min(self.out.len());
        let (x, out) = (&self.x[..n], &mut self.out[..n]);
        if self.logits {
            for i in 0..n {
                let i = I::index(i);
                let e = exp::<F, I>(-x[i]);
                out[i] = log1p::<F, I>(e);
            }
        } else {
            for i in 0..n {
                let i = I::index(i);
                out[i] = log::<F, I>(x[i]) + log1p::<F, I>(-x[i]);
            }
        }
    }
}

/// Seconds this thread has run (Linux), else wall-clock seconds: the machine may be shared.
fn cpu_time() -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ns| ns * 1e-9)
        .unwrap_or_else(|| {
            START
                .get_or_init(std::time::Instant::now)
                .elapsed()
                .as_secs_f64()
        })
}

fn bench<F: TestFloat>() {
    let n = 1_000_000;
    let mut rng = Rng(7);
    let x: Vec<F> = (0..n).map(|_| F::from_f64(rng.unit())).collect();
    let mut out = vec![F::ZERO; n];
    for level in available_simd_levels() {
        for logits in [false, true] {
            // The thread's CPU time is coarse (scheduler ticks): time many passes.
            let (start, mut reps) = (cpu_time(), 0);
            while reps < 5 || cpu_time() - start < 0.5 {
                dispatch(
                    level,
                    Bench {
                        logits,
                        x: &x,
                        out: &mut out,
                    },
                );
                reps += 1;
            }
            let per_pass = (cpu_time() - start) / f64::from(reps);
            println!(
                "{} {:>8} {}: {:.3} ns/element",
                F::NAME,
                level.name(),
                if logits {
                    "log1p(exp(-x))"
                } else {
                    "log(x) + log1p(-x)"
                },
                per_pass * 1e9 / n as f64
            );
        }
    }
    std::hint::black_box(&out);
}

#[test]
#[ignore = "benchmark: run in release mode"]
fn bench_math() {
    bench::<f32>();
    bench::<f64>();
}
