"""`asr-kd export-model`: write a trained FrameClassifier as ONNX and/or TorchScript for deployment.

The ONNX file (opset 17, dynamic batch axis) carries the model's config and log state priors as
metadata, so `asr-kd decode-nnet --model out.onnx ...` decodes with it through onnxruntime. After
exporting, the posteriors of every written file are compared with PyTorch's on a random batch of
windows and the largest absolute difference is printed with each file's size.

With --check-parity --frame-bank DIR the written (or existing) files are also run over real
utterances of that frame bank (e.g. exp/bank/dev) and compared with the checkpoint: the largest
|log-posterior difference| over every frame and class must stay within --tolerance, else the
command exits with status 2 (a deployment gate); --parity-out keeps the figures as JSON.

Example:
  asr-kd export-model --model exp/nnet/student/final.pt --onnx exp/nnet/student/final.onnx \\
      --torchscript exp/nnet/student/final.ts.pt --check-parity --frame-bank exp/bank/dev
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from asr_kd.bin.common import add_trust_pickle_option, run_cli
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
    g = p.add_argument_group("parity check on real utterances")
    g.add_argument("--check-parity", action="store_true",
                   help="compare each file's log-posteriors with PyTorch's on --frame-bank utterances; "
                        "exit 2 when one differs by more than --tolerance")
    g.add_argument("--frame-bank", type=Path, help="frame bank whose utterances the parity check runs on (e.g. exp/bank/dev)")
    g.add_argument("--parity-utterances", type=int, default=20, help="utterances, spread evenly over the bank")
    g.add_argument("--tolerance", type=float, default=None,
                   help="largest allowed |log p_runtime - log p_pytorch| (default: 1e-3)")
    g.add_argument("--parity-out", type=Path, help="JSON file for the parity figures")
    add_trust_pickle_option(p)
    return p


def check_parity_of(model, paths: list[Path], args: argparse.Namespace) -> None:
    """Run the parity check of `paths` on --frame-bank; print, keep as JSON, raise InputError on a failure."""
    from asr_kd.data.frame_bank import FrameBank
    from asr_kd.models.parity import DEFAULT_TOLERANCE, check_parity
    from asr_kd.utils.io import atomic_write_json

    if args.frame_bank is None:
        raise InputError("--check-parity needs --frame-bank (real utterances to compare on, e.g. exp/bank/dev)")
    bank = FrameBank.load(args.frame_bank)
    reports = check_parity(model, paths, bank, args.parity_utterances, args.tolerance or DEFAULT_TOLERANCE)
    for r in reports:
        print(f"parity {r.runtime}: {r.path} max |log p - PyTorch's| = {r.max_abs_diff:.2e} over {r.frames} frames "
              f"of {r.utterances} utterances of {args.frame_bank} (tolerance {r.tolerance:g}): "
              f"{'ok' if r.passed else 'FAILED'}")
    if args.parity_out is not None:
        atomic_write_json(args.parity_out, {"model": str(args.model), "frame_bank": str(args.frame_bank),
                                            "reports": [r.as_dict() for r in reports]})
    failed = [r for r in reports if not r.passed]
    if failed:
        raise InputError("parity check failed: " + "; ".join(
            f"{r.path} differs from {args.model} by {r.max_abs_diff:.3g} > {r.tolerance:g} in log-posterior"
            for r in failed))


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
        if args.check_parity:
            check_parity_of(model, [p for p in (args.onnx, args.torchscript) if p is not None], args)

    return run_cli(body, "asr-kd export-model", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
