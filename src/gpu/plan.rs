//! Where each operand's elements are, and how a call is cut into passes: host-side index
//! arithmetic, no device.
//!
//! Every device array is stored C-contiguous as buffers of `chunk` elements (the last one
//! shorter), each small enough to be bound whole. A pass covers consecutive input elements
//! inside one input buffer; the outputs (fresh arrays of the input's shape) share the input's
//! buffer boundaries, and so does an operand with as many elements as the input. A broadcast
//! operand (`weight`, `pos_weight`, `grad_output`, `mask` of a smaller shape) is read through strides:
//! if it fits one buffer it is bound whole; if not, a pass is split (in halves) until the
//! operand elements it touches lie in one of the operand's buffers.

use crate::error::Error;

/// The most axes the shader walks after merging (`array<vec4<u32>, 2>` in the uniforms).
pub(crate) const MAX_DIMS: usize = 8;

/// The broadcast operands: `weight`, `pos_weight`, `grad_output`, `mask` (the `ops` of the
/// shader's uniforms).
pub(crate) const OPERANDS: usize = 4;

/// How the shader finds an operand's element (the `mode` of `loss.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Absent: the value 1.
    Absent = 0,
    /// As many elements as the input: the input's index.
    Like = 1,
    /// One element.
    Scalar = 2,
    /// Broadcast through strides.
    Strided = 3,
}

/// One broadcast operand's geometry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OperandGeometry {
    pub mode: Mode,
    /// Its number of elements.
    pub len: usize,
    /// Its stride along each axis of [`Geometry::shape`] (0 where broadcast).
    pub strides: Vec<u64>,
}

/// The input's shape with its axes merged as far as every strided operand allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// The merged shape, outermost axis first, no axis of length 1.
    pub shape: Vec<u64>,
    /// `weight`, `pos_weight`, `grad_output`, `mask` (absent ones as [`Mode::Absent`]).
    pub ops: [OperandGeometry; OPERANDS],
}

/// Checks that `shape` broadcasts to `input` without enlarging it (NumPy's rules, trailing
/// axes aligned), and returns its strides along the input's axes (0 where broadcast).
pub(crate) fn broadcast_strides(
    arg: &'static str,
    shape: &[usize],
    input: &[usize],
) -> Result<Vec<u64>, Error> {
    let err = || Error::Broadcast {
        arg,
        shape: shape.to_vec(),
        input: input.to_vec(),
    };
    if shape.len() > input.len() {
        return Err(err());
    }
    let lead = input.len() - shape.len();
    let mut strides = vec![0u64; input.len()];
    let mut step = 1u64;
    for (j, &n) in shape.iter().enumerate().rev() {
        let want = input.get(lead + j).copied().unwrap_or(0);
        if n != want && n != 1 {
            return Err(err());
        }
        if n != 1 {
            if let Some(s) = strides.get_mut(lead + j) {
                *s = step;
            }
        }
        step = step.saturating_mul(n as u64);
    }
    Ok(strides)
}

impl Geometry {
    /// The geometry of a call on an input of shape `input` (with `n > 0` elements), the
    /// operands given as `(mode-deciding length, strides along the input's axes)`.
    pub(crate) fn new(
        input: &[usize],
        ops: [Option<(usize, Vec<u64>)>; OPERANDS],
    ) -> Result<Self, Error> {
        let n: usize = input.iter().product();
        let ops = ops.map(|op| match op {
            None => OperandGeometry {
                mode: Mode::Absent,
                len: 0,
                strides: Vec::new(),
            },
            Some((len, strides)) => OperandGeometry {
                mode: if len == n {
                    Mode::Like
                } else if len == 1 {
                    Mode::Scalar
                } else {
                    Mode::Strided
                },
                len,
                strides,
            },
        });
        let strided: Vec<usize> = (0..OPERANDS)
            .filter(|&k| ops[k].mode == Mode::Strided)
            .collect();
        if strided.is_empty() {
            return Ok(Geometry {
                shape: vec![n as u64],
                ops: ops.map(|op| OperandGeometry {
                    strides: vec![0],
                    ..op
                }),
            });
        }
        // Drop axes of length 1, then merge each axis into the next inner one where every
        // strided operand walks the two as one.
        let mut shape: Vec<u64> = Vec::new();
        let mut strides: [Vec<u64>; OPERANDS] = Default::default();
        for (d, &len) in input.iter().enumerate() {
            if len == 1 {
                continue;
            }
            let len = len as u64;
            let mergeable = !shape.is_empty()
                && strided.iter().all(|&k| {
                    let outer = strides[k].last().copied().unwrap_or(0);
                    let inner = ops[k].strides.get(d).copied().unwrap_or(0);
                    outer == inner.saturating_mul(len)
                });
            if mergeable {
                if let Some(last) = shape.last_mut() {
                    *last *= len;
                }
                for &k in &strided {
                    if let Some(s) = strides[k].last_mut() {
                        *s = ops[k].strides.get(d).copied().unwrap_or(0);
                    }
                }
            } else {
                shape.push(len);
                for &k in &strided {
                    strides[k].push(ops[k].strides.get(d).copied().unwrap_or(0));
                }
            }
        }
        if shape.len() > MAX_DIMS {
            return Err(Error::GpuLayout(format!(
                "the broadcast of weight, pos_weight, grad_output or mask to the input's shape {} \
                 needs {} axes after merging, more than the {MAX_DIMS} the GPU kernels walk",
                crate::error::Shape(input),
                shape.len()
            )));
        }
        if shape.iter().any(|&len| len > i32::MAX as u64) {
            return Err(Error::GpuLayout(format!(
                "an axis of the input's shape {} is too long (over 2^31 - 1 elements) to \
                 broadcast weight, pos_weight, grad_output or mask along on the GPU",
                crate::error::Shape(input)
            )));
        }
        let mut ops = ops;
        for (k, op) in ops.iter_mut().enumerate() {
            op.strides = if op.mode == Mode::Strided {
                core::mem::take(&mut strides[k])
            } else {
                vec![0; shape.len()]
            };
        }
        Ok(Geometry { shape, ops })
    }

