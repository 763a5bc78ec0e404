"""Hybrid acoustic scores of frame classifiers: log p(s|x), and log p(s|x) - log p(s) for decoding."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from asr_kd.distill.ensemble import average_posteriors
from asr_kd.distill.specialists.combine import attach_specialists
from asr_kd.models import FrameClassifier
from asr_kd.models.context import splice_utterance
from asr_kd.models.export import OnnxFrameClassifier
from asr_kd.utils.device import autocast, use_bf16
from asr_kd.utils.errors import InputError


class HybridScorer:
    """Log posteriors of one model (PyTorch checkpoint or .onnx) or of an ensemble's mean posterior."""

    def __init__(self, model_paths: Sequence[Path], device: torch.device, batch_size: int = 8192,
                 num_threads: int | None = None, amp: bool = False):
        """`amp`: run PyTorch models under bf16 autocast (log-softmax in fp32)."""
        for path in model_paths:
            if not Path(path).is_file():
                raise InputError(f"{path}: model checkpoint not found")
        self.paths = [Path(p) for p in model_paths]
        self.models = [OnnxFrameClassifier(p, num_threads) if Path(p).suffix == ".onnx"
                       else FrameClassifier.load(p, map_location=device).eval() for p in model_paths]
        configs = {(m.config.feat_dim, m.config.num_outputs, m.left_context, m.right_context) for m in self.models}
        if len(configs) != 1:
            raise InputError(f"--model: the models disagree on (feat_dim, outputs, left, right): {sorted(configs)}")
        first = self.models[0].config
        self.feat_dim, self.num_outputs = first.feat_dim, first.num_outputs
        self.left, self.right = first.left_context, first.right_context
        self.device, self.batch_size, self.amp = device, batch_size, amp
        # Members trained on the same alignments share their priors; averaging covers any that don't.
        priors = torch.stack([m.log_priors.float().cpu().exp() for m in self.models]).mean(0)
        self.log_priors = priors.log().numpy()
        self.num_params = sum(m.num_params if isinstance(m, OnnxFrameClassifier) else sum(p.numel() for p in m.parameters())
                              for m in self.models)

    @torch.no_grad()
    def log_posteriors_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """log p(s | window) (B, C) for spliced windows: the model's, or log of the members' mean."""
        with autocast(self.device, self.amp):
            logits = [m(windows) for m in self.models]
        if len(logits) == 1:
            return torch.log_softmax(logits[0].float(), dim=-1)
        return average_posteriors(logits).clamp_min(1e-30).log()

    @torch.no_grad()
    def log_posteriors(self, feats: np.ndarray) -> np.ndarray:
        """(T, C) log posteriors of one utterance's normalised features (T, D); edges repeat."""
        x = torch.as_tensor(feats, dtype=torch.float32, device=self.device)
        windows = splice_utterance(x, self.left, self.right)
        out = [self.log_posteriors_windows(windows[i:i + self.batch_size]) for i in range(0, len(windows), self.batch_size)]
        return torch.cat(out).cpu().numpy() if out else np.zeros((0, self.num_outputs), np.float32)


def load_scorer(models: Sequence[Path], device: torch.device, batch_size: int = 8192, num_threads: int | None = None,
                amp: str = "none", specialists: Sequence[Path] | None = None, specialist_top_n: int = 1,
                combine_steps: int = 20) -> HybridScorer:
    """The scorer of `models` (bf16 autocast per `amp`: auto, bf16 or none), the one model being the generalist of
    `specialists` when given (their posteriors combined as in Hinton et al. 2015, Section 5)."""
    scorer = HybridScorer(models, device, batch_size, num_threads, amp=use_bf16(amp, device))
    if specialists:
        attach_specialists(scorer, [str(p) for p in specialists], specialist_top_n, combine_steps)
    return scorer
