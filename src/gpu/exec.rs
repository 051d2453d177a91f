//! Running one call's plan: cut it into passes, encode the dispatches, read back what must
//! come back (the partial sums, BCE's range flags).

use super::array::{buffer_with, read_back, GpuArray};
use super::device::{ErrorScope, PipelineKey, MAX_SLOTS};
use super::plan::{broadcast_strides, passes, Geometry, Mode, Pass, MAX_DIMS, OPERANDS};
use crate::cpu::Interrupt;
use crate::error::{format_value, Error};

/// The operands of one call; `target` has the input's shape, the others broadcast to it.
pub(crate) struct Operands<'a> {
    pub x: &'a GpuArray,
    pub y: &'a GpuArray,
    pub w: Option<&'a GpuArray>,
    pub pw: Option<&'a GpuArray>,
    pub g: Option<&'a GpuArray>,
    /// The mask: elements where it is 0 are left out.
    pub m: Option<&'a GpuArray>,
}

/// Buffer `c` of `a`.
fn chunk_of(a: &GpuArray, c: usize) -> Result<&wgpu::Buffer, Error> {
    a.chunks
        .get(c)
        .ok_or_else(|| Error::Gpu("an array has fewer buffers than its shape needs".to_owned()))
}

/// Words of the uniform block of one pass (`Params` in `kernel.wgsl`): 12 scalars, the shape
/// and start coordinates (8 each), 12 per operand.
const PARAMS_WORDS: usize = 28 + 12 * OPERANDS;
/// Its bytes.
const PARAMS_BYTES: u64 = PARAMS_WORDS as u64 * 4;

/// What the kernel computes for one call.
#[derive(Clone, Debug)]
pub(crate) struct GpuPlan {
    /// The loss (`LOSS`) and its parameters.
    pub loss: u32,
    pub alpha: f32,
    pub gamma: f32,
    /// Label smoothing: the target used is `y * .0 + .1` (`(1, 0)`: none).
    pub smoothing: (f32, f32),
    /// Whether BCE's range check runs.
    pub checks_range: bool,
    /// The values are summed.
    pub sum: bool,
    /// The array outputs, in order: `ROLE_VALUE`, `ROLE_GRAD`, `ROLE_GRAD_TARGET` or
    /// `ROLE_HESS`.
    pub outputs: Vec<u32>,
    /// Every derivative is multiplied by `factor` (the target gradient by `target_factor`),
    /// then divided by `divisor`.
    pub factor: f32,
    pub target_factor: f32,
    pub divisor: f32,
}

/// The role of the elementwise values in [`GpuPlan::outputs`].
pub(crate) const ROLE_VALUE: u32 = 1;
/// The role of the input gradient.
pub(crate) const ROLE_GRAD: u32 = 2;
/// The role of the target gradient.
pub(crate) const ROLE_GRAD_TARGET: u32 = 3;
/// The role of the second derivative.
pub(crate) const ROLE_HESS: u32 = 4;

