"""Build the decoding graph HCLG.fst for a GMM system (Kaldi's utils/mkgraph.sh).

Reads <model-dir>/tree and <model-dir>/final.mdl (from the GMM stage) and a lang directory with
G.fst (from train-lm); writes <graph-dir>/HCLG.fst, words.txt, phones.txt and info.json (sizes
of LG, CLG, H and HCLG, and the seconds each step took).

Example:
  asr-kd make-graph --lang-dir exp/lang_test --model-dir exp/gmm/tri2 --graph-dir exp/gmm/tri2/graph
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.utils.errors import InputError
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-kd make-graph", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lang-dir", type=Path, required=True, help="lang directory with G.fst (lang_test)")
    parser.add_argument("--model-dir", type=Path, required=True, help="directory with tree and final.mdl")
    parser.add_argument("--graph-dir", type=Path, help="output directory (default: <model-dir>/graph)")
    parser.add_argument("--self-loop-scale", type=float, default=0.1,
                        help="scale on HMM self-loop log-probabilities (Kaldi's default 0.1)")
    parser.add_argument("--transition-scale", type=float, default=1.0,
                        help="scale on the other HMM transition log-probabilities")
    add_trust_pickle_option(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()

    def body() -> None:
        from asr_kd.gmm.graph import make_hclg

        if not (args.lang_dir / "G.fst").is_file():
            raise InputError(f"{args.lang_dir}/G.fst not found: --lang-dir must be a lang_test dir (run train-lm)")
        make_hclg(
            args.lang_dir, args.model_dir / "tree", args.model_dir / "final.mdl",
            args.graph_dir or args.model_dir / "graph",
            self_loop_scale=args.self_loop_scale, transition_scale=args.transition_scale,
        )

    return run_cli(body, "asr-kd make-graph", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
