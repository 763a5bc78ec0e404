"""An ensemble of frame classifiers used as one teacher: averaged posteriors at temperature T.

Members with identical architecture run together, their weights stacked once as (M, ...):
  * "mlp": FrameClassifiers that are a plain Linear/activation stack (no norm layers). The first
    layer sees the same input for every member, so it is one GEMM against the M weight matrices
    side by side; every later layer is one `baddbmm` (bias fused) over the M members.
  * "vmap": any other identical members, through `torch.func.functional_call` under `vmap`
    (each Linear becomes one batched matmul; norm layers and buffers work too).
  * "loop": members of different shapes, one after the other.
All paths give the same numbers (tests/test_ensemble.py).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from asr_kd.distill.losses import soft_kl_divergence
from asr_kd.models import FrameClassifier
from asr_kd.utils.device import autocast
from asr_kd.utils.errors import InputError

__all__ = ["MeanType", "average_posteriors", "normalise_weights", "EnsembleTeacher", "ensemble_frame_accuracy", "file_sha256",
           "load_member"]

log = logging.getLogger(__name__)

MeanType = Literal["arithmetic", "geometric"]


def average_posteriors(
    logits: Sequence[Tensor] | Tensor,
    temperature: float = 1.0,
    mean: MeanType = "arithmetic",
    *,
    weights: Sequence[float] | None = None,
    overwrite_input: bool = False,
) -> Tensor:
    """Ensemble distribution at `temperature` from members' logits of shape (frames, classes).

    `logits` is a sequence of M (B, C) tensors or one stacked (M, B, C) tensor. "arithmetic" is
    the mean of the members' softmaxes; "geometric" is the renormalised geometric mean, i.e.
    softmax of the mean of the members' log-softmaxes. Computed in float32; returns (B, C).
    `weights` (M non-negative numbers, normalised to sum 1) make both means weighted; None or
    equal weights give the plain mean. `overwrite_input=True` lets it divide fp32 logits by T
    in place (saves a pass over them).
    """
    members = list(logits.unbind(0)) if isinstance(logits, Tensor) else list(logits)
    if isinstance(logits, Tensor) and logits.dim() != 3:
        raise ValueError(f"expected (members, frames, classes) logits, got shape {tuple(logits.shape)}")
    if not members or any(z.dim() != 2 or z.shape != members[0].shape for z in members):
        raise ValueError(f"expected M >= 1 logits of one (frames, classes) shape, got {[tuple(z.shape) for z in members]}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if mean not in ("arithmetic", "geometric"):
        raise ValueError(f"mean must be 'arithmetic' or 'geometric', got {mean!r}")
    norm_weights = normalise_weights(weights, len(members))
    # Member by member: the (M, B, C) fp32 intermediates of a 10 x 16k x 14k batch would take
    # 9 GB each; this keeps two (B, C) buffers and makes the same number of passes over the data.
    total: Tensor | None = None
    with torch.autocast(members[0].device.type, enabled=False):
        for i, z in enumerate(members):
            if norm_weights is not None and norm_weights[i] == 0.0:
                continue  # 0 * log_softmax would be nan where a probability underflows to 0
            scaled = z.float()
            if temperature != 1.0:
                # In place only on the copy .float() made of bf16/fp16 logits, or when allowed.
                own = scaled is not z or overwrite_input
                scaled = scaled.div_(temperature) if own else scaled / temperature
            term = F.softmax(scaled, dim=-1) if mean == "arithmetic" else F.log_softmax(scaled, dim=-1)
            if norm_weights is not None:
                term = term.mul_(norm_weights[i])
            total = term if total is None else total.add_(term)
        assert total is not None
        if norm_weights is None:
            total.div_(len(members))
        return total if mean == "arithmetic" else F.softmax(total, dim=-1)


def normalise_weights(weights: Sequence[float] | Tensor | None, num_members: int) -> list[float] | None:
    """Member weights scaled to sum 1; None when absent or all equal (the plain mean, bit for bit)."""
    if weights is None:
        return None
    values = [float(w) for w in (weights.tolist() if isinstance(weights, Tensor) else weights)]
    if len(values) != num_members:
        raise InputError(f"{len(values)} ensemble weights given for {num_members} members")
    if not all(math.isfinite(w) and w >= 0 for w in values) or sum(values) <= 0:
        raise InputError(f"ensemble weights must be finite, >= 0 and not all 0, got {values}")
    if len(set(values)) == 1:
        return None
    total = sum(values)
    return [w / total for w in values]


def file_sha256(path: str | os.PathLike, block: int = 1 << 24) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


PathType = Literal["auto", "mlp", "vmap", "loop"]
_ELEMENTWISE = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU)


def load_member(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, str]]:
    """A teacher member saved by `FrameClassifier.save`, in eval mode, and its record (path, sha256)."""
    return FrameClassifier.load(path, map_location=device).eval(), {"path": str(path), "sha256": file_sha256(path)}


def _linear_stack(member: nn.Module) -> list[nn.Module] | None:
    """A FrameClassifier's layers in forward order when it is only Linear/activation layers."""
    if not isinstance(member, FrameClassifier) or member.config.input_norm != "none" or member.config.input_lifter:
        return None
    layers: list[nn.Module] = []
    for layer in [*member.hidden, member.output]:
        if isinstance(layer, (nn.Identity, nn.Dropout)):
            continue  # identities in eval mode, where a teacher always runs
        if not isinstance(layer, (nn.Linear, *_ELEMENTWISE)):
            return None
        layers.append(layer)
    return layers


