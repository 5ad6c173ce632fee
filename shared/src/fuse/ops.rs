//! The fused ops as tract sees them: their parameters, and the `Op`, `EvalOp` and `TypedOp`
//! plumbing that checks the input and hands it to the kernel (in [`super::kernels`]).

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

use super::kernels::{ChannelMix, PairInPlace};
use super::simd::{dispatch, run_kernel};

/// The activation applied after a fused operator, per channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// None (the identity).
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `max(x, 0) + min(x, 0) * slope[c]`: the PReLU of MobileFaceNet.
    PRelu(Arc<Vec<f32>>),
}

/// A 3x3 convolution with bias and activation, stride 1 or 2, on a `[C, H, W]` or
/// `[1, C, H, W]` tensor: depthwise (each output channel reads its own input channel), or
/// full with few input channels (the first layer of each model, on RGB).
#[derive(Debug, Clone, PartialEq)]
pub struct Conv3x3Act {
    /// Output channels.
    pub(super) channels: usize,
    /// Input channels each output channel reads: 1 (depthwise), or all of them.
    pub(super) group_in: usize,
    pub(super) in_hw: (usize, usize),
    pub(super) out_hw: (usize, usize),
    pub(super) stride: usize,
    /// Zero rows and columns before the first input row and column.
    pub(super) pad_top_left: (usize, usize),
    /// Channels last (`[H, W, C]`, as tract lays out YuNet's small head convolutions).
    pub(super) channels_last: bool,
    /// `[C, group_in, 9]`, row-major taps.
    pub(super) weights: Arc<Vec<f32>>,
    pub(super) bias: Arc<Vec<f32>>,
    pub(super) act: Act,
    pub(super) out_shape: TVec<usize>,
    /// For a full convolution, the same weights, bias and activation in the layout of the
    /// matrix product that computes it (set by [`Conv3x3Act::prepared`]).
    pub(super) full: Option<ChannelMix>,
}

impl Eq for Conv3x3Act {}

impl Op for Conv3x3Act {
    fn name(&self) -> StaticName {
        "VisageConv3x3Act".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{}x{}x{:?} stride {} act {}",
            self.channels,
            self.group_in,
            self.in_hw,
            self.stride,
            match self.act {
                Act::Linear => "linear",
                Act::Relu => "relu",
                Act::PRelu(_) => "prelu",
            }
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for Conv3x3Act {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = f32s(&inputs[0])?;
        let (h, w) = self.in_hw;
        ensure!(
            input.len() == self.in_channels() * h * w,
            "convolution input size"
        );
        ensure!(
            self.group_in == 1 || self.full.is_some(),
            "full convolution not prepared"
        );
        run_kernel(self, input, &self.out_shape)
    }
}

impl TypedOp for Conv3x3Act {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&*self.out_shape)))
    }

    as_op!();
}

impl Conv3x3Act {
    /// Sets [`Conv3x3Act::full`] for a full convolution.
    pub(super) fn prepared(mut self) -> Self {
        if self.group_in > 1 {
            self.full = Some(ChannelMix::new(
                self.group_in * 9,
                self.channels,
                &self.weights,
                self.bias.to_vec(),
                self.act.clone(),
            ));
        }
        self
    }
}

/// A 1x1 convolution with bias and activation on a `[C, H, W]` or `[1, C, H, W]` tensor, for
/// few input channels (YuNet's 16 to 64): tract runs these as matrix products that first
/// copy ("pack") the whole input, which cost as much as the products themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct PointwiseAct {
    pub(super) mix: ChannelMix,
    pub(super) out_shape: TVec<usize>,
    /// The output is `[H, W, O]` (YuNet's head, laid out for its reshape to `[HW, O]`).
    pub(super) channels_last: bool,
}

impl Eq for PointwiseAct {}

impl Op for PointwiseAct {
    fn name(&self) -> StaticName {
        "VisagePointwiseAct".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} -> {}", self.mix.inputs, self.mix.outputs)])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for PointwiseAct {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = f32s(&inputs[0])?;
        ensure!(
            !input.is_empty() && input.len() % self.mix.inputs == 0,
            "pointwise input size"
        );
        ensure!(
            self.out_shape.iter().product::<usize>() / self.mix.outputs
                == input.len() / self.mix.inputs,
            "pointwise output size"
        );
        run_kernel(self, input, &self.out_shape)
    }
}

impl TypedOp for PointwiseAct {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&*self.out_shape)))
    }

    as_op!();
}

impl PointwiseAct {
    pub(super) fn new(
        in_channels: usize,
        out_channels: usize,
        w: &[f32],
        bias: Vec<f32>,
        act: Act,
        out_shape: TVec<usize>,
        channels_last: bool,
    ) -> Self {
        Self {
            mix: ChannelMix::new(in_channels, out_channels, w, bias, act),
            out_shape,
            channels_last,
        }
    }
}

/// A 1x1 convolution ([`PointwiseAct`]) and the depthwise 3x3 convolution
/// ([`Conv3x3Act`]) that alone reads its output, in one op: the 1x1 output is computed in
/// bands that stay in cache instead of being written whole and read back (both models are
/// made of such pairs; see `kernels::pw_dw`).
#[derive(Debug, Clone, PartialEq)]
pub struct PointwiseDepthwise {
    pub(super) pw: PointwiseAct,
    pub(super) dw: Conv3x3Act,
    /// The output is max-pooled 2x2 with stride 2 (YuNet's [`MaxPool2x2`] after a pair),
    /// as it is written.
    pub(super) pooled: bool,
    /// A full 3x3 convolution before the pair (each model's first layer), whose output rows
    /// are computed as the 1x1 convolution needs them: the largest activation of a model is
    /// then never written whole.
    pub(super) stem: Option<Conv3x3Act>,
    pub(super) out_shape: TVec<usize>,
}

