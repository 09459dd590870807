#!/usr/bin/python3
"""bench/report's reference: a Llama-architecture language model in PyTorch (our own port of the
Hugging Face LlamaForCausalLM numerics that ../shared/fixtures/llm/README.md lists: RMSNorm in
float32, rotate-half RoPE, grouped-query attention, finite-minimum additive mask, softmax in
float32) with the same greedy loop cx runs: prefill of a left-padded batch, then one token per row
per step with a key/value cache grown by torch.cat, positions = cumsum(mask) - 1 (pads 1).

    reference.py make-model DIR [--seed S] [--layers 8] [--hidden 512] [--heads 8] [--kv-heads 4]
                 [--intermediate 1376] [--vocab 32000]
    reference.py run DIR [--batch 4] [--prompt 32] [--new 128] [--threads 2] [--repeat 3]

make-model writes config.json and model.safetensors (float32, random: matrices N(0, 0.02), norms
1 + N(0, 0.1)); run prints one JSON line: tokens/s (best of --repeat) and row 0's first ids.
Runs under Debian's /usr/bin/python3 (torch 1.13, numpy); transformers is not needed.
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np
import torch


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, t in tensors:
        a = t.detach().contiguous().numpy().astype("<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        b, e = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data, dtype="<f4", count=(e - b) // 4, offset=8 + n + b).copy()
                                     ).view(info["shape"])
    return out


def weight_shapes(c):
    D, I, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    q, kv = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    w = [("model.embed_tokens.weight", (V, D))]
    for i in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % i
        w += [(p + "self_attn.q_proj.weight", (q, D)), (p + "self_attn.k_proj.weight", (kv, D)),
              (p + "self_attn.v_proj.weight", (kv, D)), (p + "self_attn.o_proj.weight", (D, q)),
              (p + "mlp.gate_proj.weight", (I, D)), (p + "mlp.up_proj.weight", (I, D)),
              (p + "mlp.down_proj.weight", (D, I)), (p + "input_layernorm.weight", (D,)),
              (p + "post_attention_layernorm.weight", (D,))]
    w += [("model.norm.weight", (D,)), ("lm_head.weight", (V, D))]
    return w


def make_model(args):
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": args.vocab,
         "hidden_size": args.hidden, "intermediate_size": args.intermediate, "num_hidden_layers": args.layers,
         "num_attention_heads": args.heads, "num_key_value_heads": args.kv_heads,
         "head_dim": args.hidden // args.heads, "hidden_act": "silu", "max_position_embeddings": 2048,
         "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None, "tie_word_embeddings": False,
         "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    g = torch.Generator().manual_seed(args.seed)
    tensors = []
    for name, shape in weight_shapes(c):
        if name.endswith("norm.weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            t = 0.02 * torch.randn(shape, generator=g)
        tensors.append((name, t))
    os.makedirs(args.dir, exist_ok=True)
    write_safetensors(os.path.join(args.dir, "model.safetensors"), tensors)
    with open(os.path.join(args.dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)


class Llama:
    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            self.c = json.load(f)
        self.w = read_safetensors(os.path.join(folder, "model.safetensors"))
        d = self.c["head_dim"]
        self.inv_freq = 1.0 / (self.c["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))

    def rms(self, x, w):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.c["rms_norm_eps"])
        return w * xf.to(x.dtype)

    def forward(self, x, mask, positions, cache):
        c, w = self.c, self.w
        B, L, _ = x.shape
        H, KV, d = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        past = cache[0][0].shape[2] if cache[0] is not None else 0
        S = past + L
        slots_q = torch.arange(past, S).view(L, 1)
        visible = (torch.arange(S).view(1, S) <= slots_q).view(1, 1, L, S) & (mask != 0).view(B, 1, 1, S)
        add = torch.zeros(B, 1, L, S, dtype=x.dtype).masked_fill(~visible, torch.finfo(x.dtype).min)
        freqs = positions.float().unsqueeze(-1) * self.inv_freq.view(1, 1, -1)
        emb = torch.cat((freqs, freqs), -1)
        cos, sin = emb.cos().to(x.dtype).unsqueeze(1), emb.sin().to(x.dtype).unsqueeze(1)

        def rot(t):
            h = t.shape[-1] // 2
            return torch.cat((-t[..., h:], t[..., :h]), -1)

        for i in range(c["num_hidden_layers"]):
            p = "model.layers.%d." % i
            h = self.rms(x, w[p + "input_layernorm.weight"])
            q = torch.nn.functional.linear(h, w[p + "self_attn.q_proj.weight"]).view(B, L, H, d).transpose(1, 2)
            k = torch.nn.functional.linear(h, w[p + "self_attn.k_proj.weight"]).view(B, L, KV, d).transpose(1, 2)
            v = torch.nn.functional.linear(h, w[p + "self_attn.v_proj.weight"]).view(B, L, KV, d).transpose(1, 2)
            q = q * cos + rot(q) * sin
            k = k * cos + rot(k) * sin
            if cache[i] is not None:
                k = torch.cat((cache[i][0], k), 2)
                v = torch.cat((cache[i][1], v), 2)
            cache[i] = (k, v)
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
            s = torch.matmul(q, k.transpose(2, 3)) * d ** -0.5 + add
            a = torch.softmax(s, -1, dtype=torch.float32).to(q.dtype)
            o = torch.matmul(a, v).transpose(1, 2).reshape(B, L, H * d)
            x = x + torch.nn.functional.linear(o, w[p + "self_attn.o_proj.weight"])
            h = self.rms(x, w[p + "post_attention_layernorm.weight"])
            m = torch.nn.functional.silu(torch.nn.functional.linear(h, w[p + "mlp.gate_proj.weight"])) * \
                torch.nn.functional.linear(h, w[p + "mlp.up_proj.weight"])
            x = x + torch.nn.functional.linear(m, w[p + "mlp.down_proj.weight"])
        x = self.rms(x[:, -1:], w["model.norm.weight"])
        return torch.nn.functional.linear(x, w["lm_head.weight"]).float()[:, 0]

    def greedy(self, ids, mask, new):
        cache = [None] * self.c["num_hidden_layers"]
        emb = self.w["model.embed_tokens.weight"]
        positions = mask.cumsum(-1) - 1
        positions.masked_fill_(mask == 0, 1)
        logits = self.forward(emb[ids], mask, positions, cache)
        out = []
        for t in range(new):
            nxt = logits.argmax(-1)
            out.append(nxt)
            if t + 1 == new:
                break
            mask = torch.cat((mask, torch.ones(mask.shape[0], 1, dtype=mask.dtype)), 1)
            pos = (mask.sum(1, keepdim=True) - 1)
            logits = self.forward(emb[nxt].unsqueeze(1), mask, pos, cache)
        return torch.stack(out, 1)


def prompt_batch(batch, length, vocab):
    # Row r: `length - 2r` tokens, left-padded with id 0 (as LLaVA's batched inference pads).
    ids = torch.zeros(batch, length, dtype=torch.int64)
    mask = torch.zeros(batch, length, dtype=torch.int64)
    for r in range(batch):
        n = max(1, length - 2 * r)
        for i in range(n):
            ids[r, length - n + i] = (r * 131 + i * 17 + 3) % vocab
        mask[r, length - n:] = 1
    return ids, mask


def run(args):
    torch.set_num_threads(args.threads)
    m = Llama(args.dir)
    ids, mask = prompt_batch(args.batch, args.prompt, m.c["vocab_size"])
    best = None
    with torch.no_grad():
        m.greedy(ids, mask, 4)  # warm-up
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = m.greedy(ids, mask, args.new)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
    print(json.dumps({"tokens_per_s": args.batch * args.new / best, "seconds": best,
                      "row0": out[0, :16].tolist(), "threads": torch.get_num_threads()}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make-model")
    mk.add_argument("dir")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--layers", type=int, default=8)
    mk.add_argument("--hidden", type=int, default=512)
    mk.add_argument("--heads", type=int, default=8)
    mk.add_argument("--kv-heads", type=int, default=4)
    mk.add_argument("--intermediate", type=int, default=1376)
    mk.add_argument("--vocab", type=int, default=32000)
    rn = sub.add_parser("run")
    rn.add_argument("dir")
    rn.add_argument("--batch", type=int, default=4)
    rn.add_argument("--prompt", type=int, default=32)
    rn.add_argument("--new", type=int, default=128)
    rn.add_argument("--threads", type=int, default=2)
    rn.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    make_model(args) if args.cmd == "make-model" else run(args)


if __name__ == "__main__":
    sys.exit(main())
