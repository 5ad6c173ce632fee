//! Loading an ONNX model with its compact weights unpacked first.
//!
//! `scripts/convert_models.py` stores MobileFaceNet's kernels compactly (1x1 kernels as int8
//! codes times a float32 scale per output channel, the others as float16) and rebuilds them to
//! float32 with `Cast` and `Mul` nodes in front of the graph. tract folds those nodes while it
//! analyses the model, but slowly: 205 of the embedder's 335 ms of set-up went there (native,
//! `cargo run --release -p visage-shared --example setup_phases`), and every browser worker
//! pays it again. [`load_onnx`] folds them on the protobuf instead, before tract sees the graph:
//! one pass over 1.3 M numbers. The arithmetic is the same (an exact cast, then one float32
//! product per weight), so the weights, and the plans built from them, are bit-identical.

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{GraphProto, NodeProto, TensorProto, tensor_proto::DataType};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{f16, format_err};

/// Parses ONNX bytes into tract's model, with constant `Cast`-to-float32 and float32 `Mul`
/// nodes over initializers folded into float32 initializers first.
pub fn load_onnx(bytes: &[u8]) -> TractResult<InferenceModel> {
    let onnx = tract_onnx::onnx();
    let mut proto = onnx.proto_model_for_read(&mut std::io::Cursor::new(bytes))?;
    if let Some(graph) = proto.graph.as_mut() {
        fold_constant_weights(graph)?;
    }
    onnx.model_for_proto_model(&proto)
}

/// Folds, in graph order, every `Cast` to float32 and every float32 `Mul` whose inputs are all
/// initializers into a float32 initializer named after its output, then drops the initializers
/// nothing reads any more. Returns how many nodes were folded.
fn fold_constant_weights(graph: &mut GraphProto) -> TractResult<usize> {
    let mut consts: HashMap<String, Const> = graph
        .initializer
        .drain(..)
        .map(|t| (t.name.clone(), Const::Stored(Box::new(t))))
        .collect();
    let mut kept = Vec::with_capacity(graph.node.len());
    let mut folded = 0;
    for node in graph.node.drain(..) {
        match fold(&node, &consts)? {
            Some((dims, values)) => {
                consts.insert(node.output[0].clone(), Const::Folded(dims, values));
                folded += 1;
            }
            None => kept.push(node),
        }
    }
    graph.node = kept;
    let read: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name.as_str()))
        .collect();
    let mut initializers: Vec<TensorProto> = consts
        .into_iter()
        .filter(|(name, _)| read.contains(name.as_str()))
        .map(|(name, c)| c.into_proto(name))
        .collect();
    // A stable order, so that two loads of the same bytes build the same graph.
    initializers.sort_by(|a, b| a.name.cmp(&b.name));
    graph.initializer = initializers;
    Ok(folded)
}

/// Dimensions and float32 values.
type Values = (Vec<i64>, Vec<f32>);

/// A constant of the graph: as the file stores it, or folded here (kept as numbers until the
/// end, so a `Mul` after a `Cast` does not decode what the `Cast` just made).
enum Const {
    Stored(Box<TensorProto>),
    Folded(Vec<i64>, Vec<f32>),
}

impl Const {
    fn dims(&self) -> &[i64] {
        match self {
            Const::Stored(t) => &t.dims,
            Const::Folded(d, _) => d,
        }
    }

    fn is_float(&self) -> bool {
        match self {
            Const::Stored(t) => t.data_type == FLOAT,
            Const::Folded(..) => true,
        }
    }

    /// Its values as float32 (see [`as_f32`]).
    fn values(&self) -> Option<std::borrow::Cow<'_, [f32]>> {
        match self {
            Const::Stored(t) => as_f32(t).map(std::borrow::Cow::Owned),
            Const::Folded(_, v) => Some(std::borrow::Cow::Borrowed(v)),
        }
    }

    fn into_proto(self, name: String) -> TensorProto {
        match self {
            Const::Stored(t) => *t,
            Const::Folded(dims, values) => {
                let mut raw_data = Vec::with_capacity(values.len() * 4);
                for x in &values {
                    raw_data.extend_from_slice(&x.to_le_bytes());
                }
                TensorProto {
                    name,
                    dims,
                    data_type: FLOAT,
                    raw_data,
                    ..Default::default()
                }
            }
        }
    }
}

