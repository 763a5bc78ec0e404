"""Training M ensemble members of one shape: one by one versus as one stacked model, in one run.

  one-by-one  M separate ReLU MLPs, each with its own SGD optimizer, stepped in turn on the same batch
  stacked     the same M MLPs as one module: the first layer is one GEMM against the M weight matrices
              side by side (the input is shared), every later layer one torch.baddbmm over (M, ...)
              weights; the loss is the sum of the members' mean cross-entropies, one SGD optimizer
Both are plain PyTorch (SGD momentum 0.9, fp32 cross-entropy), under bf16 autocast and in fp32, in
interleaved rounds (best round counts). Reported: member-frames/s (M x frames per second), MFU against
the dense GEMM ceiling of the same dtype measured in the same run, and stacked / one-by-one.
Before timing, the stacked model is checked to compute the members' own losses and gradients.

  python bench/bench_stacked_members.py                    # 4 members, 3x512, 1040 inputs, 1500 outputs, batch 1024
  python bench/bench_stacked_members.py --members 10 --dtype bf16
"""

from __future__ import annotations

import argparse
import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr_kd.utils.device import autocast
from bench_train import DTYPES, add_timing_options, gemm_flops, timed_fps, timing_setup


def member_mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """One member: `layers` Linear+ReLU of width `hidden`, then a Linear to `out_dim` logits."""
    dims = [in_dim] + [hidden] * layers
    modules: list[nn.Module] = []
    for a, b in zip(dims, dims[1:]):
        modules += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*modules, nn.Linear(dims[-1], out_dim))


class StackedMLP(nn.Module):
    """M member MLPs of one shape in stacked weights: (B, in) -> logits (M, B, out)."""

    def __init__(self, members: int, in_dim: int, hidden: int, layers: int, out_dim: int):
        super().__init__()
        self.members, self.hidden = members, hidden
        # First layer: the M members' weight matrices side by side, one (B, in) x (in, M*hidden) GEMM.
        self.first = nn.Linear(in_dim, members * hidden)
        dims = [hidden] * layers + [out_dim]
        # Later layers: (M, in, out) weights and (M, 1, out) biases, one baddbmm each.
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(members, a, b) * math.sqrt(2.0 / a))
                                        for a, b in zip(dims, dims[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(members, 1, b)) for b in dims[1:])

    def forward(self, x: Tensor) -> Tensor:
        # One copy into (M, B, hidden) order: without it the backward's bmm copies a doubly strided view instead
        # (measured 15% slower in bf16 on the CPU).
        h = F.relu(self.first(x)).view(x.shape[0], self.members, self.hidden).transpose(0, 1).contiguous()
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = F.relu(h)
        return h

    @torch.no_grad()
    def load_members(self, members: list[nn.Sequential]) -> None:
        """Copy the weights of `members` (member_mlp's) into the stacked tensors."""
        linears = [[m for m in member if isinstance(m, nn.Linear)] for member in members]
        self.first.weight.copy_(torch.cat([ls[0].weight for ls in linears]))
        self.first.bias.copy_(torch.cat([ls[0].bias for ls in linears]))
        for i, (w, b) in enumerate(zip(self.weights, self.biases), start=1):
            w.copy_(torch.stack([ls[i].weight.t() for ls in linears]))
            b.copy_(torch.stack([ls[i].bias[None] for ls in linears]))


def stacked_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Sum over members of each member's mean cross-entropy (fp32), so each gets its own gradient."""
    m, b, c = logits.shape
    return F.cross_entropy(logits.float().reshape(m * b, c), labels.repeat(m), reduction="sum") / b


def check_same_math(members: list[nn.Sequential], stacked: StackedMLP, x: Tensor, y: Tensor) -> None:
    """The stacked model gives each member's fp32 loss and first-layer gradient (raises otherwise)."""
    stacked.load_members(members)
    losses = []
    for member in members:
        member.zero_grad()
        loss = F.cross_entropy(member(x), y)
        loss.backward()
        losses.append(loss.detach())
    stacked.zero_grad()
    total = stacked_loss(stacked(x), y)
    total.backward()
    grad = torch.cat([member[0].weight.grad for member in members])
    if not (torch.allclose(total, torch.stack(losses).sum(), rtol=1e-4)
            and torch.allclose(stacked.first.weight.grad, grad, rtol=1e-3, atol=1e-6)):
        raise AssertionError("stacked model disagrees with its members")


