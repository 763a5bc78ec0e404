"""Decode corpus parts with a GMM system: HCLG (built if missing), LM-weight sweep, WER and RTF.

Example:
  python -m asr_kd.bin.decode_gmm --exp-dir exp --system tri2 --lang-test-dir exp/lang_test
builds exp/gmm/tri2/graph/HCLG.fst when absent, then writes exp/gmm/tri2/decode_<part>/
hyp_lmwt<w>.txt and wer.json (WER per LM weight, the best one, real-time factor). As Kaldi's
score.sh is used for test sets, the first part (dev) is decoded at every --lm-weights value and
the later parts only at the weight best on it (--every-weight decodes every part at every weight).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.decode.decoder import DecodeOptions, load_graph
from asr_kd.decode.sweep import sweep_lm_weights
from asr_kd.gmm.features import compute_gmm_features
from asr_kd.gmm.stages import SYSTEMS, load_cuts, system_config
from asr_kd.gmm.system import GmmSystem
from asr_kd.lang.phones import read_symbol_table
from asr_kd.score.wer import parse_lm_weights
from asr_kd.utils import setup_logging


def get_parser() -> argparse.ArgumentParser:
    d = DecodeOptions()
    p = argparse.ArgumentParser(prog="asr-kd decode-gmm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True, help="experiment directory")
    p.add_argument("--system", default="tri2", choices=SYSTEMS, help="which system under <exp>/gmm/ decodes")
    p.add_argument("--lang-test-dir", type=Path, default=None,
                   help="lang directory with G.fst, for building the graph (default <exp>/lang_test)")
    p.add_argument("--graph-dir", type=Path, default=None,
                   help="where HCLG.fst is/goes (default <exp>/gmm/<system>/graph)")
    p.add_argument("--parts", default="dev-clean,test-clean", help="comma-separated parts to decode")
    p.add_argument("--fbank-dir", type=Path, default=None,
                   help="where cuts_<part>.jsonl.gz are (default <exp>/data/fbank)")
    p.add_argument("--lm-weights", default="10", help="comma-separated LM weights (acoustic scale = 1/weight)")
    p.add_argument("--extend-lm-weights", type=int, default=0,
                   help="when the first part's best weight is at an edge of --lm-weights, try up to this many "
                        "more weights beyond it, one spacing apart")
    p.add_argument("--decoder", choices=("lattice-faster", "faster"), default=d.decoder, help="Kaldi decoder")
    p.add_argument("--beam", type=float, default=d.beam, help="search beam")
    p.add_argument("--max-active", type=int, default=d.max_active, help="most active states per frame")
    p.add_argument("--lattice-beam", type=float, default=d.lattice_beam, help="lattice pruning beam (lattice-faster)")
    p.add_argument("--num-workers", type=int, default=d.num_workers, help="decoding processes")
    p.add_argument("--every-weight", action="store_true",
                   help="decode every part at every LM weight (default: parts after the first at its best weight)")
    add_trust_pickle_option(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> None:
        from asr_kd.lang.graph import make_hclg

        lm_weights = [float(w) for w in parse_lm_weights(args.lm_weights, args.extend_lm_weights)]
        extend = args.extend_lm_weights
        setup_logging(args.exp_dir / "gmm" / "log" / f"decode_{args.system}.log")
        sys_dir = args.exp_dir / "gmm" / args.system
        graph_dir = args.graph_dir or sys_dir / "graph"
        if not (graph_dir / "HCLG.fst").is_file():
            lang_test = args.lang_test_dir or args.exp_dir / "lang_test"
            make_hclg(lang_test, sys_dir / "tree", sys_dir / "final.mdl", graph_dir)
        system = GmmSystem.load(sys_dir)
        cmvn = system_config(sys_dir).get("cmvn", "speaker")
        graph = load_graph(graph_dir / "HCLG.fst")
        id_to_word = {i: w for w, i in read_symbol_table(graph_dir / "words.txt").items()}
        opts = DecodeOptions(beam=args.beam, max_active=args.max_active, lattice_beam=args.lattice_beam,
                             decoder=args.decoder, num_workers=args.num_workers)
        fbank_dir = args.fbank_dir or args.exp_dir / "data" / "fbank"
        for part in [p.strip() for p in args.parts.split(",") if p.strip()]:
            cuts = load_cuts(fbank_dir / f"cuts_{part}.jsonl.gz")
            feats = compute_gmm_features(cuts, cmvn=cmvn, transform=system.transform)
            refs = {c.id: " ".join(s.text or "" for s in c.supervisions) for c in cuts}
            summary = sweep_lm_weights(graph, system.transition_model, feats.feats, refs, id_to_word, lm_weights,
                                       opts, sys_dir / f"decode_{part}", am=system.am, extend=extend)
            extend = 0  # the LM weight is chosen on the first part; later parts use it (or the same sweep)
            if not args.every_weight:
                lm_weights = [summary["best_lmwt"]]
            else:
                lm_weights = sorted(float(w) for w in summary["by_lmwt"])

    return run_cli(body, "asr-kd decode-gmm", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
