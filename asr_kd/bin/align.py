"""Force-align corpus parts with a trained GMM system: pdf-id per frame as lhotse cuts.

Example:
  python -m asr_kd.bin.align --exp-dir exp --lang-dir exp/lang --system tri2 --corpus-dir corpus
writes exp/gmm/tri2/ali/cuts_<part>.jsonl.gz (the fbank cuts + a `pdf_ids` TemporalArray, read with
`cut.load_custom("pdf_ids")`) and exp/gmm/tri2/ali/info.json (num_pdfs, system, failed cut ids;
with --corpus-dir also the share of phone starts within 20 ms of the synthesizer's true times).
Utterances that cannot be aligned are left out and listed. Parts that info.json already records are
not aligned again: a rerun with more --parts / --optional-parts aligns only the new ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_alignment_options, add_trust_pickle_option, run_cli
from asr_kd.gmm.stages import SYSTEMS, GmmConfig, align_parts
from asr_kd.utils import setup_logging

DEFAULT_PARTS = ["train-clean-100", "dev-clean", "test-clean"]


def get_parser() -> argparse.ArgumentParser:
    d = GmmConfig()
    p = argparse.ArgumentParser(prog="asr-kd align", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True, help="experiment directory")
    p.add_argument("--lang-dir", type=Path, required=True, help="the lang directory the system was trained with")
    p.add_argument("--system", default="tri2", choices=SYSTEMS, help="which system under <exp>/gmm/ aligns")
    p.add_argument("--parts", nargs="+", default=DEFAULT_PARTS, help="parts to align")
    p.add_argument("--optional-parts", nargs="+", default=[],
                   help="parts aligned where their transcripts allow: one without transcripts, or of which no "
                        "utterance aligns, is skipped with a log line (listed in info.json's \"unaligned\")")
    p.add_argument("--fbank-dir", type=Path, default=None,
                   help="where cuts_<part>.jsonl.gz are (default <exp>/data/fbank)")
    p.add_argument("--corpus-dir", type=Path, default=None,
                   help="corpus with *.phones.ctm and SPEAKERS.TXT: also score phone boundaries per TTS engine")
    add_alignment_options(p, d)
    add_trust_pickle_option(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        setup_logging(args.exp_dir / "gmm" / "log" / f"align_{args.system}.log")
        config = GmmConfig(beam=args.beam, retry_beam=args.retry_beam, num_workers=args.num_workers)
        align_parts(args.exp_dir, args.lang_dir, args.system, args.parts, args.fbank_dir, config, args.corpus_dir,
                    args.optional_parts)

    return run_cli(body, "asr-kd align", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
