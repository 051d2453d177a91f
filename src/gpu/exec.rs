//! Running one call: plan the passes, encode the dispatches, read back what must come back.

use super::array::{buffer_with, read_back, GpuArray};
use super::device::{ErrorScope, Job};
use super::plan::{broadcast_strides, passes, Geometry, Mode, Pass, MAX_DIMS};
use crate::error::Error;
use crate::parallel::{format_value, Interrupt};

/// The operands of one call; `target` has the input's shape, the others broadcast to it.
pub(crate) struct Operands<'a> {
    pub x: &'a GpuArray,
    pub y: &'a GpuArray,
    pub w: Option<&'a GpuArray>,
    pub pw: Option<&'a GpuArray>,
    pub g: Option<&'a GpuArray>,
}

/// What a call produced.
pub(crate) struct Outcome {
    /// The float64 sum of the partial sums (for jobs that sum).
    pub sum: f64,
    /// The losses, or the gradient.
    pub first: Option<GpuArray>,
    /// The gradient of `LossGrad`.
    pub second: Option<GpuArray>,
}

/// Buffer `c` of `a`.
fn chunk_of(a: &GpuArray, c: usize) -> Result<&wgpu::Buffer, Error> {
    a.chunks
        .get(c)
        .ok_or_else(|| Error::Gpu("an array has fewer buffers than its shape needs".to_owned()))
}

/// Bytes of the uniform block of one pass (`Params` in `loss.wgsl`).
const PARAMS_BYTES: u64 = 60 * 4;

/// The uniform block of one pass, as the shader lays it out.
fn params(
    geometry: &Geometry,
    pass: &Pass,
    chunk: u64,
    groups_x: u32,
    scale: f32,
    partial_base: u32,
    flag_base: u32,
) -> [u32; 60] {
    let mut p = [0u32; 60];
    p[0] = pass.len as u32;
    p[1] = (pass.start - pass.chunk as u64 * chunk) as u32;
    p[2] = groups_x;
    p[3] = scale.to_bits();
    p[4] = partial_base;
    p[5] = flag_base;
    // Shape and start coordinates, innermost axis first.
    let start = geometry.coords(pass.start);
    for (d, (&len, &c)) in geometry.shape.iter().zip(&start).rev().enumerate() {
        if d < MAX_DIMS {
            p[8 + d] = len as u32;
            p[16 + d] = c as u32;
        }
    }
    for (k, op) in geometry.ops.iter().enumerate() {
        let o = 24 + 12 * k;
        p[o] = op.mode as u32;
        if op.mode == Mode::Strided {
            let inner_first: Vec<u64> = op.strides.iter().rev().copied().collect();
            let nd = inner_first
                .iter()
                .rposition(|&s| s != 0)
                .map_or(0, |d| d + 1);
            p[o + 1] = nd as u32;
            // Offsets are taken modulo 2^32 in the shader: wrap the base and strides alike.
            p[o + 2] = (pass.op_chunk[k] as u64).wrapping_mul(chunk) as u32;
            for (d, &s) in inner_first.iter().enumerate().take(MAX_DIMS) {
                p[o + 4 + d] = s as u32;
            }
        }
    }
    p
}

/// The index (one entry per axis) of element `flat` (C order) of an array of `shape`.
fn unravel(mut flat: u64, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &len) in index.iter_mut().zip(shape).rev() {
        let len = len.max(1) as u64;
        *slot = (flat % len) as usize;
        flat /= len;
    }
    index
}

