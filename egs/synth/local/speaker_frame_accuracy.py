"""Frame accuracy of each speaker of a frame bank, for one or more models: where a change of inputs costs accuracy.

The speaker is the first '-'-separated field of each utterance's cut id (LibriSpeech's SPEAKER-CHAPTER-UTTERANCE).

  python egs/synth/local/speaker_frame_accuracy.py --frame-bank EXP/bank/test --model NET1/final.pt NET2/final.pt
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch

from asr_kd.data.frame_bank import UNLABELLED, FrameBank
from asr_kd.models.frame_classifier import FrameClassifier


def speaker_accuracies(bank: FrameBank, model: FrameClassifier) -> dict[str, float]:
    """Percent of each speaker's labelled frames whose arg-max class is the label."""
    hits: Counter[str] = Counter()
    frames: Counter[str] = Counter()
    with torch.no_grad():
        for u, cut_id in enumerate(bank.cut_ids):
            feats, labels = bank.utterance(u)
            labelled = labels != UNLABELLED
            predicted = model.log_posteriors(feats).argmax(-1).numpy()
            speaker = cut_id.split("-")[0]
            hits[speaker] += int((predicted == labels)[labelled].sum())
            frames[speaker] += int(labelled.sum())
    return {speaker: 100 * hits[speaker] / frames[speaker] for speaker in sorted(frames) if frames[speaker]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frame-bank", type=Path, required=True, help="a frame bank directory (stage 4's bank/test ...)")
    p.add_argument("--model", type=Path, nargs="+", required=True, help="FrameClassifier checkpoints")
    args = p.parse_args()
    bank = FrameBank.load(args.frame_bank)
    rows = {path: speaker_accuracies(bank, FrameClassifier.load(path).eval()) for path in args.model}
    speakers = list(next(iter(rows.values())))
    print("| model | " + " | ".join(speakers) + " |")
    print("|---|" + "---:|" * len(speakers))
    for path, accuracy in rows.items():
        print(f"| {path} | " + " | ".join(f"{accuracy[s]:.1f}" for s in speakers) + " |")


if __name__ == "__main__":
    main()
