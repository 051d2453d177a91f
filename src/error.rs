//! The error type.

use core::fmt;

use crate::float::Float;

/// Why a call was refused. Nothing in the crate panics on input a caller controls: every bad
/// input is one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// `target` does not have exactly the input's shape.
    TargetShape {
        /// The input's shape.
        input: Vec<usize>,
        /// The target's shape.
        target: Vec<usize>,
    },
    /// An argument that broadcasts to the input's shape (`weight`, `pos_weight`, or
    /// `grad_output` with no reduction) does not, or would enlarge it.
    Broadcast {
        /// The argument's name.
        arg: &'static str,
        /// The argument's shape.
        shape: Vec<usize>,
        /// The input's shape.
        input: Vec<usize>,
    },
    /// `grad_output` of a reduced loss is not a scalar.
    GradOutputNotScalar {
        /// The reduction of the loss (`"mean"` or `"sum"`).
        reduction: &'static str,
        /// The shape that was given.
        shape: Vec<usize>,
    },
    /// An element of `input` or `target` of BCE on probabilities is outside `[0, 1]` (or NaN).
    OutOfRange {
        /// `"input"` or `"target"`.
        arg: &'static str,
        /// The index of the first such element (C order, input before target), one entry per axis.
        index: Vec<usize>,
        /// Its value, as the element type prints it (`NaN` for a NaN).
        value: String,
    },
    /// A reduction name other than `"none"`, `"mean"`, `"sum"` or `"weighted_mean"` (or its
    /// alias `"mean_with_sample_weight"`).
    InvalidReduction(String),
    /// An axis of a reduction that the input does not have.
    AxisOutOfBounds {
        /// The axis as given (negative counts from the end).
        axis: isize,
        /// The input's number of axes.
        ndim: usize,
    },
    /// An axis named twice in a reduction's axes.
    DuplicateAxis,
    /// Axes given to a call that does not reduce (`reduction = none`).
    AxisWithoutReduction,
    /// `grad_output` of a reduction over some axes does not have the reduced loss's shape.
    GradOutputShape {
        /// The reduced loss's shape.
        expected: Vec<usize>,
        /// The shape that was given.
        shape: Vec<usize>,
    },
    /// A loss parameter outside its domain (the focal loss's `alpha` or `gamma`).
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// Its value, as Python prints a float.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// An argument the loss does not take (`pos_weight` of BCE on probabilities or of the
    /// focal loss).
    Unsupported {
        /// The loss's function name.
        loss: &'static str,
        /// The argument.
        arg: &'static str,
    },
    /// A thread count outside `1..=`[`crate::MAX_THREADS`].
    InvalidThreadCount {
        /// The count asked for.
        requested: usize,
    },
    /// An output (or a buffer) could not be allocated.
    OutOfMemory {
        /// What was being allocated.
        what: &'static str,
        /// Its size in bytes (0 where the device does not say).
        bytes: u64,
    },
    /// The call's interrupt check (see the Python bindings: Ctrl-C) asked it to stop.
    Interrupted,
    /// The thread pool could not be started.
    ThreadPool(String),
    /// A SIMD level this processor cannot run.
    UnsupportedSimdLevel {
        /// The level's name.
        level: &'static str,
    },
    /// The GPU path (`bcers::gpu`, the `gpu` feature) found no usable GPU adapter; the text
    /// says what is missing.
    GpuUnavailable(String),
    /// The GPU reported an error (out of memory, a lost device, a failed transfer).
    Gpu(String),
    /// A broadcast the GPU kernels cannot index (too many axes after merging, or an axis too
    /// long); the CPU functions take it.
    GpuLayout(String),
    /// Arrays of one call live on different GPU devices (different `bcers::gpu::Gpu` handles).
    GpuDeviceMismatch,
    /// The GPU device was opened before this process was forked from its parent: a GPU
    /// device cannot cross a fork.
    GpuAfterFork,
    /// A bug of bcers: an invariant of its plan did not hold. Please report it.
    Internal(&'static str),
    /// A caller's buffer for an output ([`crate::Request::derivatives_into`]) that the call
    /// cannot take: for an output not asked for, a reduced value, or of another length.
    OutputBuffer {
        /// The output: `value`, `grad`, `grad_target` or `hess`.
        output: &'static str,
        /// Why, as the end of a sentence.
        reason: String,
    },
}

/// Formats a shape the way Python prints a tuple: `()`, `(3,)`, `(2, 3)`.
pub(crate) struct Shape<'a>(pub &'a [usize]);