    /// The coordinates of element `index` (C order), outermost axis first.
    pub(crate) fn coords(&self, mut index: u64) -> Vec<u64> {
        let mut c = vec![0u64; self.shape.len()];
        for (slot, &len) in c.iter_mut().zip(&self.shape).rev() {
            *slot = index % len.max(1);
            index /= len.max(1);
        }
        c
    }

    /// The smallest and largest offset operand `k` reads for input elements `a..b` (`a < b`).
    pub(crate) fn touched(&self, k: usize, a: u64, b: u64) -> (u64, u64) {
        let strides = &self.ops[k].strides;
        let lo = self.coords(a);
        let hi = self.coords(b.saturating_sub(1).max(a));
        extent(&self.shape, strides, &lo, &hi)
    }
}

/// The smallest and largest of `sum(c[d] * strides[d])` over the coordinates `c` from `lo` to
/// `hi` (inclusive, C order), for non-negative strides.
fn extent(shape: &[u64], strides: &[u64], lo: &[u64], hi: &[u64]) -> (u64, u64) {
    let (Some(&s), Some(&l), Some(&h)) = (strides.first(), lo.first(), hi.first()) else {
        return (0, 0);
    };
    let (shape_r, strides_r) = (
        shape.get(1..).unwrap_or(&[]),
        strides.get(1..).unwrap_or(&[]),
    );
    let (lo_r, hi_r) = (lo.get(1..).unwrap_or(&[]), hi.get(1..).unwrap_or(&[]));
    let full_max: u64 = shape_r
        .iter()
        .zip(strides_r)
        .map(|(&n, &st)| n.saturating_sub(1) * st)
        .sum();
    if l == h {
        let (a, b) = extent(shape_r, strides_r, lo_r, hi_r);
        return (l * s + a, l * s + b);
    }
    let last: Vec<u64> = shape_r.iter().map(|&n| n.saturating_sub(1)).collect();
    let zeros = vec![0u64; shape_r.len()];
    // Row `l` from `lo_r` to its end, row `h` from its start to `hi_r`, full rows between.
    let (a1, b1) = if lo_r.iter().all(|&c| c == 0) {
        (0, full_max)
    } else {
        extent(shape_r, strides_r, lo_r, &last)
    };
    let (a3, b3) = if hi_r == last.as_slice() {
        (0, full_max)
    } else {
        extent(shape_r, strides_r, &zeros, hi_r)
    };
    let mut min = (l * s + a1).min(h * s + a3);
    let mut max = (l * s + b1).max(h * s + b3);
    if h > l + 1 {
        min = min.min((l + 1) * s);
        max = max.max((h - 1) * s + full_max);
    }
    (min, max)
}

/// One dispatch: input elements `start..start + len`, inside input buffer `chunk`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pass {
    pub start: u64,
    pub len: u64,
    /// The input (and output) buffer.
    pub chunk: usize,
    /// For each operand, the buffer bound (0 for absent ones).
    pub op_chunk: [usize; OPERANDS],
}

/// Cuts `n` input elements into passes: inside one input buffer of `chunk` elements, at most
/// `max_len` elements, and each strided operand's touched elements inside one of its buffers.
pub(crate) fn passes(geometry: &Geometry, n: u64, chunk: u64, max_len: u64) -> Vec<Pass> {
    let chunk = chunk.max(1);
    let max_len = max_len.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let c = start / chunk;
        let end = ((c + 1) * chunk).min(n).min(start + max_len);
        split(geometry, start, end, c as usize, chunk, &mut out);
        start = end;
    }
    out
}

