"""GMM throughput of a trained system on real frames, for scale planning: EM and Viterbi alignment in frames/s.

Loads `<exp>/gmm/<system>` (tree, final.mdl, final.mat), its training alignments and the first --utts training
cuts; times on one process (run it pinned to one core with one thread):
  features  MFCC from fbank (+ LDA-MLLT when the system has it), per frame
  em        one EM iteration as `asr_kd.gmm.train.run_em` does it: accumulate over the aligned frames, ML update
  align     Viterbi alignment of the same utterances (graph compilation included), one worker
Prints frames/s of each and the system's size (pdfs, Gaussians per pdf), which the cost per frame grows with.

    OMP_NUM_THREADS=1 taskset -c 0 python bench/bench_gmm_scale.py --exp-dir exp/synth-mini --system tri2 \
        --utts 2786 [--gauss-per-pdf 9.5]
(the mini models on disk are old-format pickles of this project's own: ASR_KD_TRUST_PICKLE=1 reads them)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from asr_kd.gmm import estimate
from asr_kd.gmm.align import AlignOptions, align_utterances
from asr_kd.gmm.features import compute_gmm_features
from asr_kd.gmm.lang_files import load_gmm_lang
from asr_kd.gmm.stages import load_alignments, load_cuts, system_config, transcripts_of
from asr_kd.gmm.system import GmmSystem, TransitionArrays
from asr_kd.gmm.train import gather


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, default=Path("exp/synth-mini"))
    p.add_argument("--system", default="tri2")
    p.add_argument("--train-part", default="train-clean-100")
    p.add_argument("--utts", type=int, default=300, help="training cuts to time (the first N of the manifest)")
    p.add_argument("--em-repeats", type=int, default=1,
                   help="EM iterations timed, best printed (an update may drop Gaussians: the first is at the "
                        "printed size)")
    p.add_argument("--gauss-per-pdf", type=float, default=0.0,
                   help="first mix the system up to this many Gaussians per pdf (split Gaussians timed as they "
                        "are, not re-estimated): the cost per frame grows with it, so this times a denser target "
                        "system (e.g. 40000 / 4200 = 9.5)")
    args = p.parse_args()

    sys_dir = args.exp_dir / "gmm" / args.system
    system = GmmSystem.load(sys_dir)
    lang = load_gmm_lang(args.exp_dir / "lang")
    cuts = load_cuts(args.exp_dir / "data" / "fbank" / f"cuts_{args.train_part}.jsonl.gz").subset(first=args.utts)
    alis = load_alignments(sys_dir / "ali_train.npz")
    cmvn = system_config(sys_dir).get("cmvn", "speaker")

    t0 = time.perf_counter()
    feats = compute_gmm_features(cuts, cmvn=cmvn, transform=system.transform)
    t_feat = time.perf_counter() - t0
    transcripts = transcripts_of(cuts, lang, "bench cuts")
    ids = [u for u in transcripts if u in alis]
    transcripts = {u: transcripts[u] for u in ids}
    frames_all = feats.num_frames()

    arrays = TransitionArrays.from_model(system.transition_model)
    x, pdf = gather(feats, {u: alis[u] for u in ids}, arrays)
    if args.gauss_per_pdf > system.am.num_gauss / system.am.num_pdfs:
        stats = estimate.accumulate(system.am, x, pdf)
        estimate.mix_up(system.am, stats.pdf_occupancy(), int(round(args.gauss_per_pdf * system.am.num_pdfs)),
                        np.random.default_rng(0), min_count=1.0)
    num_pdfs, num_gauss = system.am.num_pdfs, system.am.num_gauss  # as timed: EM may drop Gaussians
    t0 = time.perf_counter()
    result = align_utterances(system.transition_model, system.tree, system.am, lang, feats.feats, transcripts,
                              AlignOptions(num_workers=1), desc="bench align")
    t_align = time.perf_counter() - t0
    n_ali = sum(feats.feats[u].shape[0] for u in transcripts)
    em_best = float("inf")
    for _ in range(args.em_repeats):
        t0 = time.perf_counter()
        stats = estimate.accumulate(system.am, x, pdf)
        estimate.update(system.am, stats)
        em_best = min(em_best, time.perf_counter() - t0)

    print(f"system {args.system}: {num_pdfs} pdfs, {num_gauss} Gaussians ({num_gauss / num_pdfs:.2f} per pdf), "
          f"feature dim {feats.dim}; {len(cuts)} cuts, {frames_all} frames ({frames_all / 360000:.3f} h)")
    print(f"features  {t_feat:7.2f} s  {frames_all / t_feat:10,.0f} frames/s (MFCC from fbank"
          f"{' + LDA-MLLT' if system.transform is not None else ' + deltas'}, lilcom decode included)")
    print(f"em        {em_best:7.2f} s  {len(pdf) / em_best:10,.0f} frames/s (accumulate + ML update, "
          f"best of {args.em_repeats})")
    print(f"align     {t_align:7.2f} s  {n_ali / t_align:10,.0f} frames/s ({len(result.alignments)}/{len(transcripts)} "
          f"aligned, beam 10, 1 worker, graph compilation included)")


if __name__ == "__main__":
    main()
