//! The error type.

use core::fmt;

/// Which loss a call computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossKind {
    /// Binary cross entropy on probabilities.
    Bce,
    /// Binary cross entropy on logits.
    BceWithLogits,
}

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
    /// A reduction name other than `"none"`, `"mean"` or `"sum"`.
    InvalidReduction(String),
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
            Error::GpuAfterFork => f.write_str(
                "the GPU device was opened before this process was forked, and a GPU device \
                 cannot cross a fork: use the GPU in the parent only, or start child processes \
                 with multiprocessing's 'spawn' or 'forkserver' method",
            ),
        }
    }
}

impl std::error::Error for Error {}
