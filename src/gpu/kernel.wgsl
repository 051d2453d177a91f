// The one kernel of every loss, specialised per pipeline by override constants.
//
// A dispatch covers one pass: `P.len` consecutive elements of the input (C order), all inside
// one storage buffer of the input, starting at `P.xoff` in it. Each workgroup takes a tile of
// WG * PER_THREAD elements; thread `t` takes elements `t`, `t + WG`, ... of its tile, so loads
// are coalesced. Workgroups are laid out in 2-D (`P.groups_x` wide) to pass the 65,535 limit
// per dimension.
//
// `weight`, `pos_weight`, `grad_output` and `mask` broadcast to the input's shape: their element for
// input element `i` is found from the (collapsed) shape and their strides, with 0 for the
// broadcast axes (see `offset`). Nothing is materialised. Where the mask is 0 (`MASKED`), the
// element is left out: its outputs are 0, it adds nothing to the sum and its range is not
// checked.
//
// The loss is evaluated by its WGSL twin (`LOSS` picks it); the outputs go to the output
// slots, `ROLE_k` saying what slot `k` holds. The slot bindings are declared by the host, as
// many as the device allows (where the marker below stands). Sums write one float32 partial per
// workgroup (a tree in workgroup memory, in a fixed order) into `SCRATCH`, after the range
// flags; the host adds the partials in float64, in order. BCE records the first input and
// target element outside [0, 1] of the pass (atomicMin), which the host reads back.

override LOSS: u32 = 0u; // 0: BCE on probabilities, 1: BCE with logits, 2: sigmoid focal
override SUM: bool = false; // the values are summed
override PER_THREAD: u32 = 1u; // elements per thread
override ROLE_0: u32 = 0u; // what slot k holds: 0 nothing, 1 values, 2 input gradients,
// 3 target gradients, 4 second derivatives
override ROLE_1: u32 = 0u;
override ROLE_2: u32 = 0u;
override ROLE_3: u32 = 0u;
override MASKED: bool = false; // a mask is bound

const WG: u32 = 256u;
const ROLE_VALUE: u32 = 1u;
const ROLE_GRAD: u32 = 2u;
const ROLE_GRAD_TARGET: u32 = 3u;
const ROLE_HESS: u32 = 4u;
const NO_INDEX: u32 = 0xffffffffu;

struct Operand {
    // 0: absent (the value 1), 1: laid out like the input, 2: one element, 3: strided.
    mode: u32,
    // How many (innermost) axes its offset depends on.
    nd: u32,
    // Subtracted from its offset (wrapping): where its bound buffer starts.
    base: u32,
    pad: u32,
    // Its stride along each collapsed axis, innermost first (0 where broadcast).
    stride: array<vec4<u32>, 2>,
}

