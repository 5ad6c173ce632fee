//! Graph matching: finds, in a decluttered tract graph, the patterns the fused ops replace
//! (3x3 convolutions, 1x1 convolutions of few channels, PReLU written out, YuNet's pair of 1-D
//! max pools), each with the activation after it, and patches the graph. Ops are recognised
//! by type; what is not recognised is left to tract.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::{BinMiniOp, TypedBinOp};
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PaddingSpec};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::math::{Add, Max, Min, Mul};
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::ops::{Act, ChannelAct, Conv3x3Act, MaxPool2x2, PointwiseAct, PointwiseDepthwise, f32s};

/// Rewrites `model` (decluttered) in place with the fused ops (see `fuse::ops`). Returns
/// how many rewrites it made.
pub fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    let mut count = 0;
    // Each rewrite changes the graph, so look again from the start after each one.
    loop {
        let mut done = false;
        for id in model.eval_order()? {
            if let Some(patch) = rewrite_at(model, id)? {
                patch.apply(model)?;
                // Drop the replaced nodes, so that they no longer count as successors.
                model.compact()?;
                count += 1;
                done = true;
                break;
            }
        }
        if !done {
            break;
        }
    }
    Ok(count)
}

/// The concrete shape of an outlet.
fn shape_of(model: &TypedModel, o: OutletId) -> Option<TVec<usize>> {
    model
        .outlet_fact(o)
        .ok()
        .and_then(|f| f.shape.as_concrete().map(|s| s.into()))
}

/// `[C, H, W]` of a `[H, W, C]` or `[1, H, W, C]` shape.
fn hwc(shape: &[usize]) -> Option<(usize, usize, usize)> {
    match shape {
        [h, w, c] | [1, h, w, c] => Some((*c, *h, *w)),
        _ => None,
    }
}

/// Whether tensors in this format are `[C, H, W]` or `[1, C, H, W]`.
fn channels_first(f: DataFormat) -> bool {
    matches!(f, DataFormat::NCHW | DataFormat::CHW)
}

/// `[C, H, W]` of a `[C, H, W]` or `[1, C, H, W]` shape.
fn chw(shape: &[usize]) -> Option<(usize, usize, usize)> {
    match shape {
        [c, h, w] | [1, c, h, w] => Some((*c, *h, *w)),
        _ => None,
    }
}

fn konst(model: &TypedModel, o: OutletId) -> Option<Arc<Tensor>> {
    model.outlet_fact(o).ok().and_then(|f| f.konst.clone())
}

fn is_zero_const(model: &TypedModel, o: OutletId) -> bool {
    konst(model, o).is_some_and(|t| f32s(&t).is_ok_and(|s| s.iter().all(|v| *v == 0.0)))
}

/// The single node reading output 0 of `id`, if exactly one does.
fn only_successor(model: &TypedModel, id: usize) -> Option<usize> {
    match readers(model, id)?[..] {
        [one] => Some(one),
        _ => None,
    }
}

/// The nodes reading the single output of `id`, unless that output is also a model output
/// (then it cannot be fused away).
fn readers(model: &TypedModel, id: usize) -> Option<Vec<usize>> {
    let node = model.node(id);
    if node.outputs.len() != 1 || model.output_outlets().ok()?.contains(&OutletId::new(id, 0)) {
        return None;
    }
    Some(node.outputs[0].successors.iter().map(|i| i.node).collect())
}

/// Whether node `n` is the element-wise binary op `M` (`Add`, `Mul`, `Max`, `Min`: after
/// decluttering, a [`TypedBinOp`] around the op).
fn is_bin<M: BinMiniOp>(model: &TypedModel, n: usize) -> bool {
    model
        .node(n)
        .op_as::<TypedBinOp>()
        .is_some_and(|op| op.0.is::<M>())
}

/// Whether `node` runs one of the fused ops (it has been rewritten already).
fn is_fused(node: &TypedNode) -> bool {
    node.op_is::<Conv3x3Act>()
        || node.op_is::<PointwiseAct>()
        || node.op_is::<ChannelAct>()
        || node.op_is::<MaxPool2x2>()
        || node.op_is::<PointwiseDepthwise>()
}

