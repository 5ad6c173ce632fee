//! The 2x2 max pool with stride 2 ([`MaxPool2x2`]).

use super::larger;
use crate::fuse::ops::MaxPool2x2;
use crate::fuse::simd::{Kernel, MulAdd};

impl Kernel for MaxPool2x2 {
    /// Each output row: the max of two input rows, then of each pair of columns.
    #[inline(always)]
    fn run<F: MulAdd>(&self, input: &[f32], out: &mut [f32]) {
        let (h, w) = self.in_hw;
        let (oh, ow) = (h / 2, w / 2);
        let mut pair = vec![0f32; 2 * ow];
        for c in 0..self.channels {
            let src = &input[c * h * w..(c + 1) * h * w];
            for oy in 0..oh {
                let r0 = &src[2 * oy * w..2 * oy * w + 2 * ow];
                let r1 = &src[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow];
                for ((p, a), b) in pair.iter_mut().zip(r0).zip(r1) {
                    *p = larger(*a, *b);
                }
                let o = &mut out[(c * oh + oy) * ow..(c * oh + oy + 1) * ow];
                for (x, v) in o.iter_mut().enumerate() {
                    *v = larger(pair[2 * x], pair[2 * x + 1]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::internal::*;

    use crate::fuse::ops::{MaxPool2x2, f32s};

    #[test]
    fn max_pool_by_hand() {
        let input: Vec<f32> = vec![1., 5., 2., 0., 3., 4., 8., 1., -1., -2., -3., -4.];
        let op = MaxPool2x2 {
            channels: 1,
            in_hw: (3, 4),
            out_shape: tvec!(1, 1, 2),
        };
        let out = op
            .eval(
                &EvalContext::out_of_plan(),
                tvec!(Tensor::from_shape(&[1, 3, 4], &input).expect("t").into()),
            )
            .expect("eval");
        // The odd last row is dropped, as a valid 2x2 pool does.
        assert_eq!(f32s(&out[0]).expect("f32"), &[5., 8.]);
    }
}
