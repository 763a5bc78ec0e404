"""AUGMENT.md of egs/synth/run_augment.sh: in-domain and never-heard WER of baselines with and without augmentation.

Each --row names a label, the model's training dir (params.json: frames per epoch, updates), its
decoding dir (results.json: dev, test and test-other WER at dev's LM weight) and the training set's
summary (<set>.json of `asr-kd augment-data`: the copies; "" for the source's own train set).

  python egs/synth/local/augment_table.py --src-exp SRC --out DIR/AUGMENT.md \\
      --row "baseline" SRC/nnet/baseline SRC/decode/baseline "" \\
      --row "baseline, augmented: sp0.9,sp1.1" DIR/nnet/baseline_sp DIR/decode/baseline_sp DIR/data/sp.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from asr_kd.utils.io import atomic_write_text

NEVER_HEARD = "test-other"


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def row(label: str, train_dir: Path, decode_dir: Path, summary: dict, src_frames: int) -> str:
    """One markdown row: training data, updates, WERs and the never-heard / test ratio."""
    params = _json(train_dir / "params.json")
    results = _json(decode_dir / "results.json")
    frames = summary.get("frames", src_frames)
    updates = params["num_epochs"] * params["steps_per_epoch"] if params else None
    wer = {part: results.get(part, {}).get("wer") for part in ("dev", "test", NEVER_HEARD)}
    ratio = wer[NEVER_HEARD] / wer["test"] if wer["test"] and wer[NEVER_HEARD] is not None else None
    copies = ", ".join(f"{name} {summary['copies'][name]['cuts']}" for name in summary.get("perturbations", [])) or "none"
    return (f"| {label} | {frames} ({frames / src_frames:.2f}x) | {copies} | {_fmt(updates, 'd')} | "
            f"{_fmt(wer['dev'], '.2f')} | {_fmt(wer['test'], '.2f')} | {_fmt(wer[NEVER_HEARD], '.2f')} | "
            f"{_fmt(ratio, '.2f')} | {results.get('lmwt', '–')} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src-exp", type=Path, required=True)
    p.add_argument("--row", nargs=4, action="append", required=True,
                   metavar=("LABEL", "TRAIN_DIR", "DECODE_DIR", "SET_SUMMARY"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    src_frames = _json(args.src_exp / "bank" / "train" / "manifest.json")["num_frames"]
    summaries = [_json(Path(s)) if s else {} for *_, s in args.row]
    lines = ["# Training-data augmentation and the never-heard voices\n",
             "| system | training frames | copies (cuts) | updates | dev WER % | test WER % | "
             f"{NEVER_HEARD} WER % | {NEVER_HEARD} / test | LM weight |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    lines += [row(label, Path(t), Path(d), s, src_frames) for (label, t, d, _), s in zip(args.row, summaries)]
    settings = next((s["settings"] for s in summaries if s), None)
    hardware = next((h for _, _, d, _ in args.row if (h := _json(Path(d) / "results.json").get("hardware"))), {})
    lines += ["", f"Source experiment: {args.src_exp}. {NEVER_HEARD}: test-clean's sentences in voices of a family "
              "no training, dev or test speaker uses; decoded at the LM weight dev chose for each model.",
              f"Perturbation settings: {json.dumps(settings)}." if settings else "",
              f"Hardware: {hardware.get('cpu', '?')}, {hardware.get('cores', '?')} cores, torch "
              f"{hardware.get('torch', '?')}. Commands: {args.out.parent}/results/commands.tsv."]
    text = "\n".join(lines).rstrip() + "\n"
    atomic_write_text(args.out, text)
    print(text, end="")


if __name__ == "__main__":
    main()