/// The float32 value of `node` when it is a `Cast` to float32 or a float32 `Mul` over
/// constants (stored as raw little-endian bytes, or folded); `None` leaves the node to tract.
fn fold(node: &NodeProto, consts: &HashMap<String, Const>) -> TractResult<Option<Values>> {
    let inputs: Option<Vec<&Const>> = node.input.iter().map(|i| consts.get(i)).collect();
    let Some(inputs) = inputs else {
        return Ok(None);
    };
    if node.output.len() != 1 {
        return Ok(None);
    }
    match (node.op_type.as_str(), inputs.as_slice()) {
        ("Cast", [t]) => {
            let to = node.attribute.iter().find(|a| a.name == "to").map(|a| a.i);
            if to != Some(DataType::Float as i64) {
                return Ok(None);
            }
            Ok(t.values().map(|v| (t.dims().to_vec(), v.into_owned())))
        }
        ("Mul", [a, b]) if a.is_float() && b.is_float() => {
            let (Some(x), Some(y)) = (a.values(), b.values()) else {
                return Ok(None);
            };
            broadcast_mul(a.dims(), &x, b.dims(), &y).map(Some)
        }
        _ => Ok(None),
    }
}

const FLOAT: i32 = DataType::Float as i32;

/// The values of a float32, float16 or int8 tensor held in `raw_data` (how the converter writes
/// them), as float32: exact for all three.
fn as_f32(t: &TensorProto) -> Option<Vec<f32>> {
    let raw = &t.raw_data;
    let n: i64 = t.dims.iter().product();
    let values: Vec<f32> = match DataType::try_from(t.data_type).ok()? {
        DataType::Float => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DataType::Float16 => raw
            .chunks_exact(2)
            .map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect(),
        DataType::Int8 => raw.iter().map(|&b| f32::from(b as i8)).collect(),
        _ => return None,
    };
    (values.len() as i64 == n).then_some(values)
}

