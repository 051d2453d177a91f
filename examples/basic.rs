//! The first example of torch's BCELoss tutorials, in Rust: loss and gradient of five
//! probabilities against soft targets, then the same with logits and a positive-class weight.
//!
//! Run with `cargo run --example basic`.

use bcers::{
    binary_cross_entropy, binary_cross_entropy_value_and_grad, binary_cross_entropy_with_logits,
    Reduction,
};
use ndarray::{array, Array2};

fn main() -> Result<(), bcers::Error> {
    let input = array![0.4498f32, 0.9845, 0.4576, 0.3494, 0.2434];
    let target = array![0.2345f32, 0.5565, 0.3468, 0.1444, 0.3546];

    let loss = binary_cross_entropy(input.view(), target.view(), None, Reduction::Mean)?;
    println!("BCE loss (mean): {:.4}", loss.reduced().unwrap_or(f32::NAN)); // torch: 0.8746

    let (loss, grad) =
        binary_cross_entropy_value_and_grad(input.view(), target.view(), None, Reduction::Mean)?;
    println!("value_and_grad: {:?}, grad {grad}", loss.reduced());

    // BCEWithLogitsLoss(pos_weight=ones(64)) on a (10, 64) batch of logits 1.5, all targets 1.
    let logits = Array2::<f32>::from_elem((10, 64), 1.5);
    let labels = Array2::<f32>::ones((10, 64));
    let pos_weight = ndarray::Array1::<f32>::ones(64);
    let loss = binary_cross_entropy_with_logits(
        logits.view(),
        labels.view(),
        None,
        Some(pos_weight.view().into_dyn()),
        Reduction::Mean,
    )?;
    println!(
        "BCE with logits (mean): {:.4}",
        loss.reduced().unwrap_or(f32::NAN)
    ); // torch: 0.2014
    Ok(())
}
