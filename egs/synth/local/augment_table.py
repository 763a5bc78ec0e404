"""AUGMENT.md of egs/synth/run_augment.sh: in-domain and never-heard WER of baselines with and without augmentation.

Each --row names a label, the model's training dir (params.json: frames per epoch, updates; "" for an
ensemble: its members' params.json beside the decode's model files), its decoding dir (results.json:
dev and test frame accuracy, dev, test and test-other WER at dev's LM weight) and the training set's
summary (<set>.json of `asr-kd augment-data`: the copies; "" for the source's own train set).
Each --gain names a label and the decoding dirs of a baseline, an ensemble and a student trained on
the same data: the share of the ensemble's gain over the baseline that the student recovers,
(student - baseline) / (ensemble - baseline), on test frame accuracy and on each WER (none where the
ensemble is no better than the baseline).

  python egs/synth/local/augment_table.py --src-exp SRC --out DIR/AUGMENT.md \\
      --row "baseline" SRC/nnet/baseline SRC/decode/baseline "" \\
      --row "baseline, augmented: sp0.9,sp1.1" DIR/nnet/baseline_sp DIR/decode/baseline_sp DIR/data/sp.json \\
      --row "ensemble, augmented: sp0.9,sp1.1" "" DIR/decode/ensemble_sp DIR/data/sp.json \\
      --gain "augmented: sp0.9,sp1.1" DIR/decode/baseline_sp DIR/decode/ensemble_sp DIR/decode/student_sp
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


def _updates(params: dict) -> int | None:
    return params["num_epochs"] * params["steps_per_epoch"] if params else None


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _member_params(model: str, src_exp: Path) -> dict:
    """params.json beside a decoded model file; a path relative to another directory is looked up under src_exp/nnet."""
    beside = Path(model).parent / "params.json"
    return _json(beside) if beside.is_file() else _json(src_exp / "nnet" / Path(model).parent.name / "params.json")


def row(label: str, train_dir: str, decode_dir: Path, summary: dict, src_frames: int, src_exp: Path) -> str:
    """One markdown row: training data, updates, frame accuracies, WERs and the never-heard / test ratio."""
    results = _json(decode_dir / "results.json")
    if train_dir:
        updates = _fmt(_updates(_json(Path(train_dir) / "params.json")), "d")
    else:  # an ensemble: its members' updates, from the params.json beside each decoded model file
        member = [_updates(_member_params(m, src_exp)) for m in results.get("models", [])]
        updates = (f"{len(member)} x {member[0]}" if member and len(set(member)) == 1 and member[0]
                   else f"{len(member)} x ?" if member else "–")
    frames = summary.get("frames", src_frames)
    wer = {part: results.get(part, {}).get("wer") for part in ("dev", "test", NEVER_HEARD)}
    acc = {part: _pct(results.get(part, {}).get("frame_accuracy")) for part in ("dev", "test")}
    ratio = wer[NEVER_HEARD] / wer["test"] if wer["test"] and wer[NEVER_HEARD] is not None else None
    copies = ", ".join(f"{name} {summary['copies'][name]['cuts']}" for name in summary.get("perturbations", [])) or "none"
    return (f"| {label} | {frames} ({frames / src_frames:.2f}x) | {copies} | {updates} | "
            f"{_fmt(acc['dev'], '.2f')} | {_fmt(acc['test'], '.2f')} | "
            f"{_fmt(wer['dev'], '.2f')} | {_fmt(wer['test'], '.2f')} | {_fmt(wer[NEVER_HEARD], '.2f')} | "
            f"{_fmt(ratio, '.2f')} | {results.get('lmwt', '–')} |")


def gain(label: str, baseline_dir: Path, ensemble_dir: Path, student_dir: Path) -> str:
    """(student - baseline) / (ensemble - baseline) on test frame accuracy and each WER, one markdown row."""
    res = [_json(d / "results.json") for d in (baseline_dir, ensemble_dir, student_dir)]
    cells = []
    for part, key in (("test", "frame_accuracy"), ("dev", "wer"), ("test", "wer"), (NEVER_HEARD, "wer")):
        b, e, s = (r.get(part, {}).get(key) for r in res)
        if None in (b, e, s):
            cells.append("–")
            continue
        scale, better = (100, 1) if key == "frame_accuracy" else (1, -1)  # WER: lower is better
        share = (f"{100 * (s - b) / (e - b):.0f}%" if better * (e - b) > 0
                 else "no ensemble gain to recover")
        cells.append(f"{scale * b:.2f} / {scale * e:.2f} / {scale * s:.2f}: {share}")
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src-exp", type=Path, required=True)
    p.add_argument("--row", nargs=4, action="append", required=True,
                   metavar=("LABEL", "TRAIN_DIR", "DECODE_DIR", "SET_SUMMARY"))
    p.add_argument("--gain", nargs=4, action="append", default=[],
                   metavar=("LABEL", "BASELINE_DECODE_DIR", "ENSEMBLE_DECODE_DIR", "STUDENT_DECODE_DIR"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    src_frames = _json(args.src_exp / "bank" / "train" / "manifest.json")["num_frames"]
    summaries = [_json(Path(s)) if s else {} for *_, s in args.row]
    lines = ["# Training-data augmentation and the never-heard voices\n",
             "| system | training frames | copies (cuts) | updates | dev frame acc % | test frame acc % | dev WER % | "
             f"test WER % | {NEVER_HEARD} WER % | {NEVER_HEARD} / test | LM weight |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [row(label, t, Path(d), s, src_frames, args.src_exp) for (label, t, d, _), s in zip(args.row, summaries)]
    if args.gain:
        lines += ["", "## The ensemble's gain the distilled student recovers\n",
                  "baseline / ensemble / student, and (student - baseline) / (ensemble - baseline):\n",
                  f"| training data | test frame acc % | dev WER % | test WER % | {NEVER_HEARD} WER % |",
                  "|---|---|---|---|---|"]
        lines += [gain(label, Path(b), Path(e), Path(s)) for label, b, e, s in args.gain]
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