def one_by_one_fps(members: list[nn.Sequential], x: Tensor, y: Tensor, bf16: bool, lr: float,
                   steps: int, warmup: int) -> float:
    """Member-frames/s of M models and M optimizers stepped one after the other on the same batch."""
    optimizers = [torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9) for m in members]

    def step() -> None:
        for member, optimizer in zip(members, optimizers):
            with autocast(x.device, bf16):
                logits = member(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return len(members) * timed_fps(step, x.device, x.shape[0], steps, warmup)


def stacked_fps(stacked: StackedMLP, x: Tensor, y: Tensor, bf16: bool, lr: float, steps: int, warmup: int) -> float:
    """Member-frames/s of the stacked model with one optimizer."""
    optimizer = torch.optim.SGD(stacked.parameters(), lr=lr, momentum=0.9)

    def step() -> None:
        with autocast(x.device, bf16):
            logits = stacked(x)
        loss = stacked_loss(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return stacked.members * timed_fps(step, x.device, x.shape[0], steps, warmup)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--num-layers", type=int, default=3)
    p.add_argument("--hidden-dim", type=int, default=512)
    p.add_argument("--input-dim", type=int, default=1040, help="26 frames x 40 filterbanks")
    p.add_argument("--num-classes", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=["bf16", "fp32"])
    p.add_argument("--lr", type=float, default=0.08)
    add_timing_options(p, steps=10)  # a step: one update of every member
    args = p.parse_args()
    device, gemm = timing_setup(args)
    shape = (args.input_dim, args.hidden_dim, args.num_layers, args.num_classes)
    dims = [args.input_dim] + [args.hidden_dim] * args.num_layers + [args.num_classes]
    flops_per_frame = 6 * sum(a * b for a, b in zip(dims, dims[1:]))
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, args.input_dim, device=device)
    y = torch.randint(args.num_classes, (args.batch_size,), device=device)
    check_same_math([member_mlp(*shape).to(device) for _ in range(args.members)],
                    StackedMLP(args.members, *shape).to(device), x, y)

    load_before = os.getloadavg()
    ceiling = dict.fromkeys(args.dtype, 0.0)
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for dtype in args.dtype:
            bf16 = dtype == "bf16"
            ceiling[dtype] = max(ceiling[dtype], gemm_flops(device, gemm, DTYPES[dtype], seconds=0.5))
            measured = {
                "one-by-one": one_by_one_fps([member_mlp(*shape).to(device) for _ in range(args.members)], x, y,
                                             bf16, args.lr, args.steps, args.warmup),
                "stacked": stacked_fps(StackedMLP(args.members, *shape).to(device), x, y, bf16, args.lr,
                                       args.steps, args.warmup),
            }
            for kind, fps in measured.items():
                best[dtype, kind] = max(best.get((dtype, kind), 0.0), fps)
    load_after = os.getloadavg()

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads"
    print(f"device {name}, torch {torch.__version__}; load average {load_before[0]:.2f} at start, "
          f"{load_after[0]:.2f} at end")
    print(f"{args.members} members of {args.num_layers}x{args.hidden_dim}, {args.input_dim} inputs, "
          f"{args.num_classes} outputs, batch {args.batch_size}; GEMM {gemm}^3 "
          + ", ".join(f"{d} {ceiling[d] / 1e12:.3f} TFLOP/s" for d in args.dtype)
          + f"; {args.steps} timed steps, best of {args.rounds} interleaved rounds")
    print(f"{'dtype':5} {'one-by-one member-fr/s':>22} {'MFU':>6} {'stacked member-fr/s':>19} {'MFU':>6} "
          f"{'stacked/one-by-one':>18}")
    for dtype in args.dtype:
        loop, stacked = best[dtype, "one-by-one"], best[dtype, "stacked"]
        print(f"{dtype:5} {loop:>22,.0f} {loop * flops_per_frame / ceiling[dtype]:>6.1%} {stacked:>19,.0f} "
              f"{stacked * flops_per_frame / ceiling[dtype]:>6.1%} {stacked / loop:>18.3f}")


if __name__ == "__main__":
    main()
