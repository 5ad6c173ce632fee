"""Reference implementation of the visage pipeline with onnxruntime + OpenCV + numpy.

Used for two things:
  * accuracy: `python scripts/reference.py eval --pairs ../shared/faces/pairs.csv` gives the AUC
    the Rust pipeline must match (within 0.001);
  * speed: `python scripts/reference.py bench --json` times onnxruntime on the same ONNX files
    (single thread), the reference column of BENCHMARKS.md (`cargo xtask bench` runs it).
"""
import argparse
import json
import os
import statistics
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "models")
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


def session(name):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(os.path.join(MODELS, name), o, providers=["CPUExecutionProvider"])


class Detector:
    def __init__(self):
        self.s = session("yunet_2023mar.onnx")

    def input(self, img_rgb, max_side):
        h, w = img_rgb.shape[:2]
        scale = max_side / max(w, h)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        W, H = -(-sw // 32) * 32, -(-sh // 32) * 32
        resized = cv2.resize(img_rgb, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        blob = np.zeros((1, 3, H, W), np.float32)
        blob[0, :, :sh, :sw] = resized[:, :, ::-1].transpose(2, 0, 1)
        return blob, scale

    def detect(self, img_rgb, max_side=640, thr=0.8, nms=0.3):
        blob, scale = self.input(img_rgb, max_side)
        H, W = blob.shape[2:]
        outs = self.s.run(None, {"input": blob})
        boxes, scores, kps = [], [], []
        for i, s in enumerate((8, 16, 32)):
            cols, rows = W // s, H // s
            cls, obj, bb, kp = outs[i][0, :, 0], outs[3 + i][0, :, 0], outs[6 + i][0], outs[9 + i][0]
            sc = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            idx = np.where(sc >= thr)[0]
            r, c = idx // cols, idx % cols
            cx, cy = (c + bb[idx, 0]) * s, (r + bb[idx, 1]) * s
            bw, bh = np.exp(bb[idx, 2]) * s, np.exp(bb[idx, 3]) * s
            boxes += list(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], 1))
            scores += list(sc[idx])
            k = kp[idx].reshape(-1, 5, 2).copy()
            k[:, :, 0] = (k[:, :, 0] + c[:, None]) * s
            k[:, :, 1] = (k[:, :, 1] + r[:, None]) * s
            kps += list(k)
        keep = cv2.dnn.NMSBoxes([list(map(float, b)) for b in boxes], [float(x) for x in scores], thr, nms) if boxes else []
        keep = np.array(keep).reshape(-1)
        return [(scores[i], boxes[i] / scale, kps[i] / scale) for i in keep]


def similarity(src, dst):
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    n = (s ** 2).sum()
    a = (s * d).sum() / n
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / n
    return np.array([[a, -b, md[0] - (a * ms[0] - b * ms[1])], [b, a, md[1] - (b * ms[0] + a * ms[1])]])


def align(img_rgb, kps):
    m = similarity(kps.astype(np.float64), TEMPLATE)
    return cv2.warpAffine(img_rgb, m, (112, 112), flags=cv2.INTER_LINEAR, borderValue=0)


class Embedder:
    def __init__(self):
        self.s = session("mobilefacenet.onnx")

    def embed(self, faces_rgb):
        x = (np.stack(faces_rgb).astype(np.float32) - 127.5) / 128.0
        e = self.s.run(None, {"input": x.transpose(0, 3, 1, 2)})[0]
        return e / np.linalg.norm(e, axis=1, keepdims=True)


def load(path):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode {path}")
    return img[:, :, ::-1].copy()


def cmd_eval(a):
    det, emb = Detector(), Embedder()
    root = a.root or os.path.dirname(a.pairs)
    cache, scores, labels = {}, [], []
    for line in open(a.pairs).read().splitlines()[1:]:
        x, y, same = line.split(",")
        for n in (x, y):
            if n not in cache:
                img = load(os.path.join(root, n))
                faces = det.detect(img)
                f = max(faces, key=lambda f: f[1][2] * f[1][3]) if faces else None
                cache[n] = emb.embed([align(img, f[2])])[0] if f is not None else None
        ex, ey = cache[x], cache[y]
        scores.append(float(ex @ ey) if ex is not None and ey is not None else -1.0)
        labels.append(same == "1")
    g = [s for s, l in zip(scores, labels) if l]
    i = [s for s, l in zip(scores, labels) if not l]
    auc = sum((a > b) + 0.5 * (a == b) for a in g for b in i) / (len(g) * len(i))
    ths = sorted(set(scores))
    acc = max((sum(s >= t for s in g) + sum(s < t for s in i)) / len(scores) for t in ths)
    print(json.dumps({"auc": auc, "best_accuracy": acc, "pairs": len(scores)}))


def timeit(fn, n):
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)


def cmd_bench(a):
    det, emb = Detector(), Embedder()
    rng = np.random.default_rng(0)
    out = {"onnxruntime": ort.__version__}
    frame = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    for side in (640, 320):
        blob, _ = det.input(frame, side)
        out[f"detect_640x480_at_{side}_ms"] = timeit(lambda: det.s.run(None, {"input": blob}), a.n)
    for b in (1, 8):
        x = rng.standard_normal((b, 3, 112, 112)).astype(np.float32)
        out[f"embed_batch{b}_per_face_ms"] = timeit(lambda: emb.s.run(None, {"input": x}), a.n) / b
    if a.image:
        img = load(a.image)
        faces = det.detect(img)
        f = faces[0]
        def full():
            fs = det.detect(img, 640)
            emb.embed([align(img, fs[0][2])])
        out["image"] = a.image
        out["full_one_face_ms"] = timeit(full, a.n)
        # The same 640x480 webcam-like frame as the Rust benchmark: the photo scaled to 480 px
        # high, centred on black; detected at 320 (the video setting) and at 640.
        h, w = img.shape[:2]
        sw = min(640, w * 480 // h)
        cam = np.zeros((480, 640, 3), np.uint8)
        x0 = (640 - sw) // 2
        cam[:, x0:x0 + sw] = cv2.resize(img, (sw, 480), interpolation=cv2.INTER_AREA)
        for side, thr in ((320, 0.6), (640, 0.8)):
            def frame(side=side, thr=thr):
                fs = det.detect(cam, side, thr)
                emb.embed([align(cam, fs[0][2])])
            out[f"full_frame_640x480_at_{side}_faces"] = len(det.detect(cam, side, thr))
            out[f"full_frame_640x480_at_{side}_ms"] = timeit(frame, a.n)
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval")
    e.add_argument("--pairs", required=True)
    e.add_argument("--root")
    b = sub.add_parser("bench")
    b.add_argument("-n", type=int, default=20)
    b.add_argument("--image")
    a = p.parse_args()
    {"eval": cmd_eval, "bench": cmd_bench}[a.cmd](a)


if __name__ == "__main__":
    main()
