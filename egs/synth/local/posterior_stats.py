"""How sharp each system's posteriors are on a frame bank, and how far their mean lies from the prior decoding divides by.

For each system (one checkpoint, or an ensemble's members averaged as `asr-kd decode-nnet` averages them): the mean
entropy of p(s|x) per frame in nats, the mean of its largest probability, and KL(mean posterior || prior), where the
prior is the one the hybrid decoder divides by (the training alignments' state frequencies stored in the
checkpoint). A system whose posteriors are flatter, or whose mean posterior strays further from that prior, gets
acoustic scores of another scale or bias in the search, which the LM weight and insertion penalty chosen on dev
then absorb.

  python egs/synth/local/posterior_stats.py --bank EXP/bank/dev \\
      --system baseline=EXP/nnet/baseline/final.pt --system ensemble=EXP/nnet/member1/final.pt,EXP/nnet/member2/final.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from asr_kd.data.frame_bank import FrameBank
from asr_kd.decode.scorer import HybridScorer


def posterior_stats(scorer: HybridScorer, bank: FrameBank) -> dict[str, float]:
    """Entropy (nats) and largest probability per frame, and KL(mean posterior || prior), over every frame of `bank`."""
    sum_post = np.zeros(scorer.num_outputs)
    entropy = max_prob = 0.0
    for u in range(bank.num_utterances):
        log_post = scorer.log_posteriors(bank.utterance(u)[0]).astype(np.float64)
        post = np.exp(log_post)
        sum_post += post.sum(axis=0)
        entropy -= float((post * log_post).sum())
        max_prob += float(post.max(axis=1).sum())
    frames = bank.num_frames
    mean_post, prior = sum_post / frames, np.exp(scorer.log_priors.astype(np.float64))
    kl = float((mean_post * np.log(mean_post / prior)).sum())
    return {"entropy": entropy / frames, "max_prob": max_prob / frames, "kl_to_prior": kl}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bank", type=Path, required=True, help="frame bank directory (e.g. EXP/bank/dev)")
    p.add_argument("--system", action="append", required=True,
                   help="NAME=CKPT[,CKPT...]: one system; several checkpoints are an ensemble's members")
    p.add_argument("--num-threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.num_threads)
    bank = FrameBank.load(args.bank)
    print(f"{args.bank}: {bank.num_frames} frames\n")
    print("| system | entropy per frame (nats) | mean largest p | KL(mean posterior ‖ prior) |\n|---|---:|---:|---:|")
    for spec in args.system:
        name, _, paths = spec.partition("=")
        scorer = HybridScorer([Path(x) for x in paths.split(",")], torch.device("cpu"), amp=True)
        s = posterior_stats(scorer, bank)
        print(f"| {name} | {s['entropy']:.3f} | {s['max_prob']:.3f} | {s['kl_to_prior']:.4f} |")


if __name__ == "__main__":
    main()
