#!/usr/bin/env python3
"""Independent PyTorch reference for cx's self-supervised objectives (tests/unit/train_ssl_test.cpp).

Written from the definitions of DINOv2's DINOLoss, iBOTPatchLoss, KoLeoLoss, Sinkhorn-Knopp
normalisation, DINOHead and block masking (Oquab et al. 2023; Zhou et al. 2022, iBOT; Bao et al. 2022,
BEiT; Sablayrolles et al. 2019, KoLeo), and of how DINOv2's training step combines them: the teacher's
two global crops swapped before the head, softmax centering applied lazily (an update recorded at
step i is folded into the center at step i+1), local crops against both global crops, DINOv2's
loss-term counts. Losses are computed in float64 from the test's float32 inputs.

The block-masking generator is re-implemented here with a Python port of cx's counter-based random
generator (cx/random: SplitMix64 of counters, Lemire's bounded integers, 53-bit uniforms,
Fisher-Yates from the end), so that the C++ masks can be compared exactly.

usage: ssl_reference.py IN.safetensors OUT.safetensors   (exit 77 when torch is missing)
"""
import json
import math
import struct
import sys

try:
    import torch
except ImportError:
    sys.exit(77)

torch.set_grad_enabled(False)

# ---------------------------------------------------------------- safetensors (a minimal reader/writer)
_DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "U8": torch.uint8, "I32": torch.int32}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        t = torch.frombuffer(bytearray(body[lo:hi]), dtype=dtype) if hi > lo else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def write_safetensors(path, tensors):
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        raw = t.numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


# ---------------------------------------------------------------- objectives, from their definitions
def cross_entropy_rows(teacher_probs, student_logits, student_temp):
    """-sum_k p_k log softmax(s / tau)_k for each row."""
    log_q = torch.log_softmax(student_logits / student_temp, dim=-1)
    return -(teacher_probs * log_q).sum(-1)


def centered_softmax(logits, center, temp):
    return torch.softmax((logits - center) / temp, dim=-1)


def sinkhorn_knopp(logits, temp, n_samples, iterations=3):
    """Doubly-normalised assignment: prototypes (rows of Q) get equal mass 1/K, samples (columns) 1/B;
    returned per sample (columns scaled back to sum 1), transposed to [samples, prototypes]."""
    Q = torch.exp(logits / temp).T
    K = Q.shape[0]
    Q = Q / Q.sum()
    for _ in range(iterations):
        Q = Q / Q.sum(dim=1, keepdim=True) / K
        Q = Q / Q.sum(dim=0, keepdim=True) / n_samples
    return (Q * n_samples).T


def dino_step_losses(student_global, student_local, teacher_probs_swapped, n_local):
    """DINOv2's CLS terms for 2 global crops: student crop i vs teacher crop 1-i (the teacher's rows
    arrive swapped), every local crop vs both teacher crops, divided by the number of terms."""
    B = student_global.shape[0] // 2
    terms = 2 + max(2 * n_local, 1)
    # the two global pairs, each a mean over B rows, summed
    g = sum(
        cross_entropy_rows(teacher_probs_swapped[c * B : (c + 1) * B], student_global[c * B : (c + 1) * B], 0.1).mean()
        for c in range(2)
    )
    loc = torch.zeros((), dtype=torch.float64)
    for i in range(n_local):
        s = student_local[i * B : (i + 1) * B]
        for c in range(2):
            loc = loc + cross_entropy_rows(teacher_probs_swapped[c * B : (c + 1) * B], s, 0.1).mean()
    return g / terms, loc / terms


def swap(two_crops):
    B = two_crops.shape[0] // 2
    return torch.cat([two_crops[B:], two_crops[:B]])


