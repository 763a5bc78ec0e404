"""How much of each part's spectral shape lies at each quefrency, once each speaker's own statistics are removed.

Each speaker's fbank frames (over all its cuts in the manifest) lose the speaker's mean and, per mel bin, its
standard deviation (the `speaker_mvn` step); the result's cepstral coefficients (orthonormal DCT over the
bins) have a variance each, averaged over the part's frames. Low quefrencies are the spectral tilt, a few
up to ~12 are formant structure over 40 mel bins, the highest the fine structure such as pitch harmonics.
With --norm speaker_cepstral_mvn the step is that mode's instead (every coefficient then has variance 1).

  python egs/synth/local/cepstral_variance.py --cuts EXP/data/fbank/cuts_{train-clean-100,test-clean,test-other}.jsonl.gz
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from lhotse import load_manifest_lazy

from asr_kd.data.cmvn import cepstra, group_step, speaker_of, speaker_stats

QUEFRENCIES = (0, 1, 2, 4, 6, 8, 10, 12, 16, 20, 25, 30, 39)


def part_variances(path: Path, norm: str) -> tuple[int, np.ndarray]:
    """(speakers, variance of each cepstral coefficient) of the normalised frames of one cut manifest."""
    cuts = list(load_manifest_lazy(path))
    groups = speaker_stats(cuts, norm)
    frames: dict[str, list[np.ndarray]] = defaultdict(list)
    for cut in cuts:
        frames[speaker_of(cut)].append(group_step(norm, cut.load_features(), groups[speaker_of(cut)]))
    ceps = cepstra(np.concatenate([np.concatenate(f) for f in frames.values()]))
    return len(frames), np.square(ceps).mean(axis=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="cut manifests with fbank features")
    p.add_argument("--norm", choices=["speaker_mvn", "speaker_cepstral_mvn"], default="speaker_mvn",
                   help="the per-speaker step before the cepstra are taken")
    args = p.parse_args()
    print("| part | speakers | " + " | ".join(f"c{k}" for k in QUEFRENCIES) + " | c13-39 |")
    print("|---|---:|" + "---:|" * (len(QUEFRENCIES) + 1))
    for path in args.cuts:
        speakers, var = part_variances(path, args.norm)
        cells = " | ".join(f"{var[k]:.2f}" for k in QUEFRENCIES)
        print(f"| {path.name} | {speakers} | {cells} | {var[13:].sum():.2f} |")


if __name__ == "__main__":
    main()
