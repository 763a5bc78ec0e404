"""Generalist + specialists at inference (Hinton et al. 2015, Section 5.2), batched over frames.

For each frame the generalist's top-n classes pick the active specialists (those whose set S meets
them). The combined distribution q over all C classes minimises
    KL(p_g || q) + sum_{m active} KL(p_m || q_m),
where q_m is q collapsed onto S_m + dustbin. The minimiser is found by EM (a majorise-minimise
iteration): the dustbin term -p_md log sum_{j not in S_m} q_j is bounded via Jensen with the current
q's shares inside the dustbin, and the bound's minimiser has the closed form
    q_j <- (p_g,j + sum_{m: j in S_m} p_m,j + sum_{m: j not in S_m} p_md q_j / q_md) / (1 + n_active).
Each iteration lowers the objective, needs no step size, and costs two (B, C) x (C, M) products; q
starts at p_g, the optimum when no specialist is active (or when every specialist agrees with p_g).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from asr_kd.distill.specialists.model import load_specialist
from asr_kd.models.frame_classifier import FrameClassifier
from asr_kd.utils.errors import InputError

_FLOOR = 1e-30


def active_specialists(log_pg: Tensor, membership: Tensor, top_n: int = 1) -> Tensor:
    """(B, M) bool: specialist m is active when its set holds one of the frame's top-n generalist classes."""
    top = log_pg.topk(top_n, dim=1).indices  # (B, n)
    return membership[:, top].permute(1, 0, 2).any(-1)  # membership (M, C) -> (B, M)


def combine_kl(log_pg: Tensor, spec_log_probs: Sequence[Tensor | None], active: Tensor,
               class_sets: Sequence[Tensor], steps: int = 20) -> Tensor:
    """log q (B, C) minimising KL(p_g||q) + sum_m active KL(p_m||q_m), by `steps` EM iterations.

    spec_log_probs[m]: (A_m, |S_m|+1) log-distributions of specialist m on the rows where active[:, m]
    (in order), or None when it is active nowhere. class_sets[m]: long (|S_m|,) class ids.
    """
    # float32 with probabilities floored at 1e-30: exp of very negative log-probabilities would make
    # denormal numbers, which slow every CPU operation on them by orders of magnitude.
    p_g = log_pg.float().exp().clamp_min(_FLOOR)
    b, c = p_g.shape
    num_m = active.shape[1]
    if not bool(active.any()):
        return log_pg.float().log_softmax(-1)
    membership = torch.zeros(num_m, c, dtype=p_g.dtype, device=p_g.device)
    inside = torch.zeros_like(p_g)  # sum over active m of p_m,j for j in S_m
    dustbin = torch.zeros(b, num_m, dtype=p_g.dtype, device=p_g.device)  # p_md where active, else 0
    for m in range(num_m):
        membership[m, class_sets[m]] = 1.0
        rows = torch.nonzero(active[:, m]).squeeze(1)
        if rows.numel() == 0:
            continue
        p_m = spec_log_probs[m].float().exp().clamp_min(_FLOOR)
        inside[rows[:, None], class_sets[m][None, :]] += p_m[:, :-1]
        dustbin[rows, m] = p_m[:, -1]
    fixed = p_g + inside
    norm = 1.0 + active.sum(1, keepdim=True).to(p_g.dtype)
    not_member = (1.0 - membership).T.contiguous()  # (C, M)
    q = p_g
    for _ in range(steps):
        # (B, M): q's mass outside each S_m, summed directly (1 - mass inside would cancel in float32)
        q_dust = (q @ not_member).clamp_min(_FLOOR)
        ratio = dustbin / q_dust
        # sum over m with j outside S_m of p_md / q_md = (total over m) - (those with j inside S_m)
        outside = ratio.sum(1, keepdim=True) - ratio @ membership
        q = ((fixed + q * outside) / norm).clamp_min(_FLOOR)
    return q.log().log_softmax(-1)


@dataclass
class SpecialistOutput:
    """Per-frame results of one batch: generalist and combined log posteriors, active specialists."""

    log_pg: Tensor
    log_q: Tensor
    active: Tensor