def _signature(module: nn.Module) -> tuple[Any, ...]:
    """What must agree for members to be stacked: type and every tensor's name, shape, dtype."""
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    return (type(module), tuple((n, tuple(t.shape), t.dtype, t.device) for n, t in tensors))


class EnsembleTeacher(nn.Module):
    """M trained members whose averaged posteriors at temperature T are the soft targets."""

    def __init__(self, models: Sequence[nn.Module], mean: MeanType = "arithmetic", path: PathType = "auto",
                 weights: Sequence[float] | None = None):
        """`path="auto"` picks "mlp", else "vmap" for identical members, else "loop" (module doc).

        `weights`: one non-negative weight per member (normalised); None = equal weights.
        """
        super().__init__()
        if not models:
            raise InputError("an ensemble needs at least one member")
        if mean not in ("arithmetic", "geometric"):
            raise InputError(f"ensemble mean must be 'arithmetic' or 'geometric', got {mean!r}")
        self.members = nn.ModuleList(models)
        self.mean: MeanType = mean
        # None for equal weights, so an unweighted teacher behaves (and is recorded) as before.
        self.weights: list[float] | None = normalise_weights(weights, len(models))
        stackable = len({_signature(m) for m in self.members}) == 1
        mlp = stackable and _linear_stack(self.members[0]) is not None
        if path == "auto":
            path = "mlp" if mlp else "vmap" if stackable else "loop"
        elif path in ("mlp", "vmap") and not stackable:
            raise InputError(f"the {path!r} path needs members of identical architecture")
        elif path == "mlp" and not mlp:
            raise InputError("the 'mlp' path needs FrameClassifiers made of Linear/activation layers only")
        elif path not in ("mlp", "vmap", "loop"):
            raise InputError(f"path must be 'auto', 'mlp', 'vmap' or 'loop', got {path!r}")
        self.path: PathType = path
        self.checkpoints: list[dict[str, str]] = []  # filled by `load`: path + sha256 of each member
        self._stacked: tuple[nn.Module, dict[str, Tensor], dict[str, Tensor]] | None = None
        self._low_precision: dict[torch.dtype, dict[str, Tensor]] = {}
        self.eval()

    @classmethod
    def load(
        cls,
        checkpoint_paths: Sequence[str | os.PathLike],
        device: str | torch.device = "cpu",
        mean: MeanType = "arithmetic",
        weights: Sequence[float] | None = None,
    ) -> "EnsembleTeacher":
        """Load members saved by `FrameClassifier.save`, recording each checkpoint's sha256."""
        models, checkpoints = [], []
        for path in checkpoint_paths:
            if not Path(path).is_file():
                raise InputError(f"{path}: teacher checkpoint not found")
            model, record = load_member(path, device)
            models.append(model)
            checkpoints.append(record)
        teacher = cls(models, mean=mean, weights=weights)
        teacher.checkpoints = checkpoints
        log.info("ensemble teacher: %d members, %s mean%s, %s path, on %s", len(models), mean,
                 f" weighted {teacher.weights}" if teacher.weights else "", teacher.path, device)
        return teacher

    @property
    def num_members(self) -> int:
        """M, the number of members."""
        return len(self.members)

    @property
    def context(self) -> tuple[int, int]:
        """(left, right) context frames of the members, from their `config`."""
        contexts = set()
        for m in self.members:
            config = getattr(m, "config", None)
            if config is None:
                raise InputError(f"ensemble member {type(m).__name__} has no config giving its context")
            contexts.add((int(config.left_context), int(config.right_context)))
        if len(contexts) != 1:
            raise InputError(f"ensemble members disagree on their context: {sorted(contexts)}")
        return contexts.pop()

    def weights_sha256(self) -> str:
        """sha256 over every member's parameters and buffers (identifies an in-memory teacher)."""
        h = hashlib.sha256()
        for m in self.members:
            for name, t in list(m.named_parameters()) + list(m.named_buffers()):
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def _apply(self, *args: Any, **kwargs: Any) -> "EnsembleTeacher":
        # .to()/.half() replace the members' tensors: the stacked copy must be rebuilt.
        self._stacked = None
        self._low_precision = {}
        return super()._apply(*args, **kwargs)

    def _stack(self) -> tuple[nn.Module, dict[str, Tensor], dict[str, Tensor]]:
        if self._stacked is None:
            from torch.func import stack_module_state

            params, buffers = stack_module_state(list(self.members))
            params = {k: v.detach() for k, v in params.items()}
            # The members then read their weights from the stacked tensors, so the ensemble's
            # weights are held once, not twice (10 x 85M parameters is 3.4 GB in fp32).
            for i, member in enumerate(self.members):
                for name, p in member.named_parameters():
                    p.data = params[name][i]
                for name, b in member.named_buffers():
                    b.data = buffers[name][i]
            skeleton = copy.deepcopy(self.members[0]).to("meta").eval()
            self._stacked = (skeleton, params, buffers)
        return self._stacked

    def manifest_record(self) -> dict[str, Any]:
        """What a soft-target store's manifest keeps of this teacher: mean, weights, member checkpoints."""
        record: dict[str, Any] = {"mean": self.mean, "num_members": self.num_members}
        if self.weights is not None:  # absent for equal weights: older stores stay valid
            record["weights"] = list(self.weights)
        if self.checkpoints:
            record["checkpoints"] = list(self.checkpoints)
        else:
            record["weights_sha256"] = self.weights_sha256()
        return record

    @torch.no_grad()
    def member_logits(self, x: Tensor, frame_idx: Tensor | None = None) -> Tensor:
        """Every member's logits for input `x`: (M, B, C). `frame_idx` is not needed (networks see `x`)."""
        if self.path == "loop":
            return torch.stack([m(x) for m in self.members])
        if self.path == "mlp":
            return self._mlp_logits(x)
        from torch.func import functional_call, vmap

        skeleton, params, buffers = self._stack()

        def one_member(p: dict[str, Tensor], b: dict[str, Tensor], inputs: Tensor) -> Tensor:
            return functional_call(skeleton, (p, b), (inputs,))

        return vmap(one_member, in_dims=(0, 0, None))(params, buffers, x)

    def _mlp_logits(self, x: Tensor) -> Tensor:
        _, params, _ = self._stack()
        first = self.members[0]
        names = {id(mod): name for name, mod in first.named_modules()}
        m, b = self.num_members, x.shape[0]
        h = x.reshape(b, -1)
        if h.shape[1] != first.config.input_dim:
            raise ValueError(f"ensemble expects windows of {first.config.input_dim} values per frame, got {tuple(x.shape)}")
        device_type = h.device.type
        if torch.is_autocast_enabled(device_type):
            # Autocast would cast every stacked weight again for every batch (they are not
            # parameters, so its cache skips them): keep one low-precision copy instead.
            dtype = torch.get_autocast_dtype(device_type)
            if dtype not in self._low_precision:
                self._low_precision[dtype] = {k: v.to(dtype) for k, v in params.items()}
            params = self._low_precision[dtype]
        weight = params[f"{names[id(first.output)]}.weight"]
        if h.dtype != weight.dtype:
            h = h.to(weight.dtype)  # fp16 frame-bank windows, as FrameClassifier.forward does
        for layer in _linear_stack(first) or []:
            if isinstance(layer, nn.Linear):
                w = params[f"{names[id(layer)]}.weight"]  # (M, out, in)
                bias = params.get(f"{names[id(layer)]}.bias")
                if h.dim() == 2:
                    # Same input for all members: one (B, in) x (in, M*out) GEMM.
                    w_all = w.reshape(m * w.shape[1], w.shape[2]).t()
                    out = torch.addmm(bias.reshape(-1), h, w_all) if bias is not None else h @ w_all
                    h = out.view(b, m, w.shape[1]).transpose(0, 1)
                elif bias is not None:
                    h = torch.baddbmm(bias.unsqueeze(1), h, w.transpose(1, 2))
                else:
                    h = torch.bmm(h, w.transpose(1, 2))
            elif isinstance(layer, nn.ReLU):
                h = h.relu_()  # h is always a fresh matmul output here
            else:
                h = layer(h)
        return h

    @torch.no_grad()
    def soft_targets(self, x: Tensor, temperature: float = 1.0) -> Tensor:
        """The ensemble's distribution at `temperature` for input `x`: (B, C) float32."""
        return average_posteriors(self.member_logits(x), temperature, self.mean, weights=self.weights,
                                  overwrite_input=True)

    def forward(self, x: Tensor) -> Tensor:
        """Ensemble probabilities at T = 1."""
        return self.soft_targets(x, 1.0)