def run_dino(inp, out):
    sg = inp["dino.student_global"].double()
    sl = inp["dino.student_local"].double()
    t1 = inp["dino.teacher1"].double()
    t2 = inp["dino.teacher2"].double()
    n_local = int(inp["dino.n_local"][0])
    momentum = 0.9
    for tag, temp in (("t04", 0.04), ("t07", 0.07)):
        # softmax centering over two steps; the teacher's logits are swapped before the head, as
        # DINOv2 does (so the probabilities come out swapped; un-swapped for comparison)
        center = torch.zeros(1, t1.shape[1], dtype=torch.float64)
        pending = None
        for step, t in ((1, t1), (2, t2)):
            if pending is not None:  # the lazy update of the previous step
                center = center * momentum + pending * (1 - momentum)
            ts = swap(t)
            probs_swapped = centered_softmax(ts, center, temp)
            pending = ts.sum(0, keepdim=True) / ts.shape[0]
            g, loc = dino_step_losses(sg, sl, probs_swapped, n_local)
            out[f"dino.{tag}.center.step{step}.probs"] = swap(probs_swapped)
            out[f"dino.{tag}.center.step{step}.global"] = g.reshape(1)
            out[f"dino.{tag}.center.step{step}.local"] = loc.reshape(1)
            out[f"dino.{tag}.center.step{step}.center_used"] = center
        out[f"dino.{tag}.center.final"] = center * momentum + pending * (1 - momentum)
        # Sinkhorn-Knopp, 3 iterations, over the whole batch
        probs_swapped = sinkhorn_knopp(swap(t1), temp, t1.shape[0])
        g, loc = dino_step_losses(sg, sl, probs_swapped, n_local)
        out[f"dino.{tag}.sk.probs"] = swap(probs_swapped)
        out[f"dino.{tag}.sk.global"] = g.reshape(1)
        out[f"dino.{tag}.sk.local"] = loc.reshape(1)


def run_ibot(inp, out):
    masks = inp["ibot.masks"].bool()
    B, N = masks.shape
    s = inp["ibot.student"].double()
    t1 = inp["ibot.teacher1"].double()
    t2 = inp["ibot.teacher2"].double()
    K = s.shape[1]
    flat = masks.flatten()
    out["ibot.indices_ref"] = torch.arange(B * N)[flat]
    counts = masks.sum(1)
    out["ibot.weights_ref"] = torch.cat([torch.full((int(c),), 1.0 / max(int(c), 1)) for c in counts]).float()
    image_of_row = torch.arange(B).repeat_interleave(N)[flat]

    def patch_loss(probs):
        # per image: the mean over its masked tokens; then the mean over all B images (unmasked
        # images count in B and contribute 0)
        ce = cross_entropy_rows(probs, s, 0.1)
        total = torch.zeros((), dtype=torch.float64)
        for b in range(B):
            rows = ce[image_of_row == b]
            if rows.numel():
                total = total + rows.mean()
        return total / B

    momentum = 0.9
    for tag, temp in (("t04", 0.04), ("t07", 0.07)):
        center = torch.zeros(1, K, dtype=torch.float64)
        pending = None
        for step, t in ((1, t1), (2, t2)):
            if pending is not None:
                center = center * momentum + pending * (1 - momentum)
            probs = centered_softmax(t, center, temp)
            pending = t.mean(0, keepdim=True)
            out[f"ibot.{tag}.center.step{step}.probs"] = probs
            out[f"ibot.{tag}.center.step{step}.loss"] = patch_loss(probs).reshape(1)
        out[f"ibot.{tag}.center.final"] = center * momentum + pending * (1 - momentum)
        probs = sinkhorn_knopp(t1, temp, t1.shape[0])
        out[f"ibot.{tag}.sk.probs"] = probs
        out[f"ibot.{tag}.sk.loss"] = patch_loss(probs).reshape(1)


def run_koleo(inp, out):
    x = inp["koleo.x"].double().requires_grad_(True)
    eps = 1e-8
    with torch.enable_grad():
        z = x / x.norm(dim=1, keepdim=True).clamp(min=eps)
        with torch.no_grad():
            sim = z @ z.T
            sim.fill_diagonal_(-math.inf)  # a row is never its own neighbour
            nn = sim.argmax(1)
        # torch's pairwise distance: ||a - b + eps||_2
        d = (z - z[nn] + eps).norm(dim=1)
        loss = -torch.log(d + eps).mean()
        loss.backward()
    out["koleo.loss"] = loss.detach().reshape(1)
    out["koleo.grad"] = x.grad
    out["koleo.nn"] = nn


def run_heads(inp, out):
    prefixes = sorted({k.split(".")[0] for k in inp if k.startswith("head")})
    for p in prefixes:
        tag = p + ".param."
        params = {k[len(tag) :]: v.double().requires_grad_(True) for k, v in inp.items() if k.startswith(tag)}
        x = inp[p + ".x"].double()
        r = inp[p + ".r"].double()
        if "mlp.weight" in params:
            layers = [(params["mlp.weight"], params["mlp.bias"])]
        else:
            idx = sorted({int(k.split(".")[1]) for k in params if k.startswith("mlp.")})
            layers = [(params[f"mlp.{i}.weight"], params[f"mlp.{i}.bias"]) for i in idx]
        with torch.enable_grad():
            h = x
            for i, (W, b) in enumerate(layers):
                h = h @ W.T + b
                if i + 1 < len(layers):
                    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))  # exact GELU
            h = h / h.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            g, v = params["last_layer.weight_g"], params["last_layer.weight_v"]
            W = g * v / v.norm(dim=1, keepdim=True)
            y = h @ W.T
            (y * r).sum().backward()
        out[p + ".out"] = y.detach()
        for name, t in params.items():
            out[p + ".grad." + name] = t.grad


