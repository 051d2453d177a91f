//! Time of one loss call per element, for side-by-side comparisons of builds and processors.
//!
//! ```sh
//! cargo run --release --example throughput -- bce 2000 65536        # in cache
//! BCERS_NUM_THREADS=2 cargo run --release --example throughput -- bce 40 10000000
//! BCERS_NUM_THREADS=1 taskset -c 0 target/release/examples/throughput bce 300 65536
//! ```
//!
//! Arguments: the case (`bce`, `logits`, `focal`: forward, `bce_vg`, `logits_vg`, `focal_vg`:
//! value_and_grad; all `mean`, float32; `focal` is the sigmoid focal loss with `alpha` 0.25,
//! `gamma` 2), the number of calls, and n. Prints the fastest and the median call in
//! ns/element. Data: probabilities uniform in (1e-6, 1 - 1e-6), targets uniform in [0, 1]
//! (the focal loss's in {0, 1}), logits uniform in (-4, 4).

use bcers::{
    binary_cross_entropy, binary_cross_entropy_value_and_grad, binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_value_and_grad, sigmoid_focal_loss,
    sigmoid_focal_loss_value_and_grad, Reduction,
};
use ndarray::Array1;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: throughput bce|logits|focal|bce_vg|logits_vg|focal_vg CALLS N";
    let (case, calls, n) = match args.as_slice() {
        [_, case, calls, n] => (case.as_str(), calls.parse::<usize>()?, n.parse::<usize>()?),
        _ => return Err(usage.into()),
    };
    if calls == 0 || n == 0 {
        return Err(usage.into());
    }
    // xorshift64: reproducible data without a dependency.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut unit = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let x: Array1<f32> = (0..n)
        .map(|_| (1e-6 + (1.0 - 2e-6) * unit()) as f32)
        .collect();
    let y: Array1<f32> = (0..n).map(|_| unit() as f32).collect();
    let z: Array1<f32> = (0..n).map(|_| ((unit() - 0.5) * 8.0) as f32).collect();
    let t: Array1<f32> = (0..n)
        .map(|_| if unit() < 0.5 { 0.0 } else { 1.0 })
        .collect();
    let (alpha, gamma) = (0.25, 2.0);
    let mean = Reduction::Mean;
    let mut times = Vec::with_capacity(calls);
    let mut checksum = 0.0f64;
    for _ in 0..calls {
        let start = Instant::now();
        let loss = match case {
            "bce" => binary_cross_entropy(x.view(), y.view(), None, mean)?,
            "logits" => binary_cross_entropy_with_logits(z.view(), y.view(), None, None, mean)?,
            "bce_vg" => binary_cross_entropy_value_and_grad(x.view(), y.view(), None, mean)?.0,
            "logits_vg" => {
                binary_cross_entropy_with_logits_value_and_grad(
                    z.view(),
                    y.view(),
                    None,
                    None,
                    mean,
                )?
                .0
            }
            "focal" => sigmoid_focal_loss(z.view(), t.view(), alpha, gamma, None, mean)?,
            "focal_vg" => {
                sigmoid_focal_loss_value_and_grad(z.view(), t.view(), alpha, gamma, None, mean)?.0
            }
            _ => return Err(usage.into()),
        };
        times.push(start.elapsed().as_secs_f64());
        checksum += f64::from(loss.reduced().unwrap_or(f32::NAN));
    }
    times.sort_by(f64::total_cmp);
    let per_element = |t: f64| t * 1e9 / n as f64;
    println!(
        "{case} n={n}: fastest {:.4} ns/element, median {:.4} (mean loss {:.6})",
        per_element(times[0]),
        per_element(times[times.len() / 2]),
        checksum / calls as f64
    );
    Ok(())
}
