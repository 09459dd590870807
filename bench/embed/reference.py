#!/usr/bin/python3
"""The Hugging Face DINOv2 encoder (Dinov2WithRegistersModel / Dinov2Model) in plain PyTorch, for the
cx-embed benchmark. Written from the public architecture (transformers' modeling_dinov2*.py, eager
attention, eval mode, float32), not from cx's C++, so that it is an independent reference.

Debian's python3-torch 1.13 has neither transformers nor safetensors, so the weights are read and
written here with numpy + json (the safetensors format is an 8-byte little-endian header length, a
JSON header of {name: {dtype, shape, data_offsets}}, then the raw little-endian bytes).

  reference.py make-model DIR --config CONFIG.json [--seed S]   random-weight HF folder
  reference.py time --model DIR [--images 16 --batch 4 --threads 2 --warmup-batches 1]
  reference.py run --model DIR --pixel-values X.npy --out Y.npy  last_hidden_state of X
  reference.py peak [--threads 2 --sizes 2048 --dtype float32]   matmul GFLOP/s: best of torch and oneDNN
Results of `time` and `peak` are one JSON line on stdout.
"""
import argparse
import json
import math
import os
import struct
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_NP_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


# ---------------------------------------------------------------------------------------------------
# safetensors with numpy
def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[base + begin : base + end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        else:
            array = np.frombuffer(raw, dtype=np.dtype(_NP_DTYPES[info["dtype"]]).newbyteorder("<"))
        tensors[name] = torch.from_numpy(array.astype(np.float32).reshape(info["shape"]))
    return tensors


def write_safetensors(path, tensors):
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name], dtype="<f4")
        blob = array.tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the Rust writer does
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------
# The model
def mlp_hidden(cfg):
    hidden = int(cfg["hidden_size"] * cfg.get("mlp_ratio", 4))
    if cfg.get("use_swiglu_ffn", False):
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
    return hidden


def weight_shapes(cfg):
    """Every state_dict key of the HF model and its shape."""
    D, p, C = cfg["hidden_size"], cfg["patch_size"], cfg.get("num_channels", 3)
    grid = cfg["image_size"] // p
    registers = cfg.get("model_type") == "dinov2_with_registers"
    shapes = {
        "embeddings.cls_token": [1, 1, D],
        "embeddings.mask_token": [1, D],
        "embeddings.position_embeddings": [1, grid * grid + 1, D],
        "embeddings.patch_embeddings.projection.weight": [D, C, p, p],
        "embeddings.patch_embeddings.projection.bias": [D],
        "layernorm.weight": [D],
        "layernorm.bias": [D],
    }
    if registers:
        shapes["embeddings.register_tokens"] = [1, cfg.get("num_register_tokens", 4), D]
    hidden = mlp_hidden(cfg)
    for i in range(cfg["num_hidden_layers"]):
        l = f"encoder.layer.{i}."
        for norm in ("norm1", "norm2"):
            shapes[l + norm + ".weight"] = [D]
            shapes[l + norm + ".bias"] = [D]
        for proj in ("query", "key", "value"):
            shapes[l + f"attention.attention.{proj}.weight"] = [D, D]
            if cfg.get("qkv_bias", True):
                shapes[l + f"attention.attention.{proj}.bias"] = [D]
        shapes[l + "attention.output.dense.weight"] = [D, D]
        shapes[l + "attention.output.dense.bias"] = [D]
        shapes[l + "layer_scale1.lambda1"] = [D]
        shapes[l + "layer_scale2.lambda1"] = [D]
        if cfg.get("use_swiglu_ffn", False):
            shapes[l + "mlp.weights_in.weight"] = [2 * hidden, D]
            shapes[l + "mlp.weights_in.bias"] = [2 * hidden]
            shapes[l + "mlp.weights_out.weight"] = [D, hidden]
            shapes[l + "mlp.weights_out.bias"] = [D]
        else:
            shapes[l + "mlp.fc1.weight"] = [hidden, D]
            shapes[l + "mlp.fc1.bias"] = [hidden]
            shapes[l + "mlp.fc2.weight"] = [D, hidden]
            shapes[l + "mlp.fc2.bias"] = [D]
    return shapes


