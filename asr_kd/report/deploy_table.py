"""DEPLOY.md of egs/synth/run_deploy.sh: size, parity, accuracy and CPU decode cost per system.

Reads <exp-dir>/export/<model>/model.{onnx,ts.pt}, results/parity_<model>.json,
results/acc_<system>_test.json and decode/<system>_{onnx,torch}/results.json.

The command line is `asr-kd deploy-table` (asr_kd/bin/deploy_table.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from asr_kd.models.export import onnx_num_params
from asr_kd.report.collect import decode_dir, read_json_or_none
from asr_kd.report.markdown import markdown_table

__all__ = ["system_cells", "deploy_table"]

HEADER = ["system", "params", "ONNX MB", "TorchScript MB", "max abs Δ log p ONNX", "max abs Δ log p TorchScript",
          "test frame acc %", "test WER % (onnxruntime)", "test WER % (PyTorch)", "main run's test WER %",
          "network RTF PyTorch", "network RTF onnxruntime", "decode RTF PyTorch", "decode RTF onnxruntime"]


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _rtf(dec: dict, key: str) -> float | None:
    """Network (`key` "nnet") or network + search seconds per second of test audio."""
    test = dec.get("test")
    if not test:
        return None
    audio = test["data"]["hours"] * 3600
    return (test["nnet_seconds"] if key == "nnet" else test["nnet_seconds"] + test["search_seconds"]) / audio


def system_cells(exp: Path, system: str, parts: Sequence[str], src: Path | None) -> list[str]:
    """One table row: the system's models are `parts` (its members for the ensemble)."""
    onnx_mb = sum((exp / "export" / p / "model.onnx").stat().st_size for p in parts) / 1e6
    ts_mb = sum((exp / "export" / p / "model.ts.pt").stat().st_size for p in parts) / 1e6
    parity = [r for p in parts
              for r in (read_json_or_none(exp / "results" / f"parity_{p}.json") or {}).get("reports", [])]
    worst = {rt: max((r["max_abs_diff"] for r in parity if r["runtime"] == rt), default=None)
             for rt in ("onnx", "torchscript")}
    acc = (read_json_or_none(exp / "results" / f"acc_{system}_test.json") or {}).get("accuracy")
    onnx_dec = read_json_or_none(decode_dir(exp, f"{system}_onnx") / "results.json") or {}
    torch_dec = read_json_or_none(decode_dir(exp, f"{system}_torch") / "results.json") or {}
    params = sum(onnx_num_params(exp / "export" / p / "model.onnx") for p in parts)
    main = (read_json_or_none(decode_dir(src, system) / "results.json") or {}) if src else {}
    main_wer = main.get("test", {}).get("wer") if src else None
    return [system, f"{params:,}", f"{onnx_mb:.2f}", f"{ts_mb:.2f}",
            _fmt(worst["onnx"], ".1e"), _fmt(worst["torchscript"], ".1e"),
            _fmt(100 * acc if acc is not None else None, ".2f"),
            _fmt(onnx_dec.get("test", {}).get("wer"), ".2f"), _fmt(torch_dec.get("test", {}).get("wer"), ".2f"),
            _fmt(main_wer, ".2f"),
            _fmt(_rtf(torch_dec, "nnet"), ".4f"), _fmt(_rtf(onnx_dec, "nnet"), ".4f"),
            _fmt(_rtf(torch_dec, "total"), ".4f"), _fmt(_rtf(onnx_dec, "total"), ".4f")]


def deploy_table(exp: Path, systems: Sequence[str], members: Sequence[str], src: Path | None) -> str:
    """The table and its notes; 'ensemble' among `systems` is the `members`' models together."""
    rows = [system_cells(exp, s, members if s == "ensemble" else [s], src) for s in systems]
    any_dec = next((read_json_or_none(decode_dir(exp, f"{s}_onnx") / "results.json") or {} for s in systems
                    if (decode_dir(exp, f"{s}_onnx") / "results.json").is_file()), {})
    notes = [
        "",
        f"Network RTF = the decoder's network seconds (features read, CMVN, forward, log-softmax) / test audio seconds; "
        f"decode RTF adds the HCLG search at the LM weight chosen on dev; threads per runtime: "
        f"{any_dec.get('num_threads')}, decoding workers: {any_dec.get('num_workers')}; hardware: "
        f"{json.dumps(any_dec.get('hardware'))}.",
        "Δ log p: largest |log-posterior difference| from the PyTorch checkpoint over every frame and class of the "
        "parity utterances (dev); the ensemble row gives its worst member.",
    ]
    return markdown_table(HEADER, rows) + "\n".join(notes) + "\n"