# ---------------------------------------------------------------- cx's counter-based generator, ported
M64 = (1 << 64) - 1


def _mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _step(x):
    return _mix64((x + 0x9E3779B97F4A7C15) & M64)


class CounterRng:
    def __init__(self, seed, purpose, a, b):
        self.state = _step(_step(_step(_step(seed ^ 0x6378636C61737366) ^ purpose) ^ a) ^ b)

    def next(self):
        v = _step(self.state)
        self.state = (self.state + 1) & M64
        return v

    def uniform(self, lo=0.0, hi=1.0):
        return lo + (hi - lo) * ((self.next() >> 11) * 2.0**-53)

    def below(self, n):
        m = self.next() * n
        if (m & M64) < n:
            threshold = ((1 << 64) - n) % n
            while (m & M64) < threshold:
                m = self.next() * n
        return m >> 64

    def permutation(self, n):
        p = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.below(i + 1)
            p[i], p[j] = p[j], p[i]
        return p


def block_mask(h, w, n, rng, max_patches=None, min_patches=4, min_aspect=0.3):
    """BEiT's block masking: rectangles of random area and log-uniform aspect are added until n patches
    are covered; a rectangle counts only if it adds new patches without exceeding the remainder, and
    10 failed rectangles in a row end the mask."""
    if max_patches is None:
        max_patches = (h * w) // 2
    lo_a, hi_a = math.log(min_aspect), math.log(1 / min_aspect)
    mask = torch.zeros(h, w, dtype=torch.bool)
    covered = 0
    while covered < n:
        budget = min(n - covered, max_patches)
        added = 0
        for _ in range(10):
            area = rng.uniform(min_patches, budget)
            aspect = math.exp(rng.uniform(lo_a, hi_a))
            bh, bw = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if bw >= w or bh >= h:
                continue
            top, left = rng.below(h - bh + 1), rng.below(w - bw + 1)
            block = mask[top : top + bh, left : left + bw]
            new = bh * bw - int(block.sum())
            if 0 < new <= budget:
                block.fill_(True)
                added = new
                break
        if added == 0:
            break
        covered += added
    return mask


def run_masking(inp, out):
    cases = sorted({k.split(".")[1] for k in inp if k.startswith("mask.")})
    for c in cases:
        seed, purpose, a, b = (int(v) for v in inp[f"mask.{c}.rng"])
        rng = CounterRng(seed, purpose, a, b)
        kind, h, w = (int(v) for v in inp[f"mask.{c}.grid"])
        if kind == 0:  # the generator alone, one call per requested count, from one stream
            masks = [block_mask(h, w, int(n), rng) for n in inp[f"mask.{c}.requests"]]
            out[f"mask.{c}.masks"] = torch.stack(masks).flatten(1)
        else:  # collate: B images, probability, ratio range
            B, prob, rmin, rmax = inp[f"mask.{c}.collate"].tolist()
            B = int(B)
            N = h * w
            k = int(B * prob)
            # k equal bins from rmin to rmax (linspace with k + 1 edges, the last one exactly rmax)
            ratios = [rmin + (rmax - rmin) * i / k for i in range(k)] + [rmax]
            masks, upper = [], 0
            for i in range(k):
                target = int(N * rng.uniform(ratios[i], ratios[i + 1]))
                masks.append(block_mask(h, w, target, rng).flatten())
                upper += int(N * ratios[i + 1])
            masks += [torch.zeros(N, dtype=torch.bool) for _ in range(k, B)]
            order = rng.permutation(B)
            out[f"mask.{c}.masks"] = torch.stack([masks[j] for j in order])
            out[f"mask.{c}.upperbound"] = torch.tensor([upper], dtype=torch.int64)


def main():
    inp = read_safetensors(sys.argv[1])
    out = {}
    run_dino(inp, out)
    run_ibot(inp, out)
    run_koleo(inp, out)
    run_heads(inp, out)
    run_masking(inp, out)
    write_safetensors(sys.argv[2], out)


if __name__ == "__main__":
    main()
