"""`asr-kd augment-data`: perturbed copies of aligned training cuts (speed, volume, noise, babble, reverb,
narrow-band, new voices).

Each perturbation makes one copy of every cut through lhotse (perturb_speed, perturb_volume,
cut.mix with noise made offline, reverb_rir, resample to 8 kHz and back) or, for revoice, by speaking
each speaker's sentences again in an espeak-ng voice no corpus split uses; it computes the copy's fbank
and gives it frame labels: speed and revoice copies are force-aligned with the GMM system (--gmm-dir,
--lang-dir), the others keep the original's alignment (same frame count, checked). Copies get `_<perturbation>`
on their cut id and speaker. Finished copies are kept when rerun; a rerun with other settings into
the same --out-dir is refused.

Example (Kaldi's and icefall's 3-way speed perturbation, plus reverberation and narrow-band):
  asr-kd augment-data --cuts exp/gmm/tri2/ali/cuts_train-clean-100.jsonl.gz --out-dir exp/augment \\
      --perturbations sp0.9 sp1.1 reverb narrowband --gmm-dir exp/gmm/tri2 --lang-dir exp/lang
writes exp/augment/cuts_augmented.jsonl.gz (the source cuts + the copies, each with features and
`pdf_ids`) for `asr-kd build-frame-bank --cuts exp/augment/cuts_augmented.jsonl.gz`, and
exp/augment/augmented.json (cuts, frames, failed alignments and seconds per copy). With
`--subset-of exp/bank/train --subset-fraction 0.03`, only the 3% of utterances a subset-trained model
sees are sources (recipes/run.sh stage 9's `subset_copies`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.data.augment import PERTURBATIONS_HELP, AugmentSettings, augment_cuts, parse_perturbations
from asr_kd.data.frame_bank import FrameBank
from asr_kd.gmm.align import AlignOptions
from asr_kd.utils.errors import InputError
from asr_kd.utils.logging import setup_logging


def float_range(text: str) -> tuple[float, float]:
    """'LOW,HIGH' (or one value) as a (low, high) pair."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH numbers, got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}")
    return values[0], values[-1]


def subset_cut_ids(args: argparse.Namespace) -> list[str] | None:
    """The cut ids of --subset-of's seeded subset; None without --subset-of."""
    if args.subset_of is None:
        if args.subset_fraction is not None:
            raise InputError("--subset-fraction needs --subset-of (the frame bank whose subset it is)")
        return None
    if args.subset_fraction is None:
        raise InputError(f"--subset-of {args.subset_of} needs --subset-fraction")
    bank = FrameBank.load(args.subset_of)
    return [bank.cut_ids[u] for u in bank.subset_utterances(args.subset_fraction, args.subset_seed)]


def get_parser() -> argparse.ArgumentParser:
    d = AugmentSettings()
    p = argparse.ArgumentParser(prog="asr-kd augment-data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", type=Path, required=True,
                   help="training cuts with recordings, features and pdf_ids (gmm/tri2/ali/cuts_<part>.jsonl.gz)")
    p.add_argument("--out-dir", type=Path, required=True, help="where the copies, their features and manifests go")
    p.add_argument("--perturbations", nargs="+", default=["sp0.9", "sp1.1"], help=f"one copy each: {PERTURBATIONS_HELP}")
    p.add_argument("--name", default="augmented",
                   help="the combined manifest is <out-dir>/cuts_<name>.jsonl.gz (several sets can share one --out-dir)")
    p.add_argument("--subset-of", type=Path, metavar="BANK",
                   help="copy only the utterances of this frame bank's seeded subset (--subset-fraction, --subset-seed): "
                        "those `asr-kd train --train-bank BANK` trains on with the same two options")
    p.add_argument("--subset-fraction", type=float, help="with --subset-of: the fraction of its utterances")
    p.add_argument("--subset-seed", type=int, default=0, help="with --subset-of: the subset's seed")
    p.add_argument("--gmm-dir", type=Path, help="GMM system that aligns the speed and revoice copies (e.g. exp/gmm/tri2)")
    p.add_argument("--lang-dir", type=Path, help="the lang dir that system was trained with (e.g. exp/lang)")
    p.add_argument("--rir-recordings", type=Path,
                   help="a lhotse RecordingSet of room impulse responses for reverb (default: simulated ones)")
    p.add_argument("--seed", type=int, default=d.seed, help="every random draw follows from it")
    p.add_argument("--volume", type=float_range, default=d.volume, help="LOW,HIGH gain of the volume copies")
    p.add_argument("--noise-snr", type=float_range, default=d.noise_snr, help="LOW,HIGH SNR (dB) of the noise copies")
    p.add_argument("--babble-snr", type=float_range, default=d.babble_snr, help="LOW,HIGH SNR (dB) of the babble copies")
    p.add_argument("--babble-talkers", type=float_range, default=d.babble_talkers,
                   help="LOW,HIGH number of other speakers in a babble recording")
    p.add_argument("--t60", type=float_range, default=d.t60, help="LOW,HIGH reverberation time (s) of simulated rooms")
    p.add_argument("--drr-db", type=float_range, default=d.drr_db,
                   help="LOW,HIGH direct-to-reverberant ratio (dB) of simulated rooms")
    p.add_argument("--num-noises", type=int, default=d.num_noises,
                   help="recordings made offline of each kind: coloured noise, babble, simulated impulse responses")
    p.add_argument("--num-workers", type=int, default=1, help="feature and alignment processes (and revoice's synthesis threads)")
    p.add_argument("--beam", type=float, default=AlignOptions.beam, help="alignment beam of the speed and revoice copies")
    p.add_argument("--retry-beam", type=float, default=AlignOptions.retry_beam, help="beam of the second try")
    add_trust_pickle_option(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        setup_logging(args.out_dir / "log" / "augment_data.log")
        low, high = args.babble_talkers
        if low != int(low) or high != int(high):
            raise InputError(f"--babble-talkers takes whole numbers, got {low},{high}")
        settings = AugmentSettings(seed=args.seed, volume=args.volume, noise_snr=args.noise_snr,
                                   babble_snr=args.babble_snr, babble_talkers=(int(low), int(high)), t60=args.t60,
                                   drr_db=args.drr_db, num_noises=args.num_noises)
        augment_cuts(args.cuts, args.out_dir, parse_perturbations(args.perturbations), settings,
                     gmm_dir=args.gmm_dir, lang_dir=args.lang_dir, rir_recordings=args.rir_recordings,
                     num_workers=args.num_workers, name=args.name, only=subset_cut_ids(args),
                     align_options=AlignOptions(beam=args.beam, retry_beam=args.retry_beam, num_workers=args.num_workers))

    return run_cli(body, "asr-kd augment-data", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