/// The activation that follows `id`, if it is one this module fuses: returns it with the node
/// whose output it replaces.
fn activation_after(model: &TypedModel, id: usize, channels: usize) -> Option<(Act, usize)> {
    let succ = readers(model, id)?;
    let zero_other = |n: usize| {
        let ins = &model.node(n).inputs;
        ins.len() == 2 && ins[0] == OutletId::new(id, 0) && is_zero_const(model, ins[1])
    };
    match succ[..] {
        // ReLU: max(x, 0).
        [m] if is_bin::<Max>(model, m) && zero_other(m) => Some((Act::Relu, m)),
        // PReLU: max(x, 0) + min(x, 0) * slope.
        [a, b] => {
            let (max, min) = if is_bin::<Max>(model, a) {
                (a, b)
            } else {
                (b, a)
            };
            if !(is_bin::<Max>(model, max)
                && is_bin::<Min>(model, min)
                && zero_other(max)
                && zero_other(min))
            {
                return None;
            }
            let mul = only_successor(model, min)?;
            let add = only_successor(model, max)?;
            if !is_bin::<Mul>(model, mul)
                || !is_bin::<Add>(model, add)
                || only_successor(model, mul)? != add
            {
                return None;
            }
            let slope = konst(model, model.node(mul).inputs[1])?;
            let slope = f32s(&slope).ok()?;
            (slope.len() == channels).then(|| (Act::PRelu(Arc::new(slope.to_vec())), add))
        }
        _ => None,
    }
}

fn rewrite_at(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    if let Some(conv) = node.op_as::<Conv>() {
        return conv3x3(model, id, conv);
    }
    if let Some(pool) = node.op_as::<MaxPool>() {
        return max_pool(model, id, pool);
    }
    if let Some(pw) = node.op_as::<PointwiseAct>() {
        return pointwise_depthwise(model, id, pw);
    }
    if let Some(pair) = node.op_as::<PointwiseDepthwise>() {
        return pair_then_pool(model, id, pair);
    }
    if let Some(stem) = node.op_as::<Conv3x3Act>()
        && stem.group_in > 1
    {
        return stem_then_pair(model, id, stem);
    }
    if let Some(einsum) = node.op_as::<EinSum>()
        && let Some(patch) = pointwise(model, id, einsum)?
    {
        return Ok(Some(patch));
    }
    // A PReLU after anything else (a 1x1 convolution).
    if !is_fused(node) && !node.op_is::<Const>() {
        let Some(shape) = shape_of(model, OutletId::new(id, 0)) else {
            return Ok(None);
        };
        let Some((c, _, _)) = chw(&shape) else {
            return Ok(None);
        };
        if let Some((act @ Act::PRelu(_), last)) = activation_after(model, id, c) {
            let mut patch = TypedModelPatch::new("visage.prelu");
            let tap = patch.tap_model(model, OutletId::new(id, 0))?;
            let out = patch.wire_node(
                format!("{}.prelu", node.name),
                ChannelAct { channels: c, act },
                &[tap],
            )?;
            patch.shunt_outside(model, OutletId::new(last, 0), out[0])?;
            return Ok(Some(patch));
        }
    }
    Ok(None)
}

/// A fused 1x1 convolution whose output only a fused depthwise convolution reads: the pair
/// becomes one [`PointwiseDepthwise`]. (The depthwise one is fused after the 1x1 one, as it
/// comes later in the graph; [`fuse`] looks again after each rewrite, so the pair is found.)
fn pointwise_depthwise(
    model: &TypedModel,
    id: usize,
    pw: &PointwiseAct,
) -> TractResult<Option<TypedModelPatch>> {
    merge_with_successor(model, id, "pair", |next| {
        let dw = next.op_as::<Conv3x3Act>()?;
        PointwiseDepthwise::new(pw.clone(), dw.clone())
    })
}