/// The uniform block of one pass, as the shader lays it out.
fn params(
    plan: &GpuPlan,
    geometry: &Geometry,
    pass: &Pass,
    chunk: u64,
    groups_x: u32,
    partial_base: u32,
    flag_base: u32,
) -> [u32; PARAMS_WORDS] {
    let mut p = [0u32; PARAMS_WORDS];
    p[0] = pass.len as u32;
    p[1] = (pass.start - pass.chunk as u64 * chunk) as u32;
    p[2] = groups_x;
    p[3] = plan.factor.to_bits();
    p[4] = plan.divisor.to_bits();
    p[5] = partial_base;
    p[6] = flag_base;
    p[7] = plan.alpha.to_bits();
    p[8] = plan.gamma.to_bits();
    p[9] = plan.smoothing.0.to_bits();
    p[10] = plan.smoothing.1.to_bits();
    p[11] = plan.target_factor.to_bits();
    // Shape and start coordinates, innermost axis first.
    let start = geometry.coords(pass.start);
    for (d, (&len, &c)) in geometry.shape.iter().zip(&start).rev().enumerate() {
        if d < MAX_DIMS {
            p[12 + d] = len as u32;
            p[20 + d] = c as u32;
        }
    }
    for (k, op) in geometry.ops.iter().enumerate() {
        let o = 28 + 12 * k;
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

/// What a call produced.
pub(crate) struct Outcome {
    /// The float64 sum of the partial sums (when the plan sums).
    pub sum: f64,
    /// The array outputs, in the plan's order.
    pub arrays: Vec<GpuArray>,
}

/// Runs `plan` over `ops`; `interrupt` is called while waiting for the device.
pub(crate) fn execute<'a>(
    plan: &GpuPlan,
    ops: &Operands<'a>,
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
    let m = strides("mask", ops.m)?;
    let others = [Some(ops.y), ops.w, ops.pw, ops.g, ops.m];
    if others.iter().flatten().any(|a| !a.gpu.same_device(gpu)) {
        return Err(Error::GpuDeviceMismatch);
    }
    if plan.outputs.len() > inner.slots {
        return Err(Error::Internal("more outputs than the kernel's slots"));
    }
    if n == 0 {
        let arrays = plan
            .outputs
            .iter()
            .map(|_| GpuArray::output(gpu, &shape))
            .collect::<Result<Vec<_>, Error>>()?;
        return Ok(Outcome { sum: 0.0, arrays });
    }
    let geometry = Geometry::new(&shape, [w, pw, g, m])?;
    let chunk = inner.chunk as u64;
    let max_groups = u64::from(inner.max_groups);
    let mut roles = [0u32; MAX_SLOTS];
    for (slot, &role) in roles.iter_mut().zip(&plan.outputs) {
        *slot = role;
    }
    let key = PipelineKey {
        loss: plan.loss,
        sum: plan.sum,
        roles,
        value: plan.sum || plan.outputs.contains(&ROLE_VALUE),
        grad: plan.outputs.contains(&ROLE_GRAD),
        grad_target: plan.outputs.contains(&ROLE_GRAD_TARGET),
        hess: plan.outputs.contains(&ROLE_HESS),
        masked: ops.m.is_some(),
    };
    let tile = key.tile();
    let max_len = tile.saturating_mul(max_groups).saturating_mul(max_groups);
    let plan_passes = passes(&geometry, n as u64, chunk, max_len);

    let scope = ErrorScope::push(&inner.device);
    let result = (|| {
        let pipeline = inner.pipeline(key)?;
        let arrays = plan
            .outputs
            .iter()
            .map(|_| GpuArray::output(gpu, &shape))
            .collect::<Result<Vec<_>, Error>>()?;

        // The scratch buffer: two range flags per pass, then one partial sum per workgroup.
        let tiles: Vec<u64> = plan_passes.iter().map(|p| p.len.div_ceil(tile)).collect();
        let total_tiles: u64 = if plan.sum { tiles.iter().sum() } else { 0 };
        let flag_words = 2 * plan_passes.len() as u64;
        let scratch_words = flag_words + total_tiles;
        if scratch_words * 4 > inner.max_binding {
            return Err(Error::Gpu(
                "the array is too large for one call's partial sums".to_owned(),
            ));
        }
        let mut init = Vec::new();
        init.try_reserve_exact(scratch_words as usize)
            .map_err(|_| Error::OutOfMemory {
                what: "the partial sums",
                bytes: scratch_words * 4,
            })?;
        init.resize(flag_words as usize, u32::MAX);
        init.resize(scratch_words as usize, 0);
        let scratch = buffer_with(
            inner,
            "bcers scratch",
            bytemuck::cast_slice(&init),
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        )?;

        // Every pass's uniforms in one buffer, at the device's offset alignment.
        let align = u64::from(inner.device.limits().min_uniform_buffer_offset_alignment).max(4);
        let stride = PARAMS_BYTES.div_ceil(align) * align;
        let mut uniform_bytes = vec![0u8; (stride * plan_passes.len() as u64) as usize];
        let mut dispatches = Vec::with_capacity(plan_passes.len());
        let mut partial_base = flag_words;
        for (i, (pass, &groups)) in plan_passes.iter().zip(&tiles).enumerate() {
            let groups_x = groups.min(max_groups).max(1);
            let groups_y = groups.div_ceil(groups_x);
            let p = params(
                plan,
                &geometry,
                pass,
                chunk,
                groups_x as u32,
                partial_base as u32,
                (2 * i) as u32,
            );
            let at = (stride * i as u64) as usize;
            if let Some(dst) = uniform_bytes.get_mut(at..at + PARAMS_BYTES as usize) {
                dst.copy_from_slice(bytemuck::cast_slice(&p));
            }
            dispatches.push((groups_x as u32, groups_y as u32));
            if plan.sum {
                partial_base += groups;
            }
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
        let mut bind_groups = Vec::with_capacity(plan_passes.len());
        for (i, pass) in plan_passes.iter().enumerate() {
            let mut buffers = vec![
                chunk_of(ops.x, pass.chunk)?,
                chunk_of(ops.y, pass.chunk)?,
                operand(0, ops.w, pass)?,
                operand(1, ops.pw, pass)?,
                operand(2, ops.g, pass)?,
                &scratch,
                operand(3, ops.m, pass)?,
            ];
            for k in 0..inner.slots {
                buffers.push(match arrays.get(k) {
                    Some(a) => chunk_of(a, pass.chunk)?,
                    None => inner
                        .dummy_write
                        .get(k)
                        .ok_or(Error::Internal("a slot without its dummy buffer"))?,
                });
            }
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

        if !(plan.sum || plan.checks_range) {
            inner.queue.submit([encoder.finish()]);
            return Ok(Outcome { sum: 0.0, arrays });
        }
        let words = if plan.sum { scratch_words } else { flag_words };
        let bytes = read_back(inner, encoder, &[(&scratch, 0, words * 4)], interrupt)?;
        let words: Vec<u32> =
            bytemuck::pod_collect_to_vec::<u8, u32>(bytes.first().map_or(&[][..], |b| b));
        let (flags, partials) = words.split_at((flag_words as usize).min(words.len()));
        // In order, in float64: the same bits on every run.
        let sum = partials.iter().map(|&b| f64::from(f32::from_bits(b))).sum();
        if plan.checks_range {
            let first_bad = |which: usize| {
                plan_passes
                    .iter()
                    .zip(flags.chunks_exact(2))
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
        Ok(Outcome { sum, arrays })
    })();
    scope.pop(inner)?;
    result
}
