"""CPU inference speed of a FrameClassifier: PyTorch eager vs onnxruntime vs TorchScript.

Each model shape (random weights) is exported to ONNX and TorchScript in a temporary directory; every
runtime scores the same batch of random windows (logits, as the decoder's forward pass does),
calls interleaved and the fastest of --repeats kept, so load on a shared machine hits all alike.
Prints frames/s, the network's real-time factor (100 frames per audio second / frames/s) and the
ratio against PyTorch eager measured in the same run. A shape is named (small, paper, ...) or
LAYERSxWIDTH (the named shapes' context and features, --num-outputs classes), e.g. the deployment
table's systems: a network's cost depends on its shape, not on its trained weights.

  python bench/bench_export.py --model-shapes small paper --batch-size 1024 --repeats 3 --threads 2
  python bench/bench_export.py --model-shapes 2x128 2x64 --num-outputs 1500 --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from asr_kd.models import FrameClassifier, shape_config
from asr_kd.models.export import OnnxFrameClassifier, export_onnx, export_torchscript, load_torchscript


def _fastest(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Fastest seconds per call of each function, after one warm-up call each."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-shapes", nargs="+", default=["small", "paper"], help="named shapes or LAYERSxWIDTH")
    p.add_argument("--num-outputs", type=int, default=None, help="output classes (default: the shape's)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="intra-op threads, every runtime")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU, {args.threads} threads, batch {args.batch_size}, best of {args.repeats}; torch {torch.__version__}")
    for shape in args.model_shapes:
        config = shape_config(shape, num_outputs=args.num_outputs)
        torch.manual_seed(0)
        model = FrameClassifier(config).eval()
        windows = torch.randn(args.batch_size, config.context, config.feat_dim)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_model = OnnxFrameClassifier(export_onnx(model, Path(tmp) / "m.onnx"), num_threads=args.threads)
            ts_model, _ = load_torchscript(export_torchscript(model, Path(tmp) / "m.ts.pt"))

            def eager() -> object:
                with torch.inference_mode():
                    return model(windows)

            def torchscript() -> object:
                with torch.inference_mode():
                    return ts_model(windows)

            best = _fastest({"pytorch": eager, "onnxruntime": lambda: onnx_model(windows),
                             "torchscript": torchscript}, args.repeats)
        params = sum(t.numel() for t in model.parameters()) / 1e6
        print(f"{shape} ({config.num_layers}x{config.hidden_dim}, {config.num_outputs} outputs, {params:.1f}M params)")
        for name, seconds in best.items():
            fps = args.batch_size / seconds
            print(f"  {name:12s} {fps:10.0f} frames/s  network RTF {100 / fps:.5f}  x{best['pytorch'] / seconds:.2f} vs pytorch")


if __name__ == "__main__":
    main()