/// A [`PointwiseDepthwise`] whose output only a [`MaxPool2x2`] reads: the pool is done as the
/// pair writes its output (YuNet's backbone stages end so).
fn pair_then_pool(
    model: &TypedModel,
    id: usize,
    pair: &PointwiseDepthwise,
) -> TractResult<Option<TypedModelPatch>> {
    merge_with_successor(model, id, "pooled", |next| {
        pair.with_pool(next.op_as::<MaxPool2x2>()?)
    })
}

/// A full 3x3 convolution whose output only a [`PointwiseDepthwise`] reads (each model's
/// first layer): the pair computes it as it goes.
fn stem_then_pair(
    model: &TypedModel,
    id: usize,
    stem: &Conv3x3Act,
) -> TractResult<Option<TypedModelPatch>> {
    merge_with_successor(model, id, "stem", |next| {
        next.op_as::<PointwiseDepthwise>()?.with_stem(stem)
    })
}

/// Replaces node `id` and the single node reading its output (which reads nothing else) by
/// the op `merged` makes of that node, if it makes one; the new node is named after `id`'s,
/// with `suffix`.
fn merge_with_successor<O: TypedOp>(
    model: &TypedModel,
    id: usize,
    suffix: &str,
    merged: impl FnOnce(&TypedNode) -> Option<O>,
) -> TractResult<Option<TypedModelPatch>> {
    let Some(next) = only_successor(model, id) else {
        return Ok(None);
    };
    if model.node(next).inputs != [OutletId::new(id, 0)] {
        return Ok(None);
    }
    let Some(op) = merged(model.node(next)) else {
        return Ok(None);
    };
    let node = model.node(id);
    let mut patch = TypedModelPatch::new(format!("visage.{suffix}"));
    let tap = patch.tap_model(model, node.inputs[0])?;
    let out = patch.wire_node(format!("{}.{suffix}", node.name), op, &[tap])?;
    patch.shunt_outside(model, OutletId::new(next, 0), out[0])?;
    Ok(Some(patch))
}

/// Most input channels a 1x1 convolution may have to be fused: every 1x1 convolution of both
/// models, on every target. Natively, fused and paired with the depthwise convolution after
/// it, MobileFaceNet's with 128 to 512 inputs beat tract's AVX-512 matrix product (the model
/// 7.2 -> 6.4 ms), where on their own they had measured slower. In the browser, with the
/// SIMD128 block kernel (`ChannelMix`), the embedding job is as fast either way and the
/// embedder's set-up 25% faster (no matrix packing).
const MAX_POINTWISE_IN: usize = 512;

/// A 1x1 convolution as tract declutters it: `EinSum` of the input and the `[O, I]` weights,
/// then `Add` of the bias, then maybe an activation.
fn pointwise(
    model: &TypedModel,
    id: usize,
    einsum: &EinSum,
) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    if einsum.q_params.is_some()
        || einsum.operating_dt != f32::datum_type()
        || node.inputs.len() != 2
    {
        return Ok(None);
    }
    let (Some(ishape), Some(eshape), Some(weights)) = (
        shape_of(model, node.inputs[0]),
        shape_of(model, OutletId::new(id, 0)),
        konst(model, node.inputs[1]),
    ) else {
        return Ok(None);
    };
    let Some(layout) = pointwise_layout(&einsum.axes, &ishape, &eshape) else {
        return Ok(None);
    };
    let ci = ishape[layout.input_channel];
    let [co, wi] = weights.shape() else {
        return Ok(None);
    };
    let co = *co;
    if *wi != ci
        || eshape[layout.output_channel] != co
        || ci > MAX_POINTWISE_IN
        || model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type()
    {
        return Ok(None);
    }
    // The bias.
    let Some(add) = only_successor(model, id) else {
        return Ok(None);
    };
    let add_node = model.node(add);
    if !is_bin::<Add>(model, add)
        || add_node.inputs.len() != 2
        || add_node.inputs[0] != OutletId::new(id, 0)
    {
        return Ok(None);
    }
    let Some(bias) = konst(model, add_node.inputs[1]) else {
        return Ok(None);
    };
    let bias = f32s(&bias)?;
    let Some(oshape) = shape_of(model, OutletId::new(add, 0)) else {
        return Ok(None);
    };
    let channels_last = layout.channels_last;
    if bias.len() != co || oshape != eshape {
        return Ok(None);
    }
    let (act, last) = activation_after(model, add, co).unwrap_or((Act::Linear, add));
    let mut patch = TypedModelPatch::new("visage.pointwise");
    let tap = patch.tap_model(model, node.inputs[0])?;
    let out = patch.wire_node(
        format!("{}.fused", node.name),
        PointwiseAct::new(
            ci,
            co,
            f32s(&weights)?,
            bias.to_vec(),
            act,
            oshape,
            channels_last,
        ),
        &[tap],
    )?;
    patch.shunt_outside(model, OutletId::new(last, 0), out[0])?;
    Ok(Some(patch))
}