struct Params {
    len: u32,
    xoff: u32,
    groups_x: u32,
    // Every derivative is multiplied by `factor` (the target gradient by `target_factor`,
    // which has label smoothing's chain-rule factor too) and the per-element grad_output, then
    // divided by `divisor` (1, or n where factor / n would be subnormal).
    factor: f32,
    divisor: f32,
    partial_base: u32,
    flag_base: u32,
    // The loss's parameters (focal: alpha, gamma).
    alpha: f32,
    gamma: f32,
    // Label smoothing: the target used is y * smooth_a + smooth_b (1 and 0: none).
    smooth_a: f32,
    smooth_b: f32,
    target_factor: f32,
    // The collapsed shape of the input, innermost axis first.
    shape: array<vec4<u32>, 2>,
    // The coordinates of the pass's first element, innermost first.
    start: array<vec4<u32>, 2>,
    // weight, pos_weight, grad_output, mask.
    ops: array<Operand, 4>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Y: array<f32>;
@group(0) @binding(3) var<storage, read> W: array<f32>;
@group(0) @binding(4) var<storage, read> PW: array<f32>;
@group(0) @binding(5) var<storage, read> G: array<f32>;
// Range flags (two per pass), then the partial sums (as float32 bits).
@group(0) @binding(6) var<storage, read_write> SCRATCH: array<atomic<u32>>;
// The mask, as float32: 0 leaves the element out.
@group(0) @binding(7) var<storage, read> M: array<f32>;
{OUTPUT_SLOTS}

var<workgroup> partial: array<f32, WG>;

// The offset of operand `k`'s element for element `i` of the pass, in its bound buffer.
fn offset(k: u32, i: u32) -> u32 {
    let mode = P.ops[k].mode;
    if mode == 1u {
        return P.xoff + i;
    }
    if mode == 2u {
        return 0u;
    }
    // Add i to the start coordinates, axis by axis, with carries. u32 arithmetic wraps, so
    // the result is right modulo 2^32, and it lies in [0, buffer length).
    var carry = i;
    var off = 0u - P.ops[k].base;
    let nd = P.ops[k].nd;
    for (var d = 0u; d < nd; d++) {
        let n = P.shape[d >> 2u][d & 3u];
        var c = P.start[d >> 2u][d & 3u] + carry % n;
        carry = carry / n;
        if c >= n {
            c -= n;
            carry += 1u;
        }
        off += c * P.ops[k].stride[d >> 2u][d & 3u];
    }
    return off;
}

fn weight_at(i: u32) -> f32 {
    if P.ops[0].mode == 0u {
        return 1.0;
    }
    return W[offset(0u, i)];
}

fn pos_weight_at(i: u32) -> f32 {
    if P.ops[1].mode == 0u {
        return 1.0;
    }
    return PW[offset(1u, i)];
}

// Whether element `i` is kept (always, without a mask).
fn kept(i: u32) -> bool {
    if !MASKED || P.ops[3].mode == 0u {
        return true;
    }
    return M[offset(3u, i)] != 0.0;
}

fn grad_output_at(i: u32) -> f32 {
    if P.ops[2].mode == 0u {
        return 1.0;
    }
    return G[offset(2u, i)];
}

// Whether v lies in [0, 1], from its bits (false for NaN; -0 and subnormals as the CPU has
// them, whatever the GPU does with subnormal arithmetic).
fn in_unit(v: f32) -> bool {
    let b = bitcast<u32>(v);
    return b <= 0x3f800000u || b == 0x80000000u;
}

fn eval(x: f32, y: f32, i: u32) -> Derivs {
    if LOSS == 0u {
        return bce_eval(x, y);
    }
    if LOSS == 1u {
        return logits_eval(x, y, pos_weight_at(i));
    }
    return focal_eval(x, y, P.alpha, P.gamma);
}

// The output of role `role` for one element.
fn output(role: u32, d: Derivs, w: f32, i: u32) -> f32 {
    if role == ROLE_VALUE {
        return weighted(w, d.value);
    }
    var v = d.grad;
    var factor = P.factor;
    if role == ROLE_GRAD_TARGET {
        v = d.grad_target;
        factor = P.target_factor;
    } else if role == ROLE_HESS {
        v = d.hess;
    }
    return weighted(w, v) * (grad_output_at(i) * factor) / P.divisor;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let group = wid.y * P.groups_x + wid.x;
    let tile = group * (WG * PER_THREAD);
    if tile >= P.len {
        return;
    }
    var acc = 0.0;
    var bad_x = NO_INDEX;
    var bad_y = NO_INDEX;
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = tile + k * WG + lid;
        if i < P.len && !kept(i) {
            zero_slots(P.xoff + i);
        } else if i < P.len {
            let j = P.xoff + i;
            let x = X[j];
            var y = Y[j];
            if LOSS == 0u {
                if !in_unit(x) {
                    bad_x = min(bad_x, i);
                }
                if !in_unit(y) {
                    bad_y = min(bad_y, i);
                }
            }
            // After the range check, which is of the target as given.
            if P.smooth_a != 1.0 || P.smooth_b != 0.0 {
                y = y * P.smooth_a + P.smooth_b;
            }
            let w = weight_at(i);
            let d = eval(x, y, i);
            if SUM {
                acc += weighted(w, d.value);
            }
            write_slots(j, d, w, i);
        }
    }
    if LOSS == 0u {
        if bad_x != NO_INDEX {
            atomicMin(&SCRATCH[P.flag_base], bad_x);
        }
        if bad_y != NO_INDEX {
            atomicMin(&SCRATCH[P.flag_base + 1u], bad_y);
        }
    }
    if SUM {
        partial[lid] = acc;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if lid < s {
                partial[lid] += partial[lid + s];
            }
            workgroupBarrier();
        }
        if lid == 0u {
            atomicStore(&SCRATCH[P.partial_base + group], bitcast<u32>(partial[0]));
        }
    }
}
