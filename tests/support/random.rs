//! A deterministic pseudo-random sequence for the Rust tests (no dependency, same numbers on
//! every platform).

/// `n` numbers in `[0, 1)` from a linear congruential generator seeded with `seed`: 53 random
/// bits each, so that their `f32` roundings are spread over `[0, 1]` too.
pub fn uniform(n: usize, seed: u64) -> Vec<f64> {
    const A: u64 = 6364136223846793005;
    const C: u64 = 1442695040888963407;
    let mut s = seed.wrapping_mul(A).wrapping_add(C);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(A).wrapping_add(C);
            (s >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}