/// Where the channels of a 1x1 convolution's einsum sit (see [`pointwise_layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PointwiseLayout {
    /// The input's channel axis: every axis before it has size 1, so the input is `[I, P]`.
    input_channel: usize,
    /// The output's channel axis.
    output_channel: usize,
    /// The output is `[P, O]` (channel axis last), else `[O, P]`.
    channels_last: bool,
}

/// Whether an einsum is a 1x1 convolution the fused op computes, read from its axes rather than
/// from one spelling: input 1 is the `[O, I]` weights; input 0 holds `I` with only unit axes
/// before it (channels first), then the positions; the output holds the same positions in the
/// same order, with `O` first (after unit axes) or last. The positions may be `H, W` or one
/// merged axis (tract merges them on some targets: the wasm32 build did, and its 1x1
/// convolutions then stayed with tract's matrix product), and unit axes may appear on one side
/// only (a batch of 1).
fn pointwise_layout(
    axes: &tract_onnx::tract_core::axes::AxesMapping,
    ishape: &[usize],
    oshape: &[usize],
) -> Option<PointwiseLayout> {
    let (mut k, mut o) = (None, None);
    // (position in input 0, position in the output) of the axes both hold.
    let mut shared = Vec::new();
    for a in axes.iter_all_axes() {
        if a.inputs.len() != 2 || a.outputs.len() != 1 {
            return None;
        }
        let one = |v: &[usize]| -> Option<Option<usize>> {
            match v {
                [] => Some(None),
                [p] => Some(Some(*p)),
                _ => None,
            }
        };
        match (one(&a.inputs[0])?, one(&a.inputs[1])?, one(&a.outputs[0])?) {
            (Some(p0), Some(p1), None) if k.is_none() => k = Some((p0, p1)),
            (None, Some(p1), Some(po)) if o.is_none() => o = Some((p1, po)),
            // A unit axis on both sides (a batch of 1) does not change the layout.
            (Some(p0), None, Some(_)) if ishape.get(p0) == Some(&1) => {}
            (Some(p0), None, Some(po)) => shared.push((p0, po)),
            (Some(p0), None, None) if ishape.get(p0) == Some(&1) => {}
            (None, None, Some(po)) if oshape.get(po) == Some(&1) => {}
            _ => return None,
        }
    }
    let ((k0, k1), (o1, oo)) = (k?, o?);
    if (o1, k1) != (0, 1) || ishape[..k0].iter().any(|&d| d != 1) {
        return None;
    }
    shared.sort_unstable();
    // The positions: after the input's channel axis, in the same order in the output.
    if shared.first().is_some_and(|&(p0, _)| p0 < k0) || shared.windows(2).any(|w| w[0].1 >= w[1].1)
    {
        return None;
    }
    let channels_last = matches!(shared.last(), Some(&(_, last)) if oo > last);
    // Channels first: nothing but unit axes before O. Channels last: O after every position.
    if !channels_last && oshape[..oo].iter().any(|&d| d != 1) {
        return None;
    }
    Some(PointwiseLayout {
        input_channel: k0,
        output_channel: oo,
        channels_last,
    })
}

