"""DEPLOY.md of egs/synth/run_deploy.sh: size, parity, accuracy and CPU decode cost per system.

Reads <exp-dir>/export/<model>/model.{onnx,ts.pt}, results/parity_<model>.json,
results/acc_<system>_test.json and decode/<system>_{onnx,torch}/results.json.

  python egs/synth/local/deploy_table.py --exp-dir DIR --systems baseline student ensemble \\
      --members member1 member2 member3 --out DIR/DEPLOY.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asr_kd.utils.io import atomic_write_text


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def onnx_num_params(path: Path) -> int:
    """The PyTorch model's parameter count that export_onnx keeps in the file's metadata."""
    import onnx

    meta = {m.key: m.value for m in onnx.load(str(path), load_external_data=False).metadata_props}
    return int(meta["asr_kd.num_params"])


def system_row(exp: Path, system: str, parts: list[str], src: Path | None) -> list[str]:
    """One table row: the system's models are `parts` (its members for the ensemble)."""
    onnx_mb = sum((exp / "export" / p / "model.onnx").stat().st_size for p in parts) / 1e6
    ts_mb = sum((exp / "export" / p / "model.ts.pt").stat().st_size for p in parts) / 1e6
    parity = [r for p in parts for r in _json(exp / "results" / f"parity_{p}.json").get("reports", [])]
    worst = {rt: max((r["max_abs_diff"] for r in parity if r["runtime"] == rt), default=None) for rt in ("onnx", "torchscript")}
    acc = _json(exp / "results" / f"acc_{system}_test.json").get("accuracy")
    onnx_dec = _json(exp / "decode" / f"{system}_onnx" / "results.json")
    torch_dec = _json(exp / "decode" / f"{system}_torch" / "results.json")
    params = sum(onnx_num_params(exp / "export" / p / "model.onnx") for p in parts)
    main_wer = _json(src / "decode" / system / "results.json").get("test", {}).get("wer") if src else None

    def rtf(dec: dict, key: str) -> float | None:
        test = dec.get("test")
        if not test:
            return None
        audio = test["data"]["hours"] * 3600
        return (test["nnet_seconds"] if key == "nnet" else test["nnet_seconds"] + test["search_seconds"]) / audio

    return [system, f"{params:,}", f"{onnx_mb:.2f}", f"{ts_mb:.2f}",
            _fmt(worst["onnx"], ".1e"), _fmt(worst["torchscript"], ".1e"),
            _fmt(100 * acc if acc is not None else None, ".2f"),
            _fmt(onnx_dec.get("test", {}).get("wer"), ".2f"), _fmt(torch_dec.get("test", {}).get("wer"), ".2f"),
            _fmt(main_wer, ".2f"),
            _fmt(rtf(torch_dec, "nnet"), ".4f"), _fmt(rtf(onnx_dec, "nnet"), ".4f"),
            _fmt(rtf(torch_dec, "total"), ".4f"), _fmt(rtf(onnx_dec, "total"), ".4f")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--systems", nargs="+", required=True, help="systems in table order ('ensemble' = the members)")
    p.add_argument("--members", nargs="+", required=True, help="the ensemble's model names under export/")
    p.add_argument("--src-exp", type=Path, help="the main run, for its test WERs (LM weight chosen on dev)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    exp = args.exp_dir
    header = ["system", "params", "ONNX MB", "TorchScript MB", "max abs Δ log p ONNX", "max abs Δ log p TorchScript",
              "test frame acc %", "test WER % (onnxruntime)", "test WER % (PyTorch)", "main run's test WER %", "network RTF PyTorch",
              "network RTF onnxruntime", "decode RTF PyTorch", "decode RTF onnxruntime"]
    rows = [system_row(exp, s, args.members if s == "ensemble" else [s], args.src_exp) for s in args.systems]
    any_dec = next((_json(exp / "decode" / f"{s}_onnx" / "results.json") for s in args.systems
                    if (exp / "decode" / f"{s}_onnx" / "results.json").is_file()), {})
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    notes = [
        "",
        f"Network RTF = the decoder's network seconds (features read, CMVN, forward, log-softmax) / test audio seconds; "
        f"decode RTF adds the HCLG search at the LM weight chosen on dev; threads per runtime: "
        f"{any_dec.get('num_threads')}, decoding workers: {any_dec.get('num_workers')}; hardware: "
        f"{json.dumps(any_dec.get('hardware'))}.",
        "Δ log p: largest |log-posterior difference| from the PyTorch checkpoint over every frame and class of the "
        "parity utterances (dev); the ensemble row gives its worst member.",
    ]
    atomic_write_text(args.out, "\n".join(lines + notes) + "\n")
    print("\n".join(lines + notes))


if __name__ == "__main__":
    main()