/// Runs `job` of the logits loss (`logits`) or BCE over `ops`, every gradient times `scale`.
pub(crate) fn execute<'a>(
    logits: bool,
    job: Job,
    ops: &Operands<'a>,
    scale: f32,
    interrupt: Interrupt<'_>,
) -> Result<Outcome, Error> {
    let gpu = &ops.x.gpu;
    let inner = &gpu.inner;
    inner.check_process()?;
    let shape = ops.x.shape.clone();
    let n = ops.x.len();
    let strides = |arg: &'static str, a: Option<&GpuArray>| {
        a.map(|a| broadcast_strides(arg, &a.shape, &shape).map(|s| (a.len(), s)))
            .transpose()
    };
    let w = strides("weight", ops.w)?;
    let pw = strides("pos_weight", ops.pw)?;
    let g = strides("grad_output", ops.g)?;
    let others = [Some(ops.y), ops.w, ops.pw, ops.g];
    if others.iter().flatten().any(|a| !a.gpu.same_device(gpu)) {
        return Err(Error::GpuDeviceMismatch);
    }
    let elementwise = match job {
        Job::Sum => 0,
        Job::Loss | Job::Grad | Job::SumGrad => 1,
        Job::LossGrad => 2,
    };
    if n == 0 {
        let empty = || GpuArray::output(gpu, &shape);
        return Ok(Outcome {
            sum: 0.0,
            first: (elementwise >= 1).then(empty).transpose()?,
            second: (elementwise >= 2).then(empty).transpose()?,
        });
    }
    let geometry = Geometry::new(&shape, [w, pw, g])?;
    let chunk = inner.chunk as u64;
    let max_groups = u64::from(inner.max_groups);
    let tile = job.tile();
    let max_len = tile.saturating_mul(max_groups).saturating_mul(max_groups);
    let plan = passes(&geometry, n as u64, chunk, max_len);

    let scope = ErrorScope::push(&inner.device);
    let result = (|| {
        let pipeline = inner.pipeline(logits, job)?;
        let first = (elementwise >= 1)
            .then(|| GpuArray::output(gpu, &shape))
            .transpose()?;
        let second = (elementwise >= 2)
            .then(|| GpuArray::output(gpu, &shape))
            .transpose()?;

        // Partial sums: one per workgroup, pass after pass.
        let tiles: Vec<u64> = plan.iter().map(|p| p.len.div_ceil(tile)).collect();
        let total_tiles: u64 = tiles.iter().sum();
        let partials = if job.sums() {
            let bytes = total_tiles * 4;
            if bytes > inner.max_binding {
                return Err(Error::Gpu(
                    "the array is too large for one call's partial sums".to_owned(),
                ));
            }
            Some(inner.create_buffer(&wgpu::BufferDescriptor {
                label: Some("bcers partial sums"),
                size: bytes.max(4),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })?)
        } else {
            None
        };
        // BCE's range check: the first bad input and target index of each pass.
        let flags = if logits {
            None
        } else {
            let init = vec![u32::MAX; 2 * plan.len()];
            Some(buffer_with(
                inner,
                "bcers range flags",
                bytemuck::cast_slice(&init),
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            )?)
        };

        // Every pass's uniforms in one buffer, at the device's offset alignment.
        let align = u64::from(inner.device.limits().min_uniform_buffer_offset_alignment).max(4);
        let stride = PARAMS_BYTES.div_ceil(align) * align;
        let mut uniform_bytes = vec![0u8; (stride * plan.len() as u64) as usize];
        let mut dispatches = Vec::with_capacity(plan.len());
        let mut partial_base = 0u64;
        for (i, (pass, &groups)) in plan.iter().zip(&tiles).enumerate() {
            let groups_x = groups.min(max_groups).max(1);
            let groups_y = groups.div_ceil(groups_x);
            let p = params(
                &geometry,
                pass,
                chunk,
                groups_x as u32,
                scale,
                partial_base as u32,
                (2 * i) as u32,
            );
            let at = (stride * i as u64) as usize;
            if let Some(dst) = uniform_bytes.get_mut(at..at + PARAMS_BYTES as usize) {
                dst.copy_from_slice(bytemuck::cast_slice(&p));
            }
            dispatches.push((groups_x as u32, groups_y as u32));
            partial_base += groups;
        }
        let uniforms = buffer_with(
            inner,
            "bcers pass parameters",
            &uniform_bytes,
            wgpu::BufferUsages::UNIFORM,
        )?;

        let operand =
            |k: usize, a: Option<&'a GpuArray>, pass: &Pass| -> Result<&'a wgpu::Buffer, Error> {
                match (a, geometry.ops[k].mode) {
                    (None, _) | (_, Mode::Absent) => Ok(&inner.dummy_read),
                    (Some(a), Mode::Scalar) => chunk_of(a, 0),
                    (Some(a), _) => chunk_of(a, pass.op_chunk[k]),
                }
            };
        let mut bind_groups = Vec::with_capacity(plan.len());
        for (i, pass) in plan.iter().enumerate() {
            let out0 = match &first {
                Some(a) => chunk_of(a, pass.chunk)?,
                None => &inner.dummy_write[0],
            };
            let out1 = match (&partials, &second) {
                (Some(p), _) => p,
                (None, Some(a)) => chunk_of(a, pass.chunk)?,
                (None, None) => &inner.dummy_write[1],
            };
            let buffers = [
                chunk_of(ops.x, pass.chunk)?,
                chunk_of(ops.y, pass.chunk)?,
                operand(0, ops.w, pass)?,
                operand(1, ops.pw, pass)?,
                operand(2, ops.g, pass)?,
                out0,
                out1,
                flags.as_ref().unwrap_or(&inner.dummy_write[2]),
            ];
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &uniforms,
                    offset: stride * i as u64,
                    size: wgpu::BufferSize::new(PARAMS_BYTES),
                }),
            }];
            for (b, buffer) in buffers.into_iter().enumerate() {
                entries.push(wgpu::BindGroupEntry {
                    binding: b as u32 + 1,
                    resource: buffer.as_entire_binding(),
                });
            }
            bind_groups.push(inner.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("bcers pass bindings"),
                layout: &inner.layout,
                entries: &entries,
            }));
        }

        let mut encoder = inner
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("bcers loss"),
            });
        {
            let mut cpass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("bcers loss"),
                timestamp_writes: None,
            });
            cpass.set_pipeline(&pipeline);
            for (bind_group, &(gx, gy)) in bind_groups.iter().zip(&dispatches) {
                cpass.set_bind_group(0, bind_group, &[]);
                cpass.dispatch_workgroups(gx, gy, 1);
            }
        }

        let mut sources: Vec<(&wgpu::Buffer, u64, u64)> = Vec::new();
        if let Some(p) = &partials {
            sources.push((p, 0, total_tiles * 4));
        }
        if let Some(f) = &flags {
            sources.push((f, 0, plan.len() as u64 * 8));
        }
        let mut sum = 0.0;
        if sources.is_empty() {
            inner.queue.submit([encoder.finish()]);
        } else {
            let mut bytes = read_back(inner, encoder, &sources, interrupt)?.into_iter();
            if partials.is_some() {
                let part = bytes.next().unwrap_or_default();
                // In order, in float64: the same bits on every run.
                sum = bytemuck::pod_collect_to_vec::<u8, f32>(&part)
                    .into_iter()
                    .map(f64::from)
                    .sum();
            }
            if flags.is_some() {
                let f = bytemuck::pod_collect_to_vec::<u8, u32>(&bytes.next().unwrap_or_default());
                let first_bad = |which: usize| {
                    plan.iter()
                        .zip(f.chunks_exact(2))
                        .filter_map(|(pass, pair)| {
                            let local = pair.get(which).copied().unwrap_or(u32::MAX);
                            (local != u32::MAX).then(|| pass.start + u64::from(local))
                        })
                        .min()
                };
                // torch checks element by element, the input before the target.
                let culprit = match (first_bad(0), first_bad(1)) {
                    (None, None) => None,
                    (Some(a), Some(b)) if b < a => Some(("target", ops.y, b)),
                    (Some(a), _) => Some(("input", ops.x, a)),
                    (None, Some(b)) => Some(("target", ops.y, b)),
                };
                if let Some((arg, array, flat)) = culprit {
                    return Err(Error::OutOfRange {
                        arg,
                        index: unravel(flat, &shape),
                        value: format_value(array.element(flat)?),
                    });
                }
            }
        }
        Ok(Outcome { sum, first, second })
    })();
    scope.pop(inner)?;
    result
}
