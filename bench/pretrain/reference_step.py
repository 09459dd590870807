#!/usr/bin/python3
"""One DINOv2/iBOT training step in plain PyTorch, for the cx-pretrain benchmark: our own code, written
from the definitions of DINOv2's SSLMetaArch (student + EMA teacher, DINO CLS loss over 2 global and n
local crops with softmax centering, iBOT masked-patch loss on the global crops, KoLeo on the student's
CLS, DINO heads with a weight-normalised prototype layer, AdamW, per-module gradient clipping), on the
Hugging Face ViT of bench/embed/reference.py (eager attention) made trainable, with iBOT's mask token.

  reference_step.py --config CONFIG.json --batch 8 --global-size 224 --local-size 96 --local-crops 8
                    --prototypes 16384 --bottleneck 384 --hidden 2048 --steps 3 --threads 2 [--bf16]
prints one JSON line: seconds of each step, images/s after the first (warm-up) step, peak RSS in MiB.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "embed"))
import reference as R  # noqa: E402


class TrainableVit(R.Dinov2):
    """The reference encoder (bool_masked_pos included) with its weights as parameters."""

    def __init__(self, cfg, weights):
        super().__init__(cfg, weights)
        self.params = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(v.clone()) for k, v in weights.items()})
        self.w = {k: self.params[k.replace(".", "__")] for k in weights}


class Head(nn.Module):
    """3 Linear layers with GELU, L2-normalised bottleneck, weight-normalised prototypes without bias."""

    def __init__(self, dim, prototypes, hidden, bottleneck):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck, prototypes, bias=False))
        self.last_layer.weight_g.data.fill_(1)

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


def dino_ce(student, teacher_probs, temp=0.1):
    return -(teacher_probs * F.log_softmax(student.float() / temp, dim=-1)).sum(-1).mean()


def koleo(x, eps=1e-8):
    x = F.normalize(x.float(), dim=-1, p=2, eps=eps)
    dots = x @ x.t()
    dots.view(-1)[:: x.shape[0] + 1].fill_(-1)
    nn_idx = dots.argmax(dim=1)
    d = F.pairwise_distance(x, x[nn_idx], 2, eps)
    return -torch.log(d + eps).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--global-size", type=int, default=224)
    ap.add_argument("--local-size", type=int, default=96)
    ap.add_argument("--local-crops", type=int, default=8)
    ap.add_argument("--prototypes", type=int, default=16384)
    ap.add_argument("--bottleneck", type=int, default=384)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="CPU autocast to bfloat16 for the forward passes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = json.load(open(args.config))
    weights = {k: torch.from_numpy(v.astype("float32")) if not torch.is_tensor(v) else v
               for k, v in R.random_weights(cfg, 0).items()}
    student, teacher = TrainableVit(cfg, weights), TrainableVit(cfg, weights)
    D = cfg["hidden_size"]
    s_dino, s_ibot = Head(D, args.prototypes, args.hidden, args.bottleneck), Head(D, args.prototypes, args.hidden, args.bottleneck)
    t_dino, t_ibot = Head(D, args.prototypes, args.hidden, args.bottleneck), Head(D, args.prototypes, args.hidden, args.bottleneck)
    t_dino.load_state_dict(s_dino.state_dict())
    t_ibot.load_state_dict(s_ibot.state_dict())
    teachers = [teacher, t_dino, t_ibot]
    students = [student, s_dino, s_ibot]
    for m in teachers:
        for p in m.parameters():
            p.requires_grad_(False)
    opt = torch.optim.AdamW([p for m in students for p in m.parameters()], lr=1e-4, weight_decay=0.04)
    K = args.prototypes
    dino_center, ibot_center = torch.zeros(1, K), torch.zeros(1, K)
    B, n_local, p = args.batch, args.local_crops, cfg["patch_size"]
    grid = args.global_size // p
    prefix = 1 + (cfg.get("num_register_tokens", 0) if cfg.get("model_type") == "dinov2_with_registers" else 0)
    gen = torch.Generator().manual_seed(1)
    global_crops = torch.randn(2 * B, 3, args.global_size, args.global_size, generator=gen)
    local_crops = torch.randn(n_local * B, 3, args.local_size, args.local_size, generator=gen)
    # Half the global crops masked at ratios in [0.1, 0.5], as DINOv2's collate.
    masks = torch.zeros(2 * B, grid * grid, dtype=torch.bool)
    for i in range(B):
        n = int(grid * grid * (0.1 + 0.4 * i / max(1, B)))
        masks[i, torch.randperm(grid * grid, generator=gen)[:n]] = True
    idx = masks.flatten().nonzero().flatten()
    weights_m = (1 / masks.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(masks)[masks]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)
    times = []
    for step in range(args.steps):
        t0 = time.perf_counter()
        with torch.no_grad(), autocast:
            out = teacher(global_crops)
            cls = out[:, 0]
            cls = torch.cat(cls.chunk(2)[::-1])
            td = t_dino(cls).float()
            ti = t_ibot(out[:, prefix:].flatten(0, 1)[idx]).float()
            td_p = F.softmax((td - dino_center) / 0.07, dim=-1)
            ti_p = F.softmax((ti - ibot_center) / 0.07, dim=-1)
            dino_center = dino_center * 0.9 + td.mean(0, keepdim=True) * 0.1
            ibot_center = ibot_center * 0.9 + ti.mean(0, keepdim=True) * 0.1
        with autocast:
            g = student(global_crops, masks)
            l = student(local_crops)
            g_cls = g[:, 0]
            sd_g = s_dino(g_cls).float()
            sd_l = s_dino(l[:, 0]).float()
            si = s_ibot(g[:, prefix:].flatten(0, 1)[idx]).float()
            terms = 2 + 2 * n_local
            t_list = td_p.chunk(2)
            local_loss = sum(dino_ce(s, t) for s in sd_l.chunk(n_local) for t in t_list) / terms
            global_loss = dino_ce(sd_g, td_p) * 2 / terms
            kl = 0.1 * sum(koleo(c) for c in g_cls.chunk(2))
            ib = -((ti_p * F.log_softmax(si / 0.1, dim=-1)).sum(-1) * weights_m).sum() / masks.shape[0]
            loss = local_loss + global_loss + kl + ib
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for m in students:
            torch.nn.utils.clip_grad_norm_(m.parameters(), 3.0)
        opt.step()
        with torch.no_grad():
            for ms, mt in zip(students, teachers):
                for ps, pt in zip(ms.parameters(), mt.parameters()):
                    pt.mul_(0.999).add_(ps.detach(), alpha=0.001)
        times.append(time.perf_counter() - t0)
    timed = times[1:] or times
    print(json.dumps({"step_seconds": times, "images_per_s": B * len(timed) / sum(timed),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "threads": torch.get_num_threads(), "bf16": args.bf16, "loss": float(loss)}))


if __name__ == "__main__":
    main()
