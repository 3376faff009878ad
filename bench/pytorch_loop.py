#!/usr/bin/env python3
"""PyTorch comparison loop for spush-train's training throughput (images/s, CPU).

Trains the models of spush-train (nets/src/model_zoo.cpp) on Fashion-MNIST as a plain PyTorch
loop over R replicas (default 4, the nodes of configs/main.json) in one process: every replica
has its own model and SGD optimizer (momentum 0.9, weight decay 1e-4, lr 0.05, batch 32 per
replica: spush-train's defaults and configs/main.json), takes one step on its own minibatch, and
then the replicas are mixed over a directed ring, either Sparse-Push style (default: per
parameter tensor top-1% of x + e by magnitude with error feedback, eta 0.005 as spush's default
for density 0.01; push-sum weights stay 1 on the ring) or densely (x_i <- (x_i + x_{i-1}) / 2).
It reports images/s summed over the replicas (R * batch * steps / seconds) over a fixed number
of steps after warm-up, prints a table and writes JSON (--json FILE).

Models, as spush defines them (1x28x28 input, 10 classes):
  lenet5    conv5x5(1->6, pad 2, bias)-norm-relu-maxpool2-conv5x5(6->16, bias)-norm-relu-
            maxpool2-fc400x120-relu-fc120x84-relu-fc84x10; GroupNorm with 2 groups.
  resnet20  conv3x3(1->16, no bias)-norm-relu, 3 stages x 3 BasicBlocks (16, 32, 64 channels,
            stride 2 at the start of stages 2 and 3), option-A shortcuts (x[:, :, ::2, ::2],
            channels zero-padded evenly before/after), global average pool, fc64x10; GroupNorm
            with group size 2 (channels/2 groups); EvoNorm-S0 and the range norms with 8 groups
            and no ReLU after them (nor after the residual sum).
Norms: batch, group, evonorm, rangebn, rangeevo, none (--norm; the range norms follow
docs/ALGORITHMS.md section 8 and are written with plain autograd ops, so they are slow here).

Install (PyTorch is not a dependency of spush, and CI never runs this script); outside the
repository, e.g.
    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch numpy --index-url https://download.pytorch.org/whl/cpu
    (or, where only PyPI is reachable: /tmp/torchvenv/bin/pip install torch numpy)
Run (2 threads, as the spush-train comparison):
    OMP_NUM_THREADS=2 /tmp/torchvenv/bin/python bench/pytorch_loop.py --model lenet5 \\
        --steps 300 --warmup 20 --json runs/pytorch-lenet5.json
    OMP_NUM_THREADS=2 /tmp/torchvenv/bin/python bench/pytorch_loop.py --model resnet20 \\
        --steps 40 --warmup 5 --runs 3
"""
import argparse
import gzip
import json
import math
import os
import platform
import statistics
import struct
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # the one clear message when PyTorch is not installed
    sys.stderr.write(
        f"pytorch_loop.py: {e}. This benchmark needs PyTorch and NumPy, which spush does not "
        "install. Install them outside the repository, e.g.\n"
        "  python3 -m venv /tmp/torchvenv\n"
        "  /tmp/torchvenv/bin/pip install torch numpy "
        "--index-url https://download.pytorch.org/whl/cpu\n"
        "and run this script with /tmp/torchvenv/bin/python.\n")
    sys.exit(2)


# ---- data ----------------------------------------------------------------------------------


def read_idx(path):
    """An IDX file (optionally .gz) as a numpy array."""
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            opener = gzip.open if p.endswith(".gz") else open
            with opener(p, "rb") as f:
                data = f.read()
            break
    else:
        raise FileNotFoundError(f"{path}[.gz] not found (apt-get install dataset-fashion-mnist, "
                                "or pass --data-dir)")
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion(data_dir):
    x = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte")).astype(np.float32) / 255.0
    y = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte")).astype(np.int64)
    x = (x - x.mean()) / x.std()  # one global normalization (what it is does not change speed)
    return torch.from_numpy(x).unsqueeze(1).contiguous(), torch.from_numpy(y)


# ---- normalization layers ------------------------------------------------------------------

RANGE_SCALE = 0.175 * (1.0 + math.sqrt(math.pi * math.log(4.0)))  # 0.540208