@torch.no_grad()
def ensemble_frame_accuracy(
    teacher: EnsembleTeacher,
    frame_bank: Any,
    *,
    batch_size: int = 4096,
    device: str | torch.device = "cpu",
    frame_idx: Tensor | None = None,
) -> dict[str, float]:
    """Frame accuracy of each member and of both ensemble means against the bank's labels.

    `frame_bank` follows the FrameBank contract (`num_frames`, `labels`, `splice`). Returns
    {"member1": ..., "memberM": ..., "arithmetic": ..., "geometric": ..., "num_frames": N}.
    """
    left, right = teacher.context
    bank_device = getattr(frame_bank, "device", torch.device("cpu"))
    idx_all = torch.arange(frame_bank.num_frames) if frame_idx is None else frame_idx.long().cpu()
    correct = torch.zeros(teacher.num_members + 2, dtype=torch.long)
    for start in tqdm(range(0, len(idx_all), batch_size), desc="frame accuracy", unit="batch", leave=False):
        idx = idx_all[start:start + batch_size].to(bank_device)
        x = frame_bank.splice(idx, left, right).to(device)
        labels = frame_bank.labels[idx.to(frame_bank.labels.device)].to(device).long()
        logits = teacher.member_logits(x)
        correct[:-2] += (logits.argmax(-1) == labels).sum(-1).cpu()
        correct[-2] += (average_posteriors(logits, 1.0, "arithmetic", weights=teacher.weights).argmax(-1) == labels).sum().cpu()
        correct[-1] += (average_posteriors(logits, 1.0, "geometric", weights=teacher.weights).argmax(-1) == labels).sum().cpu()
    n = max(len(idx_all), 1)
    acc = (correct.double() / n).tolist()
    result = {f"member{i + 1}": a for i, a in enumerate(acc[:-2])}
    result.update(arithmetic=acc[-2], geometric=acc[-1], num_frames=float(len(idx_all)))
    return result