/// `a * b` with NumPy broadcasting (as ONNX `Mul`), one float32 product per element.
fn broadcast_mul(da: &[i64], a: &[f32], db: &[i64], b: &[f32]) -> TractResult<Values> {
    let rank = da.len().max(db.len());
    let pad = |d: &[i64]| -> Vec<i64> {
        let mut v = vec![1; rank - d.len()];
        v.extend_from_slice(d);
        v
    };
    let (da, db) = (pad(da), pad(db));
    let mut out_dims = Vec::with_capacity(rank);
    for (&x, &y) in da.iter().zip(&db) {
        if x != y && x != 1 && y != 1 {
            return Err(format_err!(
                "Mul of shapes {da:?} and {db:?} does not broadcast"
            ));
        }
        out_dims.push(x.max(y));
    }
    // Row-major strides, zero along the axes an input is broadcast over.
    let strides = |d: &[i64]| -> Vec<usize> {
        let mut s = vec![0; rank];
        let mut acc = 1;
        for k in (0..rank).rev() {
            s[k] = if d[k] == 1 { 0 } else { acc };
            acc *= d[k] as usize;
        }
        s
    };
    // The weights' case, a per-channel scale: one side is the whole output, the other varies
    // along leading axes only. One product per element, as in the general loop below.
    let total = out_dims.iter().product::<i64>() as usize;
    for (full, dfull, scale, dscale) in [(a, &da, b, &db), (b, &db, a, &da)] {
        let lead = dscale.iter().rposition(|&d| d != 1).map_or(0, |k| k + 1);
        if total > 0
            && full.len() == total
            && dscale[..lead] == out_dims[..lead]
            && *dfull == out_dims
        {
            let inner = total / scale.len().max(1);
            let mut out = Vec::with_capacity(total);
            for (chunk, &s) in full.chunks_exact(inner).zip(scale) {
                // Float multiplication commutes exactly: the side does not matter.
                out.extend(chunk.iter().map(|&x| x * s));
            }
            return Ok((out_dims, out));
        }
    }
    let (sa, sb) = (strides(&da), strides(&db));
    let mut out = Vec::with_capacity(total);
    let mut index = vec![0i64; rank];
    let (mut ia, mut ib) = (0usize, 0usize);
    for _ in 0..total {
        out.push(a[ia] * b[ib]);
        // Odometer step over the output's multi-index, keeping both offsets in step.
        for k in (0..rank).rev() {
            index[k] += 1;
            ia += sa[k];
            ib += sb[k];
            if index[k] < out_dims[k] {
                break;
            }
            ia -= sa[k] * out_dims[k] as usize;
            ib -= sb[k] * out_dims[k] as usize;
            index[k] = 0;
        }
    }
    Ok((out_dims, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model;

    fn plan_output(model: InferenceModel) -> Vec<f32> {
        let shape = [1, 3, 112, 112];
        let plan = crate::fuse::optimise(model, shape).unwrap();
        let input = Tensor::from_shape(
            &shape,
            &(0..3 * 112 * 112)
                .map(|i| ((i * 37 % 255) as f32 - 127.5) / 128.0)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let out = plan.run(tvec!(input.into())).unwrap();
        out[0]
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    fn proto_of(onnx: &[u8]) -> tract_onnx::pb::ModelProto {
        tract_onnx::onnx()
            .proto_model_for_read(&mut std::io::Cursor::new(onnx))
            .unwrap()
    }

    #[test]
    fn the_embedder_loads_with_its_weights_folded_and_runs_bit_identically() {
        let onnx = tract_onnx::onnx();
        let mut proto = proto_of(model::EMBEDDER_ONNX);
        let graph = proto.graph.as_mut().unwrap();
        let nodes = graph.node.len();
        let folded = fold_constant_weights(graph).unwrap();
        // Every compact kernel: a Cast (float16), or a Cast and a Mul (int8 times scale).
        assert!(folded > 50, "only {folded} nodes folded");
        assert_eq!(graph.node.len(), nodes - folded);
        assert!(
            graph
                .node
                .iter()
                .all(|n| n.op_type != "Cast" || !n.input[0].ends_with("_int8"))
        );
        assert!(
            graph
                .initializer
                .iter()
                .all(|t| t.data_type == DataType::Float as i32
                    || t.data_type == DataType::Int64 as i32),
            "int8 or float16 initializers are left"
        );
        let folded = plan_output(load_onnx(model::EMBEDDER_ONNX).unwrap());
        let tract_folded = plan_output(
            onnx.model_for_read(&mut std::io::Cursor::new(model::EMBEDDER_ONNX))
                .unwrap(),
        );
        assert_eq!(folded.len(), model::EMBEDDING_DIM);
        assert_eq!(folded, tract_folded, "the folded weights change the output");
    }

    #[test]
    fn products_broadcast_as_in_numpy() {
        let (d, v) =
            broadcast_mul(&[2, 3], &[1., 2., 3., 4., 5., 6.], &[2, 1], &[10., 100.]).unwrap();
        assert_eq!((d, v), (vec![2, 3], vec![10., 20., 30., 400., 500., 600.]));
        let (d, v) = broadcast_mul(&[2, 1], &[1., 2.], &[3], &[1., 10., 100.]).unwrap();
        assert_eq!((d, v), (vec![2, 3], vec![1., 10., 100., 2., 20., 200.]));
        let (d, v) =
            broadcast_mul(&[2, 1], &[10., 100.], &[2, 3], &[1., 2., 3., 4., 5., 6.]).unwrap();
        assert_eq!((d, v), (vec![2, 3], vec![10., 20., 30., 400., 500., 600.]));
        let (d, v) = broadcast_mul(&[1, 3], &[1., 2., 3.], &[2, 1], &[10., 100.]).unwrap();
        assert_eq!((d, v), (vec![2, 3], vec![10., 20., 30., 100., 200., 300.]));
        assert!(broadcast_mul(&[2], &[1., 2.], &[3], &[1., 2., 3.]).is_err());
    }

    #[test]
    fn a_model_without_compact_weights_is_unchanged() {
        let mut proto = proto_of(model::DETECTOR_ONNX);
        let before = proto.clone();
        let graph = proto.graph.as_mut().unwrap();
        assert_eq!(fold_constant_weights(graph).unwrap(), 0);
        assert_eq!(graph.node, before.graph.as_ref().unwrap().node);
        let names = |g: &GraphProto| {
            let mut v: Vec<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(names(graph), names(before.graph.as_ref().unwrap()));
    }
}