def range_scale(v):
    """The chunked range scale of each row of v [rows, n] (docs/ALGORITHMS.md section 8)."""
    n = v.shape[1]
    if n < 2:
        return torch.zeros(v.shape[0], dtype=v.dtype)
    k = min(16, max(1, n // 2))
    if n % k == 0:
        c = v.reshape(v.shape[0], k, n // k)
        r = (c.amax(dim=2) - c.amin(dim=2)).mean(dim=1)
    else:
        r = torch.stack([v[:, j * n // k:(j + 1) * n // k].amax(dim=1) -
                         v[:, j * n // k:(j + 1) * n // k].amin(dim=1) for j in range(k)],
                        dim=1).mean(dim=1)
    return RANGE_SCALE / math.sqrt(2.0 * math.log(n / k)) * r


class EvoNormS0(nn.Module):
    def __init__(self, groups, channels, use_range=False, eps=1e-5):
        super().__init__()
        self.g, self.use_range, self.eps = groups, use_range, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.v = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        b, c, h, w = x.shape
        xg = x.reshape(b * self.g, -1)
        if self.use_range:  # Range EvoNorm: hard sigmoid, range scale
            s = range_scale(xg) + self.eps
            act = F.hardsigmoid(x * self.v.view(1, c, 1, 1))
        else:
            s = torch.sqrt(xg.var(dim=1, unbiased=False) + self.eps)
            act = torch.sigmoid(x * self.v.view(1, c, 1, 1))
        num = (x * act).reshape(b * self.g, -1) / s.unsqueeze(1)
        return num.reshape(b, c, h, w) * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)


class RangeBatchNorm2d(nn.Module):
    def __init__(self, channels, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_scale", torch.ones(channels))

    def forward(self, x):
        c = x.shape[1]
        if self.training:
            xc = x.transpose(0, 1).reshape(c, -1)  # (batch, h, w) order per channel
            mean, scale = xc.mean(dim=1), range_scale(xc)
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_scale.mul_(1 - self.momentum).add_(self.momentum * scale)
        else:
            mean, scale = self.running_mean, self.running_scale
        y = (x - mean.view(1, c, 1, 1)) / (scale.view(1, c, 1, 1) + self.eps)
        return y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)


SELF_ACTIVATING = ("evonorm", "rangeevo")


def make_norm(norm, channels, lenet):
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(2 if lenet else channels // 2, channels)
    if norm in SELF_ACTIVATING:
        return EvoNormS0(2 if lenet else 8, channels, use_range=norm == "rangeevo")
    if norm == "rangebn":
        return RangeBatchNorm2d(channels)
    return nn.Identity()


def norm_act(norm, channels, lenet, relu=True):
    layers = [make_norm(norm, channels, lenet)]
    if relu and norm not in SELF_ACTIVATING:
        layers.append(nn.ReLU())
    return layers


# ---- models --------------------------------------------------------------------------------


def lenet5(norm):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), *norm_act(norm, 6, True), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), *norm_act(norm, 16, True), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


class ZeroPadShortcut(nn.Module):
    """Option A: x[:, :, ::s, ::s] with channels zero-padded, (out - in) / 2 before."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.before, self.after, self.stride = (cout - cin) // 2, cout - cin - (cout - cin) // 2, stride

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.before, self.after))


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride, norm):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(cin, planes, 3, stride, 1, bias=False), *norm_act(norm, planes, False),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False), *norm_act(norm, planes, False, False))
        self.shortcut = (ZeroPadShortcut(cin, planes, stride) if stride != 1 or cin != planes
                         else nn.Identity())
        self.relu = norm not in SELF_ACTIVATING

    def forward(self, x):
        y = self.main(x) + self.shortcut(x)
        return F.relu(y) if self.relu else y


def resnet(norm, depth=20):
    n = (depth - 2) // 6
    layers = [nn.Conv2d(1, 16, 3, 1, 1, bias=False), *norm_act(norm, 16, False)]
    cin = 16
    for stage, planes in enumerate((16, 32, 64)):
        for i in range(n):
            layers.append(BasicBlock(cin, planes, 2 if stage > 0 and i == 0 else 1, norm))
            cin = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def make_model(name, norm):
    net = lenet5(norm) if name == "lenet5" else resnet(norm, int(name[len("resnet"):]))
    for m in net.modules():  # spush's init: He-normal (fan_out) convolutions, zero conv bias
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


# ---- mixing --------------------------------------------------------------------------------


class Mixer:
    """Mixing of the replicas' parameters over the directed ring i -> i + 1 (keep 1/2, send 1/2)."""

    def __init__(self, models, kind, density, eta):
        self.kind, self.density, self.eta = kind, density, eta
        self.params = [[p for p in m.parameters()] for m in models]
        self.errors = [[torch.zeros_like(p) for p in ps] for ps in self.params]

    @torch.no_grad()
    def step(self):
        r = len(self.params)
        if self.kind == "dense":  # x_i <- (x_i + x_{i-1}) / 2
            new = [[(self.params[i][j] + self.params[i - 1][j]) * 0.5
                    for j in range(len(self.params[i]))] for i in range(r)]
            for i in range(r):
                for p, v in zip(self.params[i], new[i]):
                    p.copy_(v)
            return
        # Sparse-Push: c_i = topk(x_i + e_i) per tensor, e_i = v - c_i; x_i += eta/2 (c_{i-1} - c_i)
        msgs = []
        for i in range(r):
            out = []
            for p, e in zip(self.params[i], self.errors[i]):
                v = (p + e).reshape(-1)
                k = min(v.numel(), max(1, math.ceil(self.density * v.numel())))
                idx = torch.topk(v.abs(), k, sorted=False).indices
                vals = v[idx]
                e.copy_(v.reshape(e.shape))
                e.view(-1)[idx] = 0.0
                out.append((idx, vals))
            msgs.append(out)
        w = 0.5 * self.eta
        for i in range(r):
            for j, p in enumerate(self.params[i]):
                flat = p.view(-1)
                own_idx, own_vals = msgs[i][j]
                in_idx, in_vals = msgs[i - 1][j]
                flat.index_add_(0, own_idx, own_vals, alpha=-w)
                flat.index_add_(0, in_idx, in_vals, alpha=w)


# ---- benchmark -----------------------------------------------------------------------------


def run_once(args, x_all, y_all, seed):
    torch.manual_seed(seed)
    r = args.replicas
    models = [make_model(args.model, args.norm) for _ in range(r)]
    for m in models[1:]:  # identical start, as spush-train
        m.load_state_dict(models[0].state_dict())
    opts = [torch.optim.SGD(m.parameters(), lr=args.lr, momentum=args.momentum,
                            weight_decay=args.weight_decay) for m in models]
    mixer = Mixer(models, args.mixing, args.density, args.eta)
    loss_fn = nn.CrossEntropyLoss()
    n = x_all.shape[0] // r  # each replica its own contiguous slice (IID order shuffled once)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x_all.shape[0], generator=gen)
    x_all, y_all = x_all[perm], y_all[perm]
    per_epoch = n // args.batch
    losses = []
    t0 = None
    mix_seconds = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            t0 = time.perf_counter()
            mix_seconds = 0.0
        it = step % per_epoch
        for i, (m, opt) in enumerate(zip(models, opts)):
            lo = i * n + it * args.batch
            xb, yb = x_all[lo:lo + args.batch], y_all[lo:lo + args.batch]
            m.train()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(m(xb), yb)
            loss.backward()
            opt.step()
            if step == args.warmup + args.steps - 1:
                losses.append(loss.item())
        tm = time.perf_counter()
        mixer.step()
        mix_seconds += time.perf_counter() - tm
    seconds = time.perf_counter() - t0
    return {"images_per_sec": r * args.batch * args.steps / seconds, "seconds": seconds,
            "mixing_seconds": mix_seconds, "last_loss_mean": sum(losses) / len(losses)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="lenet5",
                    help="lenet5 | resnet20 | resnet<6n+2> (default lenet5)")
    ap.add_argument("--norm", default="group",
                    choices=["batch", "group", "evonorm", "rangebn", "rangeevo", "none"])
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32, help="per replica")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps (default 300 for lenet5, 40 for ResNets)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10%%)")
    ap.add_argument("--runs", type=int, default=1, help="repetitions; the median is reported")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--mixing", default="sparsepush", choices=["sparsepush", "dense"])
    ap.add_argument("--density", type=float, default=0.01)
    ap.add_argument("--eta", type=float, default=0.005)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--data-dir", default=os.environ.get("SPUSH_DATA",
                                                         "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    if args.model != "lenet5":
        depth = args.model[len("resnet"):] if args.model.startswith("resnet") else ""
        if not depth.isdigit() or int(depth) < 8 or (int(depth) - 2) % 6:
            ap.error(f"unknown model {args.model!r} (accepted: lenet5, resnet<6n+2>)")
    if args.steps is None:
        args.steps = 300 if args.model == "lenet5" else 40
    if args.warmup is None:
        args.warmup = max(2, args.steps // 10)
    torch.set_num_threads(args.threads)
    x_all, y_all = load_fashion(args.data_dir)
    params = sum(p.numel() for p in make_model(args.model, args.norm).parameters())

    runs = []
    for k in range(args.runs):
        res = run_once(args, x_all, y_all, args.seed + k)
        runs.append(res)
        print(f"  run {k + 1}/{args.runs}: {res['images_per_sec']:.0f} img/s "
              f"({args.steps} steps in {res['seconds']:.1f} s, of which mixing "
              f"{res['mixing_seconds']:.1f} s; loss {res['last_loss_mean']:.3f})",
              flush=True)
    rates = [r["images_per_sec"] for r in runs]
    out = {
        "model": args.model, "norm": args.norm, "parameters": params,
        "replicas": args.replicas, "batch_per_replica": args.batch, "threads": args.threads,
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"), "mixing": args.mixing,
        "density": args.density, "eta": args.eta, "lr": args.lr, "momentum": args.momentum,
        "weight_decay": args.weight_decay, "warmup_steps": args.warmup, "steps": args.steps,
        "runs": runs, "median_images_per_sec": statistics.median(rates),
        "torch_version": torch.__version__, "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
    }
    print(f"{'model':<10} {'norm':<9} {'params':>8} {'replicas x batch':>17} {'threads':>7} "
          f"{'mixing':<11} {'img/s (median)':>15}  runs")
    print(f"{args.model:<10} {args.norm:<9} {params:>8} {f'{args.replicas} x {args.batch}':>17} "
          f"{args.threads:>7} {args.mixing:<11} {out['median_images_per_sec']:>15.0f}  "
          + ", ".join(f"{r:.0f}" for r in rates))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
