"""`asr-kd decode-gmm`: decode corpus parts with a GMM system: HCLG (built if missing), LM-weight sweep, WER and RTF.

Example:
  python -m asr_kd.bin.decode_gmm --exp-dir exp --system tri2 --lang-test-dir exp/lang_test \\
      --parts dev-clean test-clean test-other --lm-weights 10 12 14
builds exp/gmm/tri2/graph/HCLG.fst when absent, then decodes as `asr-kd decode-nnet` does, into the
same layout under exp/gmm/tri2/decode (--out-dir): as Kaldi's score.sh is used for test sets, the
first part (dev) is decoded at every --lm-weights value, the weight with the fewest dev errors is
chosen (ties: the smaller) and the later parts are decoded at it only (--every-weight decodes every
part at every weight; --word-ins-penalties adds a sweep of word insertion penalties on dev, as
score.sh's --word_ins_penalty). The first later part is named `test`, the others by their part: hypotheses
in {dev,test,<part>}/scoring/<lmwt>.txt (Kaldi `text`), dev's wer_<lmwt> and the summaries in
scoring/, and results.json (WER, LM weight, RTF, data size, command, hardware). A decode whose
results.json exists is not redone (--overwrite).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_search_options, add_trust_pickle_option, config_from_args, run_cli
from asr_kd.decode.gmm import GmmDecodeConfig, decode_gmm
from asr_kd.decode.hybrid import SearchConfig
from asr_kd.gmm.stages import SYSTEMS
from asr_kd.utils import setup_logging


def get_parser() -> argparse.ArgumentParser:
    d = GmmDecodeConfig(exp_dir=Path())
    p = argparse.ArgumentParser(prog="asr-kd decode-gmm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True, help="experiment directory")
    p.add_argument("--system", default=d.system, choices=SYSTEMS, help="which system under <exp>/gmm/ decodes")
    p.add_argument("--lang-test-dir", type=Path, default=None,
                   help="lang directory with G.fst, for building the graph (default <exp>/lang_test)")
    p.add_argument("--graph-dir", type=Path, default=None,
                   help="where HCLG.fst is/goes (default <exp>/gmm/<system>/graph)")
    p.add_argument("--parts", nargs="+", default=list(d.parts),
                   help="parts to decode, dev first (it chooses the LM weight), e.g. --parts dev-clean test-clean")
    p.add_argument("--fbank-dir", type=Path, default=None,
                   help="where cuts_<part>.jsonl.gz are (default <exp>/data/fbank)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where hypotheses, WER reports and results.json go (default <exp>/gmm/<system>/decode)")
    add_search_options(p, d.search)
    add_trust_pickle_option(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]

    def body() -> None:
        setup_logging()
        config = config_from_args(GmmDecodeConfig, args)
        config.search = config_from_args(SearchConfig, args)
        config.command = "asr-kd decode-gmm " + shlex.join(argv)
        decode_gmm(config)

    return run_cli(body, "asr-kd decode-gmm", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