class SpecialistCombiner:
    """A generalist and its specialists; log posteriors of windows combined by the KL objective."""

    def __init__(self, generalist: FrameClassifier, specialist_paths: Sequence[str], top_n: int = 1,
                 steps: int = 20, device: torch.device | str = "cpu"):
        self.generalist = generalist.eval().to(device)
        c = generalist.config.num_outputs
        self.specialists: list[FrameClassifier] = []
        sets = []
        for path in specialist_paths:
            model, classes = load_specialist(path, num_classes=c, map_location=device)
            gcfg, scfg = generalist.config, model.config
            window = (gcfg.feat_dim, gcfg.left_context, gcfg.right_context)
            if (scfg.feat_dim, scfg.left_context, scfg.right_context) != window:
                raise InputError(f"{path}: specialist window/features ({scfg.left_context}+1+{scfg.right_context} "
                                 f"x {scfg.feat_dim}) differ from the generalist's")
            self.specialists.append(model)
            sets.append(torch.as_tensor(classes, dtype=torch.long, device=device))
        if not 1 <= top_n <= c:
            raise InputError(f"top-n must be in [1, {c}], got {top_n}")
        self.class_sets = sets
        self.membership = torch.zeros(len(sets), c, dtype=torch.bool, device=device)
        for m, s in enumerate(sets):
            self.membership[m, s] = True
        self.top_n, self.steps = top_n, steps

    @property
    def num_specialists(self) -> int:
        return len(self.specialists)

    @torch.no_grad()
    def run(self, windows: Tensor) -> SpecialistOutput:
        """Generalist and combined log posteriors (B, C) and the active mask (B, M) of spliced windows."""
        log_pg = self.generalist(windows).float().log_softmax(-1)
        active = active_specialists(log_pg, self.membership, self.top_n)
        spec = []
        for m, model in enumerate(self.specialists):
            rows = torch.nonzero(active[:, m]).squeeze(1)
            spec.append(model(windows[rows]).float().log_softmax(-1) if rows.numel() else None)
        log_q = combine_kl(log_pg, spec, active, self.class_sets, self.steps)
        return SpecialistOutput(log_pg, log_q, active)

    def log_posteriors_windows(self, windows: Tensor) -> Tensor:
        """Combined log posteriors (B, C): a drop-in for a model's log-softmax in decoding."""
        return self.run(windows).log_q


@dataclass
class CoverageBreakdown:
    """Frame counts and correct frames without/with specialists, by number of active specialists covering the label."""

    frames: np.ndarray
    correct_without: np.ndarray
    correct_with: np.ndarray

    @classmethod
    def empty(cls, max_count: int) -> "CoverageBreakdown":
        z = np.zeros(max_count + 1, dtype=np.int64)
        return cls(z.copy(), z.copy(), z.copy())

    def add(self, out: SpecialistOutput, labels: Tensor, membership: Tensor) -> None:
        """Count one batch; `membership` (M, C) bool."""
        covering = (out.active & membership[:, labels].T).sum(1).clamp_max(len(self.frames) - 1).cpu().numpy()
        ok_g = (out.log_pg.argmax(1) == labels).cpu().numpy()
        ok_q = (out.log_q.argmax(1) == labels).cpu().numpy()
        n = len(self.frames)
        self.frames += np.bincount(covering, minlength=n)
        self.correct_without += np.bincount(covering, weights=ok_g, minlength=n).astype(np.int64)
        self.correct_with += np.bincount(covering, weights=ok_q, minlength=n).astype(np.int64)

    def rows(self) -> list[dict]:
        """One dict per count with frames > 0, then the total: the paper's Table 4 form."""
        out = []
        for k in range(len(self.frames)):
            if self.frames[k]:
                out.append(self._row(str(k) if k < len(self.frames) - 1 else f"{k}+", self.frames[k],
                                     self.correct_without[k], self.correct_with[k]))
        out.append(self._row("all", self.frames.sum(), self.correct_without.sum(), self.correct_with.sum()))
        return out

    @staticmethod
    def _row(name: str, frames: int, without: int, with_: int) -> dict:
        return {"covering": name, "frames": int(frames), "acc_without": without / frames,
                "acc_with": with_ / frames, "relative_change": (with_ - without) / max(without, 1)}


def attach_specialists(scorer, specialist_paths: Sequence[str], top_n: int = 1,
                       steps: int = 20) -> SpecialistCombiner:
    """Make a one-model hybrid scorer (asr_kd.decode.scorer.HybridScorer) score generalist + specialists.

    Its `log_posteriors_windows` is replaced by the combiner's, so everything built on the scorer
    (utterance scoring, prior division, decoding, frame accuracy) uses the combined posteriors.
    """
    models = getattr(scorer, "models", [])
    if len(models) != 1 or not isinstance(models[0], FrameClassifier):
        raise InputError("--specialists needs exactly one --model, a PyTorch FrameClassifier checkpoint (the generalist)")
    combiner = SpecialistCombiner(models[0], specialist_paths, top_n=top_n, steps=steps, device=scorer.device)
    scorer.log_posteriors_windows = combiner.log_posteriors_windows
    scorer.num_params += sum(p.numel() for m in combiner.specialists for p in m.parameters())
    return combiner
