"""MULTI_TEACHER.md of egs/synth/run_multi_teacher.sh: one row per teacher store and its student.

Reads <exp-dir>/soft/<teacher>_T<T>/manifest.json, results/acc_<student>_{dev,test}.json and the
GMM teacher's own top-1 stores soft/gmm_top1_{dev,test} (its argmax, compared with the bank labels).

  python egs/synth/local/multi_teacher_table.py --exp-dir DIR --src-exp SRC --train-bank BANK \\
      --teachers ensemble gmm gmm0.2_ens --temperature 2 --out DIR/MULTI_TEACHER.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from asr_kd.utils.io import atomic_write_text


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def teacher_description(manifest: dict) -> str:
    """Members and weights of a store's teacher, from its manifest."""
    t = manifest.get("teacher", {})
    gmms = {g["position"]: f"GMM {Path(g['path']).name} (scale {g['acoustic_scale']:g})" for g in t.get("gmm_teachers", [])}
    n = t.get("num_members", 0)
    dnn = iter(Path(c["path"]).parent.name for c in t.get("checkpoints", []))
    names = [gmms[i] if i in gmms else next(dnn, "?") for i in range(n)]
    weights = t.get("weights") or [1.0 / n] * n
    return " + ".join(f"{w:.3g} {name}" for w, name in zip(weights, names))


def gmm_accuracy(exp: Path, src: Path, part: str) -> float | None:
    """Frame accuracy of the GMM's argmax (the top-1 of its T=1 store) against the bank's labels."""
    store = exp / "soft" / f"gmm_top1_{part}"
    if not (store / "class_ids.npy").is_file():
        return None
    top1 = np.load(store / "class_ids.npy")[:, 0]
    labels = np.load(src / "bank" / part / "labels.npy")
    return float((top1 == labels).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True)
    p.add_argument("--src-exp", type=Path, required=True)
    p.add_argument("--train-bank", type=Path, required=True)
    p.add_argument("--teachers", nargs="+", required=True)
    p.add_argument("--temperature", default="2")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    exp, src = args.exp_dir, args.src_exp
    bank = _json(args.train_bank / "manifest.json")
    header = ["student's teacher", "teacher members and weights", f"top-k mass at T={args.temperature} (k)", "student dev frame acc %",
              "student test frame acc %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    acc = {name: {part: _json(exp / "results" / f"acc_{name}_{part}.json").get("accuracy") for part in ("dev", "test")}
           for name in ["baseline", *args.teachers]}
    lines.append(f"| none (hard labels only) | – | – | {_pct(acc['baseline']['dev'])} | {_pct(acc['baseline']['test'])} |")
    for name in args.teachers:
        manifest = _json(exp / "soft" / f"{name}_T{args.temperature}" / "manifest.json")
        mass = manifest.get("mean_topk_mass")
        kept = "–" if mass is None else f"{mass:.3f} ({manifest.get('k')})"
        lines.append(f"| {name} | {teacher_description(manifest)} | {kept} | "
                     f"{_pct(acc[name]['dev'])} | {_pct(acc[name]['test'])} |")
    hardware = next((_json(exp / "results" / f"acc_{n}_dev.json").get("hardware") for n in acc), None)
    notes = [
        "",
        f"GMM teacher alone, argmax of its posteriors vs the tri2 alignment labels: dev {_pct(gmm_accuracy(exp, src, 'dev'))}%, "
        f"test {_pct(gmm_accuracy(exp, src, 'test'))}% (the labels are this GMM's own Viterbi alignment).",
        f"Students: train bank {args.train_bank} ({bank.get('num_utterances')} utterances, {bank.get('num_frames')} frames); "
        f"dev/test banks of {src}. Hardware: {json.dumps(hardware)}.",
    ]
    atomic_write_text(args.out, "\n".join(lines + notes) + "\n")
    print("\n".join(lines + notes))


if __name__ == "__main__":
    main()