def random_weights(cfg, seed):
    """N(0, 0.02) matrices and biases; norm weights and layer scales moved away from 1 so that a
    wrong key mapping on either side changes the output."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in weight_shapes(cfg).items():
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "layernorm.weight":
            w = 1 + 0.1 * rng.standard_normal(shape)
        elif "layer_scale" in name:
            w = cfg.get("layerscale_value", 1.0) * (1 + 0.1 * rng.standard_normal(shape))
        else:
            w = 0.02 * rng.standard_normal(shape)
        weights[name] = w.astype(np.float32)
    return weights


class Dinov2(nn.Module):
    def __init__(self, cfg, weights):
        super().__init__()
        self.cfg = cfg
        self.w = {k: v.contiguous() for k, v in weights.items()}
        self.D = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.patch = cfg["patch_size"]
        self.eps = cfg.get("layer_norm_eps", 1e-6)
        self.registers = cfg.get("model_type") == "dinov2_with_registers"
        self.act = {"gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
                    "silu": F.silu, "swish": F.silu, "relu": F.relu}[cfg.get("hidden_act", "gelu")]

    def interpolate_pos_encoding(self, embeddings, height, width):
        # transformers' current code: skipped only when the patch count matches AND the input is square
        pos = self.w["embeddings.position_embeddings"]
        num_patches, num_positions = embeddings.shape[1] - 1, pos.shape[1] - 1
        if num_patches == num_positions and height == width:
            return pos
        class_pos, patch_pos = pos[:, :1], pos[:, 1:]
        side = int(math.sqrt(num_positions))
        patch_pos = patch_pos.reshape(1, side, side, self.D).permute(0, 3, 1, 2)
        # The registers model resamples with Pillow-style antialiased bicubic; Dinov2Model with
        # torch's plain bicubic.
        patch_pos = F.interpolate(patch_pos.float(), size=(height // self.patch, width // self.patch),
                                  mode="bicubic", align_corners=False, antialias=self.registers)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, self.D)
        return torch.cat((class_pos, patch_pos), dim=1)

    def embeddings(self, pixel_values, masks=None):
        B, _, H, W = pixel_values.shape
        w = self.w
        x = F.conv2d(pixel_values, w["embeddings.patch_embeddings.projection.weight"],
                     w["embeddings.patch_embeddings.projection.bias"], stride=self.patch)
        x = x.flatten(2).transpose(1, 2)
        if masks is not None:  # HF's bool_masked_pos: masked patches become the mask token
            x = torch.where(masks.unsqueeze(-1), w["embeddings.mask_token"].to(x.dtype).unsqueeze(0), x)
        x = torch.cat((w["embeddings.cls_token"].expand(B, -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, H, W)
        if self.registers:
            x = torch.cat((x[:, :1], w["embeddings.register_tokens"].expand(B, -1, -1), x[:, 1:]), dim=1)
        return x

    def attention(self, l, x):
        w, B, N = self.w, x.shape[0], x.shape[1]
        hd = self.D // self.heads

        def heads(t):
            return t.view(B, N, self.heads, hd).transpose(1, 2)

        a = l + "attention.attention."
        q = heads(F.linear(x, w[a + "query.weight"], w.get(a + "query.bias")))
        k = heads(F.linear(x, w[a + "key.weight"], w.get(a + "key.bias")))
        v = heads(F.linear(x, w[a + "value.weight"], w.get(a + "value.bias")))
        scores = torch.matmul(q, k.transpose(2, 3)) * hd ** -0.5
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(B, N, self.D)
        return F.linear(ctx, w[l + "attention.output.dense.weight"], w[l + "attention.output.dense.bias"])

    def mlp(self, l, x):
        w = self.w
        if self.cfg.get("use_swiglu_ffn", False):
            h = F.linear(x, w[l + "mlp.weights_in.weight"], w[l + "mlp.weights_in.bias"])
            x1, x2 = h.chunk(2, dim=-1)
            return F.linear(F.silu(x1) * x2, w[l + "mlp.weights_out.weight"], w[l + "mlp.weights_out.bias"])
        h = self.act(F.linear(x, w[l + "mlp.fc1.weight"], w[l + "mlp.fc1.bias"]))
        return F.linear(h, w[l + "mlp.fc2.weight"], w[l + "mlp.fc2.bias"])

    def forward(self, pixel_values, masks=None):
        w, D = self.w, self.D
        x = self.embeddings(pixel_values, masks)
        for i in range(self.cfg["num_hidden_layers"]):
            l = f"encoder.layer.{i}."
            h = F.layer_norm(x, (D,), w[l + "norm1.weight"], w[l + "norm1.bias"], self.eps)
            x = x + self.attention(l, h) * w[l + "layer_scale1.lambda1"]
            h = F.layer_norm(x, (D,), w[l + "norm2.weight"], w[l + "norm2.bias"], self.eps)
            x = x + self.mlp(l, h) * w[l + "layer_scale2.lambda1"]
        return F.layer_norm(x, (D,), w["layernorm.weight"], w["layernorm.bias"], self.eps)  # last_hidden_state


def load_model(folder):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    weights = read_safetensors(os.path.join(folder, "model.safetensors"))
    expected = weight_shapes(cfg)
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or unexpected:
        sys.exit(f"reference.py: {folder}: missing keys {missing}, unexpected keys {unexpected}")
    for name, shape in expected.items():
        if list(weights[name].shape) != shape:
            sys.exit(f"reference.py: {folder}: {name} has shape {list(weights[name].shape)}, expected {shape}")
    return cfg, Dinov2(cfg, weights).eval()


def flops_per_image(cfg, height, width):
    """2 x the multiply-adds of the matrix products; LayerNorm, GELU, softmax are < 1% and not counted.
    Per layer, N tokens of width D, MLP width h (h_in = 2h for SwiGLU):
      qkv 2*N*D*3D + out 2*N*D*D + mlp 2*N*D*h_in + 2*N*h*D + attention 2*N*N*D (q k^T) + 2*N*N*D (p v)
    plus the patch convolution 2 * patches * C*p*p * D."""
    D, L, p = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["patch_size"]
    patches = (height // p) * (width // p)
    N = 1 + (cfg.get("num_register_tokens", 4) if cfg.get("model_type") == "dinov2_with_registers" else 0) + patches
    h = mlp_hidden(cfg)
    h_in = 2 * h if cfg.get("use_swiglu_ffn", False) else h
    per_layer = 2 * N * D * 3 * D + 2 * N * D * D + 2 * N * D * h_in + 2 * N * h * D + 4 * N * N * D
    return L * per_layer + 2 * patches * cfg.get("num_channels", 3) * p * p * D


# ---------------------------------------------------------------------------------------------------
def cmd_make_model(args):
    with open(args.config) as f:
        cfg = json.load(f)
    os.makedirs(args.dir, exist_ok=True)
    write_safetensors(os.path.join(args.dir, "model.safetensors"), random_weights(cfg, args.seed))
    with open(os.path.join(args.dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def cmd_time(args):
    torch.set_num_threads(args.threads)
    cfg, model = load_model(args.model)
    size = args.size or cfg["image_size"]
    # One random batch fed images / batch times, as embed_bench does: memory stays flat.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, cfg.get("num_channels", 3), size, size, generator=gen)
    batches = max(1, args.images // args.batch)
    with torch.no_grad():
        for _ in range(args.warmup_batches):
            model(x)
        start = time.perf_counter()
        cpu0 = time.process_time()
        for _ in range(batches):
            model(x)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    images = batches * args.batch
    print(json.dumps({"images": images, "seconds": seconds, "cpu_seconds": cpu, "images_per_s": images / seconds,
                      "flops_per_image": flops_per_image(cfg, size, size), "threads": torch.get_num_threads()}))


def cmd_run(args):
    torch.set_num_threads(args.threads)
    _, model = load_model(args.model)
    x = torch.from_numpy(np.load(args.pixel_values).astype(np.float32))
    if x.dim() == 3:
        x = x.unsqueeze(0)
    with torch.no_grad():
        y = model(x)
    np.save(args.out, y.numpy())


def cmd_peak(args):
    """The matmul peak: the best of n^3 products (n in --sizes, --repeats each) through torch.mm
    (OpenBLAS for float32 in Debian's torch, oneDNN's matmul for bfloat16) and through oneDNN's GEMM
    called directly (dnnl_sgemm / dnnl_gemm_bf16bf16f32, what cx's products run on,
    lib/cx/model/gemm.hpp); "gflops" is the better of the two (or the one --source names), so that
    no figure exceeds 100% of the peak. bench/matmul_peak.sh calls this for the other benches."""
    import ctypes
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    def torch_mm(n):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        return lambda: torch.mm(a, b)

    def onednn(n):
        try:
            lib = ctypes.CDLL("libdnnl.so.2")
        except OSError:
            return None
        a, b, out = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype), torch.empty(n, n)
        fn = lib.dnnl_sgemm if args.dtype == "float32" else lib.dnnl_gemm_bf16bf16f32
        i64, f32, vp = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
        fn.argtypes = [ctypes.c_char, ctypes.c_char, i64, i64, i64, f32, vp, i64, vp, i64, f32, vp, i64]
        call = (b"N", b"N", n, n, n, 1.0, a.data_ptr(), n, b.data_ptr(), n, 0.0, out.data_ptr(), n)
        return lambda: (a, b, out, fn(*call))

    result = {"dtype": args.dtype, "sizes": args.sizes, "threads": torch.get_num_threads()}
    for name, make in (("torch", torch_mm), ("onednn", onednn)):
        for n in args.sizes:
            run = make(n)
            if run is None:
                break
            run()
            for _ in range(args.repeats):
                start = time.perf_counter()
                run()
                gf = 2 * n ** 3 / (time.perf_counter() - start) / 1e9
                result[name + "_gflops"] = max(result.get(name + "_gflops", 0.0), gf)
    if args.source == "best":
        result["gflops"] = max(v for k, v in result.items() if k.endswith("_gflops"))
    else:
        result["gflops"] = result.get(args.source + "_gflops", 0.0)
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make-model")
    p.add_argument("dir")
    p.add_argument("--config", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_model)
    p = sub.add_parser("time")
    p.add_argument("--model", required=True)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=0, help="input side in pixels (default: the config's image_size)")
    p.add_argument("--warmup-batches", type=int, default=1)
    p.set_defaults(func=cmd_time)
    p = sub.add_parser("run")
    p.add_argument("--model", required=True)
    p.add_argument("--pixel-values", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("peak")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="+", default=[2048])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--source", choices=["best", "torch", "onednn"], default="best")
    p.set_defaults(func=cmd_peak)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