fn conv3x3(model: &TypedModel, id: usize, conv: &Conv) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    let spec = &conv.pool_spec;
    let (Some(ishape), Some(oshape)) = (
        shape_of(model, node.inputs[0]),
        shape_of(model, OutletId::new(id, 0)),
    ) else {
        return Ok(None);
    };
    let channels_last = matches!(spec.data_format, DataFormat::NHWC | DataFormat::HWC);
    let dims = |s: &[usize]| if channels_last { hwc(s) } else { chw(s) };
    let (Some((c, h, w)), Some((oc, oh, ow))) = (dims(&ishape), dims(&oshape)) else {
        return Ok(None);
    };
    // Depthwise, or a full convolution over few channels (beyond that, tract's matrix
    // product is the better tool).
    let group_in = match conv.group {
        g if g == c && oc == c => 1,
        1 if c <= 4 => c,
        _ => return Ok(None),
    };
    let stride = spec.strides();
    let pad = match &spec.padding {
        PaddingSpec::Explicit(before, _) => (before[0], before[1]),
        PaddingSpec::Valid => (0, 0),
        _ => return Ok(None),
    };
    let ok = conv.q_params.is_none()
        && conv.kernel_fmt == KernelFormat::OIHW
        && *spec.kernel_shape == [3, 3]
        && spec.dilations().iter().all(|d| *d == 1)
        && (stride[..] == [1, 1] || stride[..] == [2, 2])
        && node.inputs.len() == 3
        && model.outlet_fact(node.inputs[0])?.datum_type == f32::datum_type()
        && pad.0 <= 2
        && pad.1 <= 2
        && oh > 0
        && ow > 0;
    if !ok {
        return Ok(None);
    }
    let (Some(kernel), Some(bias)) = (konst(model, node.inputs[1]), konst(model, node.inputs[2]))
    else {
        return Ok(None);
    };
    let kernel = f32s(&kernel)?;
    let bias = f32s(&bias)?;
    if kernel.len() != oc * group_in * 9 || !(bias.len() == oc || bias.len() == 1) {
        return Ok(None);
    }
    let bias = if bias.len() == oc {
        bias.to_vec()
    } else {
        vec![bias[0]; oc]
    };
    let (act, last) = activation_after(model, id, oc).unwrap_or((Act::Linear, id));
    let mut patch = TypedModelPatch::new("visage.conv3x3");
    let tap = patch.tap_model(model, node.inputs[0])?;
    let out = patch.wire_node(
        format!("{}.fused", node.name),
        Conv3x3Act {
            channels: oc,
            group_in,
            in_hw: (h, w),
            out_hw: (oh, ow),
            stride: stride[0],
            pad_top_left: pad,
            channels_last,
            weights: Arc::new(kernel.to_vec()),
            bias: Arc::new(bias),
            act,
            out_shape: oshape,
            full: None,
        }
        .prepared(),
        &[tap],
    )?;
    patch.shunt_outside(model, OutletId::new(last, 0), out[0])?;
    Ok(Some(patch))
}

