"""`asr-kd export-model`: write a trained FrameClassifier as ONNX and/or TorchScript for deployment.

The ONNX file (opset 17, dynamic batch axis) carries the model's config and log state priors as
metadata, so `asr-kd decode-nnet --model out.onnx ...` decodes with it through onnxruntime. After
exporting, the posteriors of every written file are compared with PyTorch's on a random batch of
windows and the largest absolute difference is printed with each file's size.

Example:
  asr-kd export-model --model exp/nnet/student/final.pt --onnx exp/nnet/student/final.onnx \\
      --torchscript exp/nnet/student/final.ts.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from asr_kd.bin.common import run_cli
from asr_kd.utils.errors import InputError


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd export-model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="FrameClassifier checkpoint (e.g. exp/nnet/x/final.pt)")
    p.add_argument("--onnx", type=Path, help="ONNX file to write")
    p.add_argument("--torchscript", type=Path, help="TorchScript file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 17)")
    p.add_argument("--check-frames", type=int, default=256, help="random windows the posteriors are compared on")
    p.add_argument("--overwrite", action="store_true", help="rewrite files that exist")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        from asr_kd.models import FrameClassifier
        from asr_kd.models.export import (ONNX_OPSET, OnnxFrameClassifier, export_onnx, export_torchscript,
                                          load_torchscript)

        if args.onnx is None and args.torchscript is None:
            raise InputError("nothing to do: give --onnx and/or --torchscript")
        if args.check_frames < 1:
            raise InputError(f"--check-frames must be >= 1, got {args.check_frames}")
        model = FrameClassifier.load(args.model).float().eval()
        cfg = model.config
        windows = torch.randn(args.check_frames, cfg.context, cfg.feat_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            reference = torch.softmax(model(windows), dim=-1)
        print(f"{args.model}: {cfg.num_layers}x{cfg.hidden_dim}, context {cfg.left_context}+1+{cfg.right_context}, "
              f"{cfg.num_outputs} outputs")
        for kind, path in (("onnx", args.onnx), ("torchscript", args.torchscript)):
            if path is None:
                continue
            if path.exists() and not args.overwrite:
                print(f"{kind}: {path} exists, kept (--overwrite rewrites it)")
            elif kind == "onnx":
                export_onnx(model, path, opset=args.opset or ONNX_OPSET)
            else:
                export_torchscript(model, path)
            if kind == "onnx":
                posteriors = torch.softmax(OnnxFrameClassifier(path)(windows), dim=-1)
            else:
                module, _ = load_torchscript(path)
                with torch.no_grad():
                    posteriors = torch.softmax(module(windows), dim=-1)
            diff = (posteriors - reference).abs().max().item()
            print(f"{kind}: {path} {path.stat().st_size / 1e6:.2f} MB, max |posterior - PyTorch's| = {diff:.2e} "
                  f"over {args.check_frames} random windows")

    return run_cli(body, "asr-kd export-model")


if __name__ == "__main__":
    sys.exit(main())