@dataclass
class TeacherAgreement:
    """How near a model is to a teacher on a bank's frames, both at `temperature`: mean KL(teacher || model) and
    the teacher's mean entropy (nats), the share of frames where their arg-max classes agree, frames scored."""

    temperature: float
    kl: float
    agreement: float
    teacher_entropy: float
    num_frames: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def teacher_agreement(model_log_probs: Callable[[Tensor], Tensor], teacher: EnsembleTeacher, frame_bank: Any,
                      left: int, right: int, temperature: float = 1.0, frame_idx: Any = None,
                      batch_size: int = 8192, amp: bool = False) -> TeacherAgreement:
    """Compare `model_log_probs` (windows of `left`/`right` context -> log posteriors, as
    HybridScorer.log_posteriors_windows) with `teacher` on every frame of `frame_bank`, or on `frame_idx`.

    The model's distribution at T is softmax(log p / T), which for one network is softmax(logits / T).
    """
    if temperature <= 0:
        raise InputError(f"teacher agreement: temperature must be positive, got {temperature}")
    t_left, t_right = teacher.context
    idx_all = (torch.arange(frame_bank.num_frames) if frame_idx is None
               else torch.as_tensor(frame_idx, dtype=torch.long)).to(frame_bank.device)
    if idx_all.numel() == 0:
        raise InputError("teacher agreement: no frames to score")
    sums = torch.zeros(3, dtype=torch.float64)
    for i in range(0, idx_all.numel(), batch_size):
        idx = idx_all[i:i + batch_size]
        with autocast(frame_bank.device, amp):
            p = teacher.soft_targets(frame_bank.splice(idx, t_left, t_right), temperature)
        log_probs = model_log_probs(frame_bank.splice(idx, left, right))
        p = p.float()
        sums[0] += float(soft_kl_divergence(log_probs, p, temperature)) * idx.numel() / temperature ** 2
        sums[1] += float((p.argmax(-1) == log_probs.argmax(-1)).sum())
        sums[2] += -float(torch.special.xlogy(p, p).sum())
    n = idx_all.numel()
    return TeacherAgreement(temperature=temperature, kl=float(sums[0]) / n, agreement=float(sums[1]) / n,
                            teacher_entropy=float(sums[2]) / n, num_frames=n)
