//! Run-time SIMD dispatch.
//!
//! Every kernel is one generic body (a [`Kernel`]) written over scalars with branch-free
//! arithmetic. It is compiled once per instruction-set level by the `#[target_feature]` wrappers
//! below, where LLVM vectorises its loops for that level's registers; the level is detected once
//! and cached. The crate's `unsafe` is all of this kind: here, where a wrapper with a CPU
//! feature is called after the feature was detected, and in a kernel that, at a level with
//! AVX2 ([`Isa::AVX2`]), calls a function written with AVX2 intrinsics where the vectoriser's
//! own choice is slower (the exact sum's scan and fold of `f32` values, in `accumulate`).

use core::sync::atomic::{AtomicU8, Ordering};

use crate::float::Float;
use crate::Error;

/// An instruction-set level the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SimdLevel {
    /// One element at a time: the reference the vector levels are tested against.
    Scalar,
    /// The architecture's baseline vectors: SSE2 on x86-64, NEON on aarch64.
    Baseline,
    /// AVX2 with FMA (x86-64).
    Avx2,
    /// AVX-512F (x86-64).
    Avx512,
}

impl SimdLevel {
    /// The level's name: `"scalar"`, `"baseline"`, `"avx2"` or `"avx512"`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Baseline => "baseline",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    /// The level named `name` (as [`SimdLevel::name`] spells it), if there is one.
    pub fn from_name(name: &str) -> Option<SimdLevel> {
        match name {
            "scalar" => Some(SimdLevel::Scalar),
            "baseline" => Some(SimdLevel::Baseline),
            "avx2" => Some(SimdLevel::Avx2),
            "avx512" => Some(SimdLevel::Avx512),
            _ => None,
        }
    }

    /// Whether this machine's processor can run the level.
    pub fn is_supported(self) -> bool {
        match self {
            SimdLevel::Scalar | SimdLevel::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            SimdLevel::Avx2 | SimdLevel::Avx512 => false,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            SimdLevel::Scalar => 1,
            SimdLevel::Baseline => 2,
            SimdLevel::Avx2 => 3,
            SimdLevel::Avx512 => 4,
        }
    }

    fn from_u8(v: u8) -> Option<SimdLevel> {
        match v {
            1 => Some(SimdLevel::Scalar),
            2 => Some(SimdLevel::Baseline),
            3 => Some(SimdLevel::Avx2),
            4 => Some(SimdLevel::Avx512),
            _ => None,
        }
    }
}

impl core::fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every level this machine can run, slowest first.
pub fn available_simd_levels() -> Vec<SimdLevel> {
    [
        SimdLevel::Scalar,
        SimdLevel::Baseline,
        SimdLevel::Avx2,
        SimdLevel::Avx512,
    ]
    .into_iter()
    .filter(|l| l.is_supported())
    .collect()
}

fn best_level() -> SimdLevel {
    available_simd_levels()
        .last()
        .copied()
        .unwrap_or(SimdLevel::Baseline)
}

/// 0: not chosen yet; otherwise `SimdLevel::to_u8`.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The level the kernels run at: the best this machine has, unless [`set_simd_level`] chose another.
pub fn simd_level() -> SimdLevel {
    match SimdLevel::from_u8(LEVEL.load(Ordering::Relaxed)) {
        Some(level) => level,
        None => {
            let level = best_level();
            LEVEL.store(level.to_u8(), Ordering::Relaxed);
            level
        }
    }
}

/// Makes every later call run at `level` (`None`: the best level this machine has).
///
/// Meant for benchmarks and tests that compare levels. Results of different levels agree to
/// within the kernels' stated accuracy, not bit for bit.
/// The level is process-wide: a call that another thread is making meanwhile may run at
/// either level, so a program that changes it should not compare bits across threads then.
///
/// # Errors
/// [`Error::UnsupportedSimdLevel`] when this machine's processor cannot run `level`.
pub fn set_simd_level(level: Option<SimdLevel>) -> Result<(), Error> {
    let level = match level {
        Some(level) if !level.is_supported() => {
            return Err(Error::UnsupportedSimdLevel {
                level: level.name(),
            })
        }
        Some(level) => level,
        None => best_level(),
    };
    LEVEL.store(level.to_u8(), Ordering::Relaxed);
    Ok(())
}

/// What a kernel body may assume of the instruction set it is compiled for.
pub trait Isa: Copy + 'static {
    /// Fused multiply-add is a single instruction (otherwise it would be a libm call).
    const FMA: bool;
    /// Process one element at a time (the scalar reference level).
    const SCALAR: bool;
    /// AVX2 is available (x86-64's AVX2 and AVX-512 levels): a kernel may call a function
    /// compiled with `#[target_feature(enable = "avx2")]`.
    const AVX2: bool = false;

    /// `a * b + c`: fused where the level has FMA, two roundings where it does not.
    #[inline(always)]
    fn mul_add<F: Float>(a: F, b: F, c: F) -> F {
        if Self::FMA {
            F::fused_mul_add(a, b, c)
        } else {
            a * b + c
        }
    }

    /// A loop index, hidden from the vectoriser at the scalar level.
    #[inline(always)]
    fn index(i: usize) -> usize {
        if Self::SCALAR {
            core::hint::black_box(i)
        } else {
            i
        }
    }
}

#[derive(Clone, Copy)]
pub struct ScalarIsa;
impl Isa for ScalarIsa {
    const FMA: bool = false;
    const SCALAR: bool = true;
}

#[derive(Clone, Copy)]
pub struct BaselineIsa;
impl Isa for BaselineIsa {
    // aarch64's baseline (NEON) has fused multiply-add; x86-64's (SSE2) does not.
    const FMA: bool = cfg!(target_arch = "aarch64");
    const SCALAR: bool = false;
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx2Isa;
#[cfg(target_arch = "x86_64")]
impl Isa for Avx2Isa {
    const FMA: bool = true;
    const SCALAR: bool = false;
    const AVX2: bool = true;
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx512Isa;
#[cfg(target_arch = "x86_64")]
impl Isa for Avx512Isa {
    const FMA: bool = true;
    const SCALAR: bool = false;
    const AVX2: bool = true;
}

/// A computation written once and compiled for every level. `run` and everything it calls
/// must be `#[inline(always)]`, so that it is compiled inside the level's wrapper.
pub(crate) trait Kernel {
    /// What the computation returns.
    type Output;
    /// The computation, for the instruction set `I`.
    fn run<I: Isa>(self) -> Self::Output;
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<Avx2Isa>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn run_avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<Avx512Isa>()
}

/// Runs `kernel` at `level`.
///
/// `level` must be supported; callers get it from [`simd_level`] or [`available_simd_levels`],
/// which only hand out supported levels. An unsupported level falls back to the baseline.
#[inline]
pub(crate) fn dispatch<K: Kernel>(level: SimdLevel, kernel: K) -> K::Output {
    match level {
        SimdLevel::Scalar => kernel.run::<ScalarIsa>(),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 if level.is_supported() => {
            // SAFETY: `is_supported` has just detected AVX2 and FMA on this processor.
            unsafe { run_avx2(kernel) }
        }
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 if level.is_supported() => {
            // SAFETY: `is_supported` has just detected AVX-512F, AVX2 and FMA on this processor,
            // the features the wrapper enables.
            unsafe { run_avx512(kernel) }
        }
        _ => kernel.run::<BaselineIsa>(),
    }
}
