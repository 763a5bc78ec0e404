"""Deployment formats of a FrameClassifier: ONNX (run with onnxruntime) and TorchScript.

The ONNX file is self-contained for hybrid decoding: besides the network (input "windows"
(batch, L+1+R, D) float32 -> output "logits" (batch, C), batch axis dynamic) it carries the
model's config and log state priors as metadata, which `OnnxFrameClassifier` reads back. The
TorchScript file keeps the priors as the `log_priors` buffer and the config as an extra file.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from asr_kd.models.context import as_utterance, utterance_log_posteriors
from asr_kd.models.frame_classifier import FrameClassifier, FrameClassifierConfig
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path

__all__ = ["ONNX_OPSET", "export_onnx", "onnx_num_params", "export_torchscript", "load_torchscript",
           "OnnxFrameClassifier"]

# Opset 17 is supported by every onnxruntime >= 1.14 and covers Gemm, LayerNormalization, Relu...
ONNX_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "windows", "logits"
META_FORMAT, META_CONFIG, META_PRIORS = "asr_kd.format", "asr_kd.config", "asr_kd.log_priors"
META_PARAMS = "asr_kd.num_params"
ONNX_FORMAT = "asr_kd.FrameClassifier.onnx/1"
TORCHSCRIPT_CONFIG = "asr_kd_config.json"


def _example_windows(config: FrameClassifierConfig, batch: int = 2) -> Tensor:
    return torch.randn(batch, config.context, config.feat_dim, generator=torch.Generator().manual_seed(0))


def _cpu_fp32_eval(model: FrameClassifier) -> FrameClassifier:
    """A CPU float32 copy in eval mode (dropout off, batchnorm on running stats), for tracing."""
    import copy

    return copy.deepcopy(model).to("cpu", torch.float32).eval()


def export_onnx(model: FrameClassifier, path: str | os.PathLike, opset: int = ONNX_OPSET) -> Path:
    """Write `model` as ONNX (dynamic batch axis, `opset`) with its config and log priors as metadata."""
    import onnx

    path = Path(path)
    net = _cpu_fp32_eval(model)
    # The TorchScript-based exporter (deprecated since torch 2.9 but present in 2.13): the dynamo
    # one would add onnxscript as a dependency for this plain feed-forward graph.
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # Tracing sees the forward's shape checks as Python bools; they hold for every batch size.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (_example_windows(net.config),), str(tmp), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
        proto = onnx.load(str(tmp))
        meta = {META_FORMAT: ONNX_FORMAT, META_CONFIG: json.dumps(asdict(net.config)),
                # float32 -> Python float -> JSON is exact both ways.
                META_PRIORS: json.dumps(net.log_priors.float().tolist()),
                # The graph's initialisers are no count: constant folding merges eval-mode norm layers.
                META_PARAMS: str(sum(p.numel() for p in net.parameters()))}
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
    return path


def onnx_num_params(path: str | os.PathLike) -> int:
    """The PyTorch model's parameter count that `export_onnx` keeps in the file's metadata."""
    import onnx

    meta = {m.key: m.value for m in onnx.load(str(path), load_external_data=False).metadata_props}
    return int(meta[META_PARAMS])


def export_torchscript(model: FrameClassifier, path: str | os.PathLike) -> Path:
    """Write `model` as a traced TorchScript module (priors in `log_priors`, config as an extra file)."""
    path = Path(path)
    net = _cpu_fp32_eval(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shape-check TracerWarnings, and torch.jit's deprecation notice
        traced = torch.jit.trace(net, (_example_windows(net.config),))
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_CONFIG: json.dumps(asdict(net.config))})
    return path


def load_torchscript(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, FrameClassifierConfig]:
    """A module written by `export_torchscript` and its config."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such TorchScript file")
    extra = {TORCHSCRIPT_CONFIG: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as err:
        raise InputError(f"{path}: not a readable TorchScript file ({err})") from err
    if not extra[TORCHSCRIPT_CONFIG]:
        raise InputError(f"{path}: TorchScript file without {TORCHSCRIPT_CONFIG} (not written by export_torchscript)")
    return module.eval(), FrameClassifierConfig.from_dict(json.loads(extra[TORCHSCRIPT_CONFIG]))


class OnnxFrameClassifier:
    """An exported FrameClassifier run by onnxruntime, with FrameClassifier's inference interface.

    `model(windows)` gives logits, `log_posteriors(feats)` / `posteriors(feats)` work on one
    utterance's features, and `config`, `left_context`, `right_context`, `log_priors` and
    `num_params` (of the PyTorch model) are the stored ones, so the hybrid decoder can use it in place of the PyTorch model.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX model")
        try:
            meta = {p.key: p.value for p in onnx.load(str(self.path), load_external_data=False).metadata_props}
        except Exception as err:  # protobuf's DecodeError and friends
            raise InputError(f"{self.path}: not a readable ONNX model ({err.__class__.__name__}: {err})") from err
        if meta.get(META_FORMAT) != ONNX_FORMAT:
            raise InputError(f"{self.path}: no {META_FORMAT}={ONNX_FORMAT!r} metadata (not written by export_onnx)")
        self.config = FrameClassifierConfig.from_dict(json.loads(meta[META_CONFIG]))
        self.log_priors = torch.tensor(json.loads(meta[META_PRIORS]), dtype=torch.float32)
        if self.log_priors.shape != (self.config.num_outputs,):
            raise InputError(f"{self.path}: {self.log_priors.numel()} log priors for {self.config.num_outputs} outputs")
        self.num_params = int(meta[META_PARAMS])
        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    @property
    def left_context(self) -> int:
        return self.config.left_context

    @property
    def right_context(self) -> int:
        return self.config.right_context

    def eval(self) -> "OnnxFrameClassifier":
        """No-op (the exported graph is the eval-mode network); lets it stand in for a FrameClassifier."""
        return self

    def __call__(self, windows: Tensor | np.ndarray) -> Tensor:
        """Logits (B, C) for windows (B, L+1+R, D) or (B, (L+1+R)*D), on the input's device."""
        cfg = self.config
        x = torch.as_tensor(windows)
        device = x.device
        if x.dim() == 2 and x.shape[1] == cfg.input_dim:
            x = x.reshape(-1, cfg.context, cfg.feat_dim)
        if x.dim() != 3 or tuple(x.shape[1:]) != (cfg.context, cfg.feat_dim):
            raise ValueError(f"{self.path}: expects windows of shape (B, {cfg.context}, {cfg.feat_dim}) or "
                             f"(B, {cfg.input_dim}), got {tuple(x.shape)}")
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: arr})
        return torch.from_numpy(logits).to(device)

    def log_posteriors(self, feats: np.ndarray | Tensor, temperature: float = 1.0, batch_size: int = 8192) -> Tensor:
        """log p(state | window) (T, C) for one utterance `feats` (T, D) or (1, T, D); edges repeat."""
        x = as_utterance(feats, self.config.feat_dim).to("cpu", torch.float32)
        return utterance_log_posteriors(self, x, self.left_context, self.right_context, self.config.num_outputs,
                                        temperature, batch_size)

    def posteriors(self, feats: np.ndarray | Tensor, temperature: float = 1.0) -> Tensor:
        """p(state | window) (T, C) for one utterance `feats` (T, D) or (1, T, D)."""
        return self.log_posteriors(feats, temperature).exp()

