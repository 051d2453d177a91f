//! The per-element math and its SIMD compilation.
//!
//! - [`math`]: vectorisable `log`, `log1p`, `exp`;
//! - [`elementwise`]: the two losses per element (the scalar reference);
//! - [`block`]: the loops over one contiguous block, compiled once per SIMD level;
//! - [`simd`]: level detection and dispatch.

pub(crate) mod block;
pub(crate) mod elementwise;
pub mod math;
pub mod simd;
