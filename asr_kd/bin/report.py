"""`asr-kd report`: write <exp-dir>/RESULTS.md (paper Table 1 and Table 5 forms) and its plots.

Reads what the recipe's stages left under the experiment directory (lm/info.json, gmm/tri2/,
bank/*/manifest.json, nnet/*/metrics.csv, decode/*/results.json and scoring/per_utt_*.txt,
results/acc_*.json, results/commands.tsv); a stage that has not run shows as '–'. Plots go to
<exp-dir>/plots/: dev accuracy per epoch, dev WER per LM weight, WER by part with bootstrap intervals.

Example:
  asr-kd report --exp-dir exp/mini --num-members 4
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_text
from asr_kd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True, help="the recipe's experiment directory")
    p.add_argument("--num-members", type=int, default=10, help="ensemble size (which member*/ dirs to read)")
    p.add_argument("--output", type=Path, help="markdown file to write (default <exp-dir>/RESULTS.md)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--seed-exp-dirs", type=Path, nargs="*", default=[],
                   help="experiment dirs of other network seeds of this experiment (egs/synth/run_seeds.sh): "
                        "Table 1 and 5 then show means over all runs, and a section the spread")
    p.add_argument("--seeds", type=int, nargs="*", help="the network seed of --exp-dir and of each --seed-exp-dirs "
                   "(default: 1, 2, ...)")
    add_trust_pickle_option(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    command = "asr-kd report " + shlex.join(str(a) for a in (sys.argv[1:] if argv is None else argv))

    def body() -> None:
        from asr_kd.report.collect import collect_results
        from asr_kd.report.plots import plot_dev_accuracy, plot_wer_by_part, plot_wer_vs_lmwt
        from asr_kd.report.tables import render_results

        setup_logging()
        if not args.exp_dir.is_dir():
            raise InputError(f"{args.exp_dir}: experiment directory not found")
        if args.num_members < 1:
            raise InputError(f"--num-members must be at least 1, got {args.num_members}")
        res = collect_results(args.exp_dir, args.num_members)
        for d in args.seed_exp_dirs:
            if not d.is_dir():
                raise InputError(f"{d}: seed experiment directory not found")
        # Only the first run's provenance is shown; the seed runs link its corpus, features, GMM and banks.
        seed_runs = [collect_results(d, args.num_members, fingerprint=False) for d in args.seed_exp_dirs]
        seeds = args.seeds or list(range(1, len(seed_runs) + 2))
        if len(seeds) != len(seed_runs) + 1:
            raise InputError(f"--seeds: {len(seeds)} seeds for {len(seed_runs) + 1} experiment dirs")
        plots = []
        if not args.no_plots:
            made = [plot_dev_accuracy(res, args.exp_dir / "plots" / "dev_accuracy.png"),
                    plot_wer_vs_lmwt(res, args.exp_dir / "plots" / "wer_vs_lmwt.png"),
                    plot_wer_by_part([res, *seed_runs], args.exp_dir / "plots" / "wer_by_part.png")]
            plots = [p.relative_to(args.exp_dir) for p in made if p is not None]
        output = args.output or args.exp_dir / "RESULTS.md"
        atomic_write_text(output, render_results(res, plots, command, seed_runs, seeds))
        print(f"wrote {output}")

    return run_cli(body, "asr-kd report", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