impl fmt::Display for Shape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("()"),
            [n] => write!(f, "({n},)"),
            [first, rest @ ..] => {
                write!(f, "({first}")?;
                for n in rest {
                    write!(f, ", {n}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Formats an index the way Python subscripts an array: `[()]`, `[3]`, `[2, 0]`.
pub(crate) struct Index<'a>(pub &'a [usize]);

impl fmt::Display for Index<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("[()]"),
            [first, rest @ ..] => {
                write!(f, "[{first}")?;
                for i in rest {
                    write!(f, ", {i}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TargetShape { input, target } => write!(
                f,
                "Target size {} must be the same as input size {}",
                Shape(target),
                Shape(input)
            ),
            Error::Broadcast { arg, shape, input } => write!(
                f,
                "{arg} of shape {} cannot be broadcast to the input's shape {} (it may have no \
                 more dimensions than the input, each of length 1 or equal to the input's)",
                Shape(shape),
                Shape(input)
            ),
            Error::GradOutputNotScalar { reduction, shape } => write!(
                f,
                "grad_output must be a scalar for reduction='{reduction}', got shape {}",
                Shape(shape)
            ),
            Error::OutOfRange { arg, index, value } => {
                write!(
                    f,
                    "all elements of {arg} should be between 0 and 1; {arg}{} is {value}",
                    Index(index)
                )
            }
            Error::InvalidReduction(name) => write!(f, "{name} is not a valid value for reduction"),
            Error::AxisOutOfBounds { axis, ndim } => write!(
                f,
                "axis {axis} is out of bounds for array of dimension {ndim}"
            ),
            Error::DuplicateAxis => f.write_str("duplicate value in 'axis'"),
            Error::OutputBuffer { output, reason } => {
                write!(f, "the buffer for {output} {reason}")
            }
            Error::AxisWithoutReduction => f.write_str(
                "axis reduces over some axes; it needs reduction='mean', 'sum' or \
                 'weighted_mean', not 'none'",
            ),
            Error::GradOutputShape { expected, shape } => write!(
                f,
                "grad_output must have the reduced loss's shape {}, got shape {}",
                Shape(expected),
                Shape(shape)
            ),
            Error::InvalidParameter {
                name,
                value,
                expected,
            } => write!(f, "{name} must be {expected}, got {value}"),
            Error::Unsupported { loss, arg } => write!(f, "{loss} takes no {arg}"),
            Error::InvalidThreadCount { requested } => write!(
                f,
                "the number of threads must be from 1 to {}, got {requested}",
                crate::MAX_THREADS
            ),
            Error::OutOfMemory { what, bytes: 0 } => {
                write!(f, "out of memory: could not allocate {what}")
            }
            Error::OutOfMemory { what, bytes } => {
                write!(
                    f,
                    "out of memory: could not allocate {bytes} bytes for {what}"
                )
            }
            Error::Interrupted => f.write_str("the call was interrupted"),
            Error::ThreadPool(why) => write!(f, "could not start the thread pool: {why}"),
            Error::UnsupportedSimdLevel { level } => {
                write!(f, "this processor cannot run the SIMD level '{level}'")
            }
            Error::GpuUnavailable(why) => f.write_str(why),
            Error::Gpu(why) => write!(f, "GPU error: {why}"),
            Error::GpuLayout(why) => f.write_str(why),
            Error::GpuDeviceMismatch => f.write_str(
                "the arrays of one call live on different GPU devices; upload them with the \
                 same Gpu handle",
            ),
            Error::Internal(what) => write!(
                f,
                "bcers: internal error ({what}); please report it with the call that caused it"
            ),
            Error::GpuAfterFork => f.write_str(
                "the GPU device was opened before this process was forked, and a GPU device \
                 cannot cross a fork: use the GPU in the parent only, or start child processes \
                 with multiprocessing's 'spawn' or 'forkserver' method",
            ),
        }
    }
}

impl std::error::Error for Error {}

/// A value for a message, as Python prints a float (and NumPy a float32): the shortest digits
/// that give the value back in its type, positional from 1e-4 to below 1e16 (`2.0`, `0.0001`,
/// `-0.0`), scientific with at least two exponent digits elsewhere (`1e-05`, `1.5e+300`);
/// `inf`, `-inf`, and `NaN` for any NaN.
pub(crate) fn format_value<F: Float>(v: F) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v == F::INFINITY || v == -F::INFINITY {
        return if v > F::ZERO { "inf" } else { "-inf" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits: `-1.25e-7`, `2e0`.
    let sci = format!("{v:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let body = if (-4..16).contains(&exponent) {
        if exponent >= 0 {
            let point = exponent as usize + 1;
            let int: String = digits
                .chars()
                .chain(core::iter::repeat('0'))
                .take(point.max(digits.len()))
                .collect();
            let (whole, frac) = int.split_at(point);
            let frac = if frac.is_empty() { "0" } else { frac };
            format!("{whole}.{frac}")
        } else {
            let zeros = "0".repeat((-exponent - 1) as usize);
            format!("0.{zeros}{digits}")
        }
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let point = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exponent < 0 { '-' } else { '+' };
        format!("{first}{point}e{esign}{:02}", exponent.unsigned_abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_python_prints_floats() {
        for (v, want) in [
            (0.0f64, "0.0"),
            (-0.0, "-0.0"),
            (1.5, "1.5"),
            (2.0, "2.0"),
            (-0.25, "-0.25"),
            (1e-4, "0.0001"),
            (1.25e-5, "1.25e-05"),
            (123456.75, "123456.75"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (-1.5e300, "-1.5e+300"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "NaN"),
            (-f64::NAN, "NaN"),
        ] {
            assert_eq!(format_value(v), want, "{v:e}");
        }
        // float32 values: their own shortest digits, not those of the float64 of equal value.
        for (v, want) in [
            (1.1f32, "1.1"),
            (123456789.0, "123456790.0"),
            (-1e-30, "-1e-30"),
            (3.4028235e38, "3.4028235e+38"),
            (1.0000001, "1.0000001"),
        ] {
            assert_eq!(format_value(v), want, "{v:e}");
        }
    }
}