fn max_pool(model: &TypedModel, id: usize, pool: &MaxPool) -> TractResult<Option<TypedModelPatch>> {
    let is = |p: &MaxPool, k: [usize; 2]| {
        p.with_index_outputs.is_none()
            && channels_first(p.pool_spec.data_format)
            && *p.pool_spec.kernel_shape == k
            && p.pool_spec.strides()[..] == k
            && matches!(p.pool_spec.padding, PaddingSpec::Valid)
    };
    if !is(pool, [2, 1]) {
        return Ok(None);
    }
    let Some(next) = only_successor(model, id) else {
        return Ok(None);
    };
    if !model
        .node(next)
        .op_as::<MaxPool>()
        .is_some_and(|p| is(p, [1, 2]))
    {
        return Ok(None);
    }
    let node = model.node(id);
    let (Some(ishape), Some(oshape)) = (
        shape_of(model, node.inputs[0]),
        shape_of(model, OutletId::new(next, 0)),
    ) else {
        return Ok(None);
    };
    let Some((c, h, w)) = chw(&ishape) else {
        return Ok(None);
    };
    if chw(&oshape) != Some((c, h / 2, w / 2))
        || model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type()
    {
        return Ok(None);
    }
    let mut patch = TypedModelPatch::new("visage.maxpool");
    let tap = patch.tap_model(model, node.inputs[0])?;
    let out = patch.wire_node(
        format!("{}.fused", node.name),
        MaxPool2x2 {
            channels: c,
            in_hw: (h, w),
            out_shape: oshape,
        },
        &[tap],
    )?;
    patch.shunt_outside(model, OutletId::new(next, 0), out[0])?;
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::optimise_with;
    use crate::model;

    #[test]
    fn a_1x1_convolution_is_recognised_in_every_spelling_of_its_axes() {
        use tract_onnx::tract_core::axes::AxesMapping;
        let layout = |expr: &str, i: &[usize], o: &[usize]| {
            let axes: AxesMapping = expr.parse().expect(expr);
            pointwise_layout(&axes, i, o)
        };
        let first = |input_channel, output_channel| {
            Some(PointwiseLayout {
                input_channel,
                output_channel,
                channels_last: false,
            })
        };
        assert_eq!(
            layout("IHW,OI->OHW", &[16, 8, 10], &[32, 8, 10]),
            first(0, 0)
        );
        assert_eq!(
            layout("NIHW,OI->NOHW", &[1, 16, 8, 10], &[1, 32, 8, 10]),
            first(1, 1)
        );
        assert_eq!(
            layout("NIHW,OI->OHW", &[1, 16, 8, 10], &[32, 8, 10]),
            first(1, 0)
        );
        assert_eq!(
            layout("IHW,OI->NOHW", &[16, 8, 10], &[1, 32, 8, 10]),
            first(0, 1)
        );
        // Height and width merged into one axis, as tract's wasm32 build declutters YuNet.
        assert_eq!(layout("IP,OI->OP", &[32, 5120], &[64, 5120]), first(0, 0));
        assert_eq!(
            layout("NIP,OI->NOP", &[1, 32, 5120], &[1, 64, 5120]),
            first(1, 1)
        );
        // YuNet's heads: the output channels last.
        assert_eq!(
            layout("IHW,OI->HWO", &[64, 32, 40], &[32, 40, 10]),
            Some(PointwiseLayout {
                input_channel: 0,
                output_channel: 2,
                channels_last: true
            })
        );
        // Not the fused op's layout: a batch, channels-last input, transposed weights or
        // positions reordered.
        assert_eq!(
            layout("NIHW,OI->NOHW", &[2, 16, 8, 10], &[2, 32, 8, 10]),
            None
        );
        assert_eq!(layout("HWI,OI->HWO", &[8, 10, 16], &[8, 10, 32]), None);
        assert_eq!(layout("IHW,IO->OHW", &[16, 8, 10], &[32, 8, 10]), None);
        assert_eq!(layout("IHW,OI->OWH", &[16, 8, 10], &[32, 10, 8]), None);
        assert_eq!(layout("IHW,OI->HOW", &[16, 8, 10], &[8, 32, 10]), None);
    }

    fn load(onnx: &[u8]) -> InferenceModel {
        tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(onnx))
            .expect("model parses")
    }

    /// Runs `onnx` with and without the fused ops on the same pseudo-random input and returns
    /// the largest difference between the outputs, relative to the largest output (or to 1 for
    /// outputs below 1, such as YuNet's tiny objectness scores), with the number of rewrites.
    fn fused_against_tract(onnx: &[u8], input: [usize; 4]) -> (f32, usize) {
        let data = crate::noise::Noise::new(7).floats(input.iter().product());
        let x: TValue = Tensor::from_shape(&input, &data).expect("input").into();
        let run = |fuse: bool| {
            optimise_with(load(onnx), input, fuse)
                .expect("plan")
                .run(tvec!(x.clone()))
                .expect("run")
        };
        let (fused, plain) = (run(true), run(false));
        let mut typed = load(onnx)
            .with_input_fact(0, f32::fact(input).into())
            .and_then(|m| m.into_typed())
            .expect("typed");
        crate::fuse::declutter_keeping_layout(&mut typed).expect("declutter");
        let rewrites = fuse(&mut typed).expect("fuse");
        assert_eq!(fused.len(), plain.len());
        let mut worst = 0f32;
        for (a, b) in fused.iter().zip(&plain) {
            let (a, b) = (f32s(a).expect("f32"), f32s(b).expect("f32"));
            assert_eq!(a.len(), b.len());
            let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs() / scale);
            }
        }
        (worst, rewrites)
    }

    /// The fused graph of `onnx`: how many nodes run each op (by name).
    fn fused_ops(onnx: &[u8], input: [usize; 4]) -> std::collections::HashMap<String, usize> {
        let mut typed = load(onnx)
            .with_input_fact(0, f32::fact(input).into())
            .and_then(|m| m.into_typed())
            .expect("typed");
        crate::fuse::declutter_keeping_layout(&mut typed).expect("declutter");
        fuse(&mut typed).expect("fuse");
        let mut ops = std::collections::HashMap::new();
        for node in typed.nodes() {
            let name = match node.op_as::<PointwiseDepthwise>() {
                Some(p) if p.stem.is_some() => "stem+pair".to_string(),
                Some(p) if p.pooled => "pair+pool".to_string(),
                _ => node.op.name().to_string(),
            };
            *ops.entry(name).or_default() += 1;
        }
        ops
    }

    /// Both models are made of 1x1 + depthwise pairs, and YuNet's stem and a pool go into
    /// them: the structure the speed rests on (BENCHMARKS.md), checked so that a change in
    /// tract's graph or in the matching cannot lose it silently. Natively no 3x3 or 1x1
    /// convolution is left to tract.
    #[test]
    fn the_models_become_pairs() {
        let count = |ops: &std::collections::HashMap<String, usize>, name: &str| {
            ops.get(name).copied().unwrap_or(0)
        };
        let yunet = fused_ops(model::DETECTOR_ONNX, [1, 3, 256, 320]);
        let pairs = count(&yunet, "VisagePointwiseDepthwise");
        assert_eq!(count(&yunet, "stem+pair"), 1, "{yunet:?}");
        // The pools whose input nothing else reads (the others' input also feeds the neck).
        assert!(count(&yunet, "pair+pool") >= 1, "{yunet:?}");
        assert!(pairs >= 20, "{yunet:?}");
        for tract_op in ["Conv", "EinSum", "MaxPool"] {
            assert_eq!(count(&yunet, tract_op), 0, "{yunet:?}");
        }
        let mfn = fused_ops(model::EMBEDDER_ONNX, [1, 3, 112, 112]);
        assert!(count(&mfn, "VisagePointwiseDepthwise") >= 15, "{mfn:?}");
        // The one left is the 7x7 global depthwise convolution at the end (0.02 ms).
        assert!(count(&mfn, "Conv") <= 1, "{mfn:?}");
        assert_eq!(count(&mfn, "EinSum"), 0, "{mfn:?}");
    }

    #[test]
    fn fused_embedder_matches_tract() {
        let (diff, rewrites) = fused_against_tract(model::EMBEDDER_ONNX, [1, 3, 112, 112]);
        // 15 depthwise convolutions with their PReLU, and the PReLUs after 1x1 convolutions.
        assert!(rewrites >= 25, "only {rewrites} rewrites");
        assert!(diff < 1e-4, "relative difference {diff}");
    }

    #[test]
    fn fused_detector_matches_tract() {
        for input in [[1, 3, 256, 320], [1, 3, 96, 128]] {
            let (diff, rewrites) = fused_against_tract(model::DETECTOR_ONNX, input);
            // 57: with tract's layout pass run first (`declutter_keeping_layout` leaves it
            // out) there were 51, and in wasm fewer still.
            assert!(rewrites >= 57, "only {rewrites} rewrites");
            assert!(diff < 1e-4, "{input:?}: relative difference {diff}");
        }
    }
}
