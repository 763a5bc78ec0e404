"""A specialist network: the generalist's body with outputs for its class set S plus a dustbin class."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from asr_kd.distill.specialists.sets import collapse, collapse_map, validate_sets
from asr_kd.models.frame_classifier import FrameClassifier, read_checkpoint
from asr_kd.utils.errors import InputError


@torch.no_grad()
def hidden_activations(model: FrameClassifier, windows: Tensor) -> Tensor:
    """The last hidden layer's output (B, H): what the output layer sees."""
    seen: list[Tensor] = []
    handle = model.output.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].float()))
    try:
        model(windows)
    finally:
        handle.remove()
    return seen[0]


@torch.no_grad()
def init_specialist(generalist: FrameClassifier, classes: np.ndarray, windows: Tensor,
                    ridge: float = 1e-3, kl_iters: int = 50) -> tuple[FrameClassifier, dict[str, float]]:
    """Specialist initialised from the generalist; returns it and the dustbin fit's errors.

    Hidden layers and the output rows of S are copied. The dustbin should carry the generalist's mass
    outside S, whose logit is log sum_{j not in S} exp(z_j(h)) - a function of the hidden vector h that
    a linear layer can only approximate. Its row starts as the ridge least-squares fit of that logit on
    the generalist's hidden activations of `windows` (a sample of frames), exact when the outside rows
    differ only in their biases; L-BFGS then minimises the mean KL(collapsed generalist || specialist)
    over the same frames (convex in the dustbin row), which weighs errors by where the mass is.
    """
    c = generalist.config.num_outputs
    validate_sets([np.asarray(classes)], c, "specialist")
    classes_t = torch.as_tensor(np.asarray(classes), dtype=torch.long)
    outside = torch.ones(c, dtype=torch.bool)
    outside[classes_t] = False
    generalist = generalist.eval()
    spec = FrameClassifier(dataclasses.replace(generalist.config, num_outputs=len(classes_t) + 1))
    spec.to(generalist.output.weight.device)
    body = {k: v for k, v in generalist.state_dict().items() if not k.startswith("output.") and k != "log_priors"}
    spec.load_state_dict(body, strict=False)
    w, b = generalist.output.weight.double(), generalist.output.bias.double()
    h = hidden_activations(generalist, windows).double()
    target = torch.logsumexp(h @ w[outside].T + b[outside], dim=1)
    design = torch.cat([h, torch.ones(h.shape[0], 1, dtype=h.dtype, device=h.device)], dim=1)
    gram = design.T @ design + ridge * torch.eye(design.shape[1], dtype=h.dtype, device=h.device)
    gram[-1, -1] -= ridge  # leave the bias unpenalised
    coef = torch.linalg.solve(gram, design.T @ target)
    rmse = float((design @ coef - target).pow(2).mean().sqrt())
    z_s = h @ w[classes_t].T + b[classes_t]
    p_target = torch.cat([z_s, target[:, None]], 1).softmax(-1)

    def mean_kl(row: Tensor) -> Tensor:
        log_q = torch.cat([z_s, (design @ row)[:, None]], 1).log_softmax(-1)
        return (p_target * (p_target.clamp_min(1e-300).log() - log_q)).sum(1).mean()

    kl_lstsq = float(mean_kl(coef))
    row = coef.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([row], max_iter=kl_iters, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = mean_kl(row)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    kl_fit = float(mean_kl(row.detach()))
    if kl_fit < kl_lstsq:
        coef = row.detach()
    else:
        kl_fit = kl_lstsq
    spec.output.weight.copy_(torch.cat([w[classes_t], coef[None, :-1]]).to(spec.output.weight.dtype))
    spec.output.bias.copy_(torch.cat([b[classes_t], coef[-1:]]).to(spec.output.bias.dtype))
    priors = collapse(generalist.log_priors.exp()[None].double(), collapse_map(classes_t, c))[0]
    spec.log_priors.copy_(priors.log().to(spec.log_priors.dtype))
    return spec, {"logit_rmse_lstsq": rmse, "kl_lstsq": kl_lstsq, "kl": kl_fit}


def dustbin_log_correction(special_fraction: float, natural_fraction: float) -> float:
    """Added to the dustbin logit after training on a resampled set (paper: log of the oversampling).

    Frames of S made up `natural_fraction` of the data and `special_fraction` of the training set:
    S was oversampled by special/natural and the dustbin by (1-special)/(1-natural); the posterior
    under the natural mix comes back by raising the dustbin logit by the log of their ratio.
    """
    if not (0 < special_fraction < 1 and 0 < natural_fraction < 1):
        raise InputError(f"fractions must be in (0, 1): special {special_fraction}, natural {natural_fraction}")
    oversample_s = special_fraction / natural_fraction
    oversample_dustbin = (1 - special_fraction) / (1 - natural_fraction)
    return float(np.log(oversample_s / oversample_dustbin))


@torch.no_grad()
def matched_dustbin_correction(dustbin_logits_delta: Tensor, target_share: float, tol: float = 1e-6) -> float:
    """Shift of the dustbin logit making its mean probability over natural frames equal `target_share`.

    dustbin_logits_delta: (N,) the dustbin logit minus the log-sum-exp of the set's logits, per frame
    (so the dustbin probability after a shift d is sigmoid(delta + d)). Bisection: the mean is monotone in d.
    """
    if not 0 < target_share < 1:
        raise InputError(f"dustbin share must be in (0, 1), got {target_share}")
    delta = dustbin_logits_delta.double()
    lo, hi = -50.0, 50.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if float(torch.sigmoid(delta + mid).mean()) < target_share:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def save_specialist(model: FrameClassifier, path: str | os.PathLike, classes: np.ndarray, num_classes: int,
                    **extra: Any) -> None:
    """A FrameClassifier checkpoint that also names its class set (over the generalist's classes)."""
    model.save(path, specialist={"classes": [int(c) for c in classes], "num_classes": int(num_classes), **extra})


def load_specialist(path: str | os.PathLike, num_classes: int | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[FrameClassifier, np.ndarray]:
    """(model, classes) from a specialist checkpoint; InputError when it is not one or does not fit."""
    ckpt = read_checkpoint(path)
    info = ckpt.get("specialist")
    if not isinstance(info, dict) or "classes" not in info:
        raise InputError(f"{path}: not a specialist checkpoint (no class set); make one with `asr-kd train-specialists`")
    classes = np.asarray(info["classes"], dtype=np.int64)
    if num_classes is not None and info["num_classes"] != num_classes:
        raise InputError(f"{path}: specialist over {info['num_classes']} classes, the generalist has {num_classes}")
    validate_sets([classes], int(info["num_classes"]), str(path))
    if ckpt["config"]["num_outputs"] != len(classes) + 1:
        raise InputError(f"{path}: {ckpt['config']['num_outputs']} outputs for a set of {len(classes)} classes "
                         "(+1 dustbin)")
    model = FrameClassifier.load(path, map_location=map_location).eval()
    return model, classes
