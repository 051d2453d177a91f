// The BCE kernels: one entry point, specialised per pipeline by override constants.
//
// A dispatch covers one pass: `P.len` consecutive elements of the input (C order), all inside
// one storage buffer of the input, starting at `P.xoff` in it. Each workgroup takes a tile of
// WG * PER_THREAD elements; thread `t` takes elements `t`, `t + WG`, ... of its tile, so loads
// are coalesced. Workgroups are laid out in 2-D (`P.groups_x` wide) to pass the 65,535 limit
// per dimension.
//
// `weight`, `pos_weight` and `grad_output` broadcast to the input's shape: their element for
// input element `i` is found from the (collapsed) shape and their strides, with 0 for the
// broadcast axes (see `offset`). Nothing is materialised.
//
// Reductions write one float32 partial sum per workgroup (a tree in workgroup memory, in a
// fixed order); the host adds the partials in float64, in order. BCE records the first input
// and target element outside [0, 1] of the pass (atomicMin), which the host reads back.

override LOSS: u32 = 0u; // 0: BCE on probabilities, 1: BCE with logits
override JOB: u32 = 0u; // 0 Sum, 1 Loss, 2 Grad, 3 SumGrad, 4 LossGrad
override PER_THREAD: u32 = 1u; // elements per thread

const WG: u32 = 256u;
const JOB_SUM: u32 = 0u;
const JOB_LOSS: u32 = 1u;
const JOB_GRAD: u32 = 2u;
const JOB_SUM_GRAD: u32 = 3u;
const JOB_LOSS_GRAD: u32 = 4u;
const LOG_FLOOR: f32 = -100.0;
// torch's EPSILON for the BCE input gradient: the float32 constant 1e-12.
const GRAD_EPS: f32 = 1e-12;
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
    scale: f32,
    partial_base: u32,
    flag_base: u32,
    pad0: u32,
    pad1: u32,
    // The collapsed shape of the input, innermost axis first.
    shape: array<vec4<u32>, 2>,
    // The coordinates of the pass's first element, innermost first.
    start: array<vec4<u32>, 2>,
    // weight, pos_weight, grad_output.
    ops: array<Operand, 3>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Y: array<f32>;
@group(0) @binding(3) var<storage, read> W: array<f32>;
@group(0) @binding(4) var<storage, read> PW: array<f32>;
@group(0) @binding(5) var<storage, read> G: array<f32>;
@group(0) @binding(6) var<storage, read_write> OUT0: array<f32>;
@group(0) @binding(7) var<storage, read_write> OUT1: array<f32>;
@group(0) @binding(8) var<storage, read_write> FLAGS: array<atomic<u32>>;

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

fn grad_output_at(i: u32) -> f32 {
    if P.ops[2].mode == 0u {
        return 1.0;
    }
    return G[offset(2u, i)];
}

// `max(a, b)` as the CPU kernels have it: b when a is NaN.
fn fmax(a: f32, b: f32) -> f32 {
    return select(b, a, a > b);
}

// `coef * v`, but 0 where one factor is 0 and the other infinite: the limit of a loss term or a
// weighted loss. A NaN factor still gives NaN; the zero has the sign a product of finite factors
// would have. Tested on the bits: a GPU may assume no NaN or infinity in float comparisons.
fn weighted(coef: f32, v: f32) -> f32 {
    let cb = bitcast<u32>(coef);
    let vb = bitcast<u32>(v);
    let c_abs = cb & 0x7fffffffu;
    let v_abs = vb & 0x7fffffffu;
    let inf_times_zero = (c_abs == 0x7f800000u && v_abs == 0u) || (v_abs == 0x7f800000u && c_abs == 0u);
    return select(coef * v, bitcast<f32>((cb ^ vb) & 0x80000000u), inf_times_zero);
}

// Whether v lies in [0, 1], from its bits (false for NaN; -0 and subnormals as the CPU has
// them, whatever the GPU does with subnormal arithmetic).
fn in_unit(v: f32) -> bool {
    let b = bitcast<u32>(v);
    return b <= 0x3f800000u || b == 0x80000000u;
}

fn bce_loss(x: f32, y: f32) -> f32 {
    let log_x = fmax(ln(x), LOG_FLOOR);
    let log_1mx = fmax(ln1p(-x), LOG_FLOOR);
    return (y - 1.0) * log_1mx - y * log_x;
}