fn split(geometry: &Geometry, a: u64, b: u64, c: usize, chunk: u64, out: &mut Vec<Pass>) {
    let mut op_chunk = [0usize; OPERANDS];
    for (k, slot) in op_chunk.iter_mut().enumerate() {
        let op = &geometry.ops[k];
        match op.mode {
            Mode::Absent | Mode::Scalar => {}
            Mode::Like => *slot = c,
            Mode::Strided => {
                if op.len as u64 <= chunk {
                    continue;
                }
                let (lo, hi) = geometry.touched(k, a, b);
                if lo / chunk != hi / chunk && b - a > 1 {
                    let mid = a + (b - a) / 2;
                    split(geometry, a, mid, c, chunk, out);
                    split(geometry, mid, b, c, chunk, out);
                    return;
                }
                *slot = (lo / chunk) as usize;
            }
        }
    }
    out.push(Pass {
        start: a,
        len: b - a,
        chunk: c,
        op_chunk,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(g: &Geometry, k: usize, a: u64, b: u64) -> (u64, u64) {
        let offs: Vec<u64> = (a..b)
            .map(|i| {
                g.coords(i)
                    .iter()
                    .zip(&g.ops[k].strides)
                    .map(|(c, s)| c * s)
                    .sum()
            })
            .collect();
        (*offs.iter().min().unwrap(), *offs.iter().max().unwrap())
    }

    fn geometry(input: &[usize], w: &[usize]) -> Geometry {
        let strides = broadcast_strides("weight", w, input).unwrap();
        let len = w.iter().product();
        Geometry::new(input, [Some((len, strides)), None, None, None]).unwrap()
    }

    #[test]
    fn extent_matches_brute_force() {
        for (input, w) in [
            (vec![3usize, 4, 5], vec![4usize, 1]),
            (vec![3, 4, 5], vec![3, 1, 5]),
            (vec![2, 3, 4, 5], vec![3, 1, 5]),
            (vec![7, 6], vec![6]),
            (vec![4, 1, 6, 3], vec![4, 1, 1, 3]),
        ] {
            let g = geometry(&input, &w);
            let n: u64 = input.iter().product::<usize>() as u64;
            for a in 0..n {
                for b in a + 1..=n {
                    assert_eq!(
                        g.touched(0, a, b),
                        brute(&g, 0, a, b),
                        "{input:?} {w:?} {a}..{b}"
                    );
                }
            }
        }
    }

    #[test]
    fn axes_merge() {
        // A (C,) weight over (N, C): two axes; over (N, 1, C): still two.
        assert_eq!(geometry(&[5, 3], &[3]).shape, vec![5, 3]);
        assert_eq!(geometry(&[5, 1, 3], &[3]).shape, vec![5, 3]);
        // (A, B, 1) over (A, B, C): A and B merge.
        assert_eq!(geometry(&[2, 3, 4], &[2, 3, 1]).shape, vec![6, 4]);
        assert_eq!(geometry(&[2, 3, 4], &[2, 3, 1]).ops[0].strides, vec![1, 0]);
        // Same size: read like the input.
        assert_eq!(geometry(&[2, 3], &[2, 3]).ops[0].mode, Mode::Like);
        assert_eq!(geometry(&[2, 3], &[1, 1]).ops[0].mode, Mode::Scalar);
    }

    #[test]
    fn broadcast_rules() {
        assert!(broadcast_strides("weight", &[1, 2, 3], &[2, 3]).is_err());
        assert!(broadcast_strides("weight", &[4], &[2, 3]).is_err());
        assert_eq!(
            broadcast_strides("weight", &[2, 1], &[2, 3]).unwrap(),
            vec![1, 0]
        );
        assert_eq!(
            broadcast_strides("weight", &[], &[2, 3]).unwrap(),
            vec![0, 0]
        );
    }

    #[test]
    fn passes_cover_and_respect_chunks() {
        for (input, w, chunk, max_len) in [
            (vec![2usize, 50], vec![50usize], 16u64, 1000u64),
            (vec![9, 7], vec![9, 1], 5, 1000),
            (vec![3, 4, 5], vec![3, 1, 5], 4, 7),
            (vec![64], vec![64], 10, 3),
        ] {
            let g = geometry(&input, &w);
            let n: u64 = input.iter().product::<usize>() as u64;
            let ps = passes(&g, n, chunk, max_len);
            let mut next = 0;
            for p in &ps {
                assert_eq!(p.start, next);
                assert!(p.len >= 1 && p.len <= max_len);
                assert_eq!(p.start / chunk, (p.start + p.len - 1) / chunk);
                assert_eq!(p.chunk as u64, p.start / chunk);
                if g.ops[0].mode == Mode::Strided && g.ops[0].len as u64 > chunk {
                    let (lo, hi) = g.touched(0, p.start, p.start + p.len);
                    assert_eq!(lo / chunk, hi / chunk);
                    assert_eq!(p.op_chunk[0] as u64, lo / chunk);
                }
                next = p.start + p.len;
            }
            assert_eq!(next, n);
        }
    }
}