impl Eq for PointwiseDepthwise {}

impl PointwiseDepthwise {
    /// The pair, if the op computes it: both channels-first, the second depthwise over the
    /// first's output.
    pub(super) fn new(pw: PointwiseAct, dw: Conv3x3Act) -> Option<Self> {
        let (h, w) = dw.in_hw;
        let fits = !pw.channels_last
            && !dw.channels_last
            && dw.group_in == 1
            && pw.mix.outputs == dw.channels
            && pw.out_shape.iter().product::<usize>() == dw.channels * h * w;
        let out_shape = dw.out_shape.clone();
        fits.then_some(Self {
            pw,
            dw,
            pooled: false,
            stem: None,
            out_shape,
        })
    }

    /// The pair with `stem` before it, if the pair reads `stem`'s output.
    pub(super) fn with_stem(&self, stem: &Conv3x3Act) -> Option<Self> {
        let fits = self.stem.is_none()
            && stem.group_in > 1
            && stem.full.is_some()
            && !stem.channels_last
            && stem.channels == self.pw.mix.inputs
            && stem.out_hw == self.dw.in_hw;
        fits.then(|| Self {
            stem: Some(stem.clone()),
            ..self.clone()
        })
    }

    /// Floats of input the op reads.
    fn input_len(&self) -> usize {
        match &self.stem {
            Some(stem) => stem.in_channels() * stem.in_hw.0 * stem.in_hw.1,
            None => self.pw.mix.inputs * self.dw.in_hw.0 * self.dw.in_hw.1,
        }
    }

    /// The pair with `pool` after it, if `pool` reads the pair's output.
    pub(super) fn with_pool(&self, pool: &MaxPool2x2) -> Option<Self> {
        let fits =
            !self.pooled && pool.channels == self.dw.channels && pool.in_hw == self.dw.out_hw;
        fits.then(|| Self {
            pooled: true,
            out_shape: pool.out_shape.clone(),
            ..self.clone()
        })
    }
}

impl Op for PointwiseDepthwise {
    fn name(&self) -> StaticName {
        "VisagePointwiseDepthwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let mut info = match &self.stem {
            Some(stem) => stem.info()?,
            None => vec![],
        };
        info.extend(self.pw.info()?);
        info.extend(self.dw.info()?);
        if self.pooled {
            info.push("max pool 2x2".into());
        }
        Ok(info)
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for PointwiseDepthwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = f32s(&inputs[0])?;
        ensure!(
            input.len() == self.input_len(),
            "pointwise-depthwise input size"
        );
        // Two kernels, each compiled on its own (one function each under `dispatch`): in
        // one function the two paths made each other slower.
        if self.in_place() {
            run_kernel(&PairInPlace(self), input, &self.out_shape)
        } else {
            run_kernel(self, input, &self.out_shape)
        }
    }
}

impl TypedOp for PointwiseDepthwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&*self.out_shape)))
    }

    as_op!();
}

/// A per-channel activation on its own (PReLU after a 1x1 convolution), one pass instead of
/// tract's two.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelAct {
    pub(super) channels: usize,
    pub(super) act: Act,
}

impl Eq for ChannelAct {}

impl Op for ChannelAct {
    fn name(&self) -> StaticName {
        "VisageChannelAct".into()
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelAct {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut t = args_1!(inputs).into_tensor();
        let mut view = t.try_as_plain_ram_mut()?;
        let data = view.as_slice_mut::<f32>()?;
        dispatch(
            #[inline(always)]
            |_| self.activate_in_place(data),
        );
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for ChannelAct {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

/// A 2x2 max pool with stride 2 (YuNet's, which the converter writes as two 1-D pools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPool2x2 {
    pub(super) channels: usize,
    pub(super) in_hw: (usize, usize),
    pub(super) out_shape: TVec<usize>,
}

impl Op for MaxPool2x2 {
    fn name(&self) -> StaticName {
        "VisageMaxPool2x2".into()
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2x2 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = f32s(&inputs[0])?;
        let (h, w) = self.in_hw;
        ensure!(input.len() == self.channels * h * w, "max pool input size");
        run_kernel(self, input, &self.out_shape)
    }
}

impl TypedOp for MaxPool2x2 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&*self.out_shape)))
    }

    as_op!();
}

/// An f32 tensor of `shape` for an op to fill: left uninitialised, as tract's own operators
/// do, because zeroing the activations cost a tenth of a run (profiled). Every op here writes
/// every element of its output before returning it.
pub(super) fn output_tensor(shape: &[usize]) -> TractResult<Tensor> {
    // SAFETY: f32 has no invalid bit patterns, and the callers overwrite every element
    // before the tensor is read.
    unsafe { Tensor::uninitialized::<f32>(shape) }
}

pub(super) fn f32s(t: &Tensor) -> TractResult<&[f32]> {
    t.try_as_plain_ram()?.as_slice::<f32>()
}