fn bce_grad(x: f32, y: f32) -> f32 {
    return (x - y) / fmax((1.0 - x) * x, GRAD_EPS);
}

// exp(-|x|)
fn exp_neg_abs(x: f32) -> f32 {
    return ex(-bitcast<f32>(bitcast<u32>(x) & 0x7fffffffu));
}

// (1 - y) max(x, 0) + pw y max(-x, 0) + (1 + (pw - 1) y) log1p(exp(-|x|)), from sp = log1p(e).
fn logits_loss(x: f32, y: f32, pw: f32, sp: f32) -> f32 {
    let relu_pos = fmax(x, 0.0);
    let relu_neg = fmax(-x, 0.0);
    let log_weight = weighted(pw - 1.0, y) + 1.0;
    return weighted(1.0 - y, relu_pos) + weighted(weighted(pw, y), relu_neg)
        + weighted(log_weight, sp);
}

// (1 - y) sigmoid(x) - pw y sigmoid(-x), both sigmoids from e = exp(-|x|): no cancellation.
fn logits_grad(x: f32, y: f32, pw: f32, e: f32) -> f32 {
    let d = 1.0 / (1.0 + e);
    let de = e * d;
    let nonneg = x >= 0.0;
    let sig_pos = select(de, d, nonneg);
    let sig_neg = select(d, de, nonneg);
    return weighted(1.0 - y, sig_pos) - weighted(weighted(pw, y), sig_neg);
}

fn loss_of(x: f32, y: f32, pw: f32) -> f32 {
    if LOSS == 0u {
        return bce_loss(x, y);
    }
    return logits_loss(x, y, pw, ln1p(exp_neg_abs(x)));
}

fn grad_of(x: f32, y: f32, pw: f32) -> f32 {
    if LOSS == 0u {
        return bce_grad(x, y);
    }
    return logits_grad(x, y, pw, exp_neg_abs(x));
}

// Both, sharing exp(-|x|) for the logits.
fn loss_and_grad(x: f32, y: f32, pw: f32) -> vec2<f32> {
    if LOSS == 0u {
        return vec2<f32>(bce_loss(x, y), bce_grad(x, y));
    }
    let e = exp_neg_abs(x);
    return vec2<f32>(logits_loss(x, y, pw, ln1p(e)), logits_grad(x, y, pw, e));
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
        if i < P.len {
            let j = P.xoff + i;
            let x = X[j];
            let y = Y[j];
            if LOSS == 0u {
                if !in_unit(x) {
                    bad_x = min(bad_x, i);
                }
                if !in_unit(y) {
                    bad_y = min(bad_y, i);
                }
            }
            let w = weight_at(i);
            var pw = 1.0;
            if LOSS == 1u {
                pw = pos_weight_at(i);
            }
            if JOB == JOB_SUM {
                acc += weighted(w, loss_of(x, y, pw));
            } else if JOB == JOB_LOSS {
                OUT0[j] = weighted(w, loss_of(x, y, pw));
            } else if JOB == JOB_GRAD {
                OUT0[j] = weighted(w, grad_of(x, y, pw)) * (grad_output_at(i) * P.scale);
            } else if JOB == JOB_SUM_GRAD {
                let lg = loss_and_grad(x, y, pw);
                acc += weighted(w, lg.x);
                OUT0[j] = weighted(w, lg.y) * P.scale;
            } else {
                let lg = loss_and_grad(x, y, pw);
                OUT0[j] = weighted(w, lg.x);
                OUT1[j] = weighted(w, lg.y) * P.scale;
            }
        }
    }
    if LOSS == 0u {
        if bad_x != NO_INDEX {
            atomicMin(&FLAGS[P.flag_base], bad_x);
        }
        if bad_y != NO_INDEX {
            atomicMin(&FLAGS[P.flag_base + 1u], bad_y);
        }
    }
    if JOB == JOB_SUM || JOB == JOB_SUM_GRAD {
        partial[lid] = acc;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if lid < s {
                partial[lid] += partial[lid + s];
            }
            workgroupBarrier();
        }
        if lid == 0u {
            OUT1[P.partial_base + group] = partial[0];
        }
    }
}
