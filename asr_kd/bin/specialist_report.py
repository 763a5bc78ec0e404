"""`asr-kd specialist-report`: RESULTS.md of a specialists run (egs/synth/run_specialists.sh stage 5).

Reads <exp-dir>/sets.json, <exp-dir>/spec*/specialist.pt, <exp-dir>/results/acc_{dev,test}.json (from
`asr-kd specialist-accuracy`) and the results.json of two `asr-kd decode-nnet` runs (generalist alone,
generalist + specialists), and writes one markdown file: frame accuracy and WER with and without
specialists, then the breakdown by number of active specialists covering the correct state, with the
paper's JFT figures (Hinton et al. 2015, Tables 3 and 4) beside ours.

Example:
  asr-kd specialist-report --exp-dir exp/specialists --decode-without exp/decode/baseline \\
      --decode-with exp/specialists/decode/specialists --out exp/specialists/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from asr_kd.bin.common import add_trust_pickle_option, run_cli
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_text, read_json

# Hinton et al. 2015, Table 4 (JFT test set): relative change of top-1 accuracy by number of
# specialists covering the correct class; Table 3: 25.0% -> 26.1% (+4.4% relative) with 61 specialists.
PAPER_TABLE4 = {"0": 0.0, "1": 3.4, "2": 7.4, "3": 8.8, "4": 10.5, "5": 11.1, "6": 11.3, "7": 12.8, "8": 13.6,
                "9": 6.6, "10+": 14.1}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-kd specialist-report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", type=Path, required=True, help="the specialists run's directory")
    p.add_argument("--decode-without", type=Path, required=True, help="decode-nnet output dir of the generalist alone")
    p.add_argument("--decode-with", type=Path, required=True, help="decode-nnet output dir with --specialists")
    p.add_argument("--out", type=Path, required=True, help="markdown file to write")
    add_trust_pickle_option(p)
    return p


def _read(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: missing (run the earlier stages first)")
    return read_json(path)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def body(args: argparse.Namespace) -> None:
    from asr_kd.distill.specialists import SpecialistSets
    from asr_kd.models.frame_classifier import read_checkpoint

    exp = args.exp_dir
    sets = SpecialistSets.load(exp / "sets.json")
    acc = {part: _read(exp / "results" / f"acc_{part}.json") for part in ("dev", "test")}
    dec = {"without": _read(args.decode_without / "results.json"), "with": _read(args.decode_with / "results.json")}
    specs = sorted(exp.glob("spec*/specialist.pt"))
    info = [read_checkpoint(p)["specialist"] for p in specs]
    cover = np.bincount(np.minimum(sets.coverage(), 3), minlength=4)
    hw = acc["test"]["hardware"]
    shares = ", ".join(f"{100 * i['natural_fraction']:.1f}%" for i in info)
    corrections = ", ".join(f"{i['dustbin_log_correction']:+.2f}" for i in info)
    lines = [f"# Specialists on {Path(acc['test']['generalist']).parent.name}: generalist + {len(specs)} specialists",
             "",
             f"Generalist `{acc['test']['generalist']}`. {len(sets)} class sets from K-means on the covariance of its "
             f"predictions ({sets.info.get('num_frames', '?')} train frames; set size {sets.info.get('set_size')}, "
             f"0 = disjoint clusters): sizes {sorted(len(s) for s in sets.sets)}; of {sets.num_classes} tied states "
             f"{cover[0]} are in no set, {cover[1]} in one, {cover[2]} in two, {cover[3]} in three or more. "
             f"Each specialist's classes are {shares} of the training frames; dustbin logit corrections {corrections}. "
             f"Active specialists: those holding the generalist's top-{acc['test']['top_n']} class; combination: "
             f"{acc['test']['combine_steps']} EM iterations on KL(p_g||q) + sum KL(p_m||q_m).",
             "",
             "## Frame accuracy and WER",
             "",
             "| system | dev frame acc. | test frame acc. | dev WER | test WER | LM weight | test RTF |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, key, d in (("generalist (baseline)", "accuracy_without", dec["without"]),
                         (f"generalist + {len(specs)} specialists", "accuracy_with", dec["with"])):
        lines.append(f"| {name} | {_pct(acc['dev'][key])} | {_pct(acc['test'][key])} | {d['dev']['wer']:.2f}% | "
                     f"{d['test']['wer']:.2f}% | {d['lmwt']} | {d['test']['rtf']:.3f} |")
    lines += ["", "Paper (JFT, 15,000 image classes, 61 specialists of 300 classes): test accuracy 25.0% -> 26.1% "
              "(+4.4% relative).", "",
              "## By number of active specialists covering the correct state (paper Table 4)", "",
              "| data | covering | frames | acc. without | acc. with | relative change | paper (JFT) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for part in ("dev", "test"):
        for row in acc[part]["breakdown"]:
            paper = PAPER_TABLE4.get(row["covering"])
            lines.append(f"| {part} | {row['covering']} | {row['frames']} | {_pct(row['acc_without'])} | "
                         f"{_pct(row['acc_with'])} | {100 * row['relative_change']:+.2f}% | "
                         f"{'-' if paper is None else f'{paper:+.1f}%'} |")
    lines += ["", f"Hardware: {hw.get('cpu')}, {hw.get('cores')} cores, torch {hw.get('torch')}.",
              f"Frame accuracy: `{acc['test']['command']}`", "",
              f"Decoding with specialists: `{dec['with']['command']}`", "",
              f"Decoding without: `{dec['without']['command']}`", ""]
    atomic_write_text(args.out, "\n".join(lines))
    print(args.out)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_cli(lambda: body(args), "asr-kd specialist-report", trust_pickle_files=args.trust_pickle)


if __name__ == "__main__":
    sys.exit(main())
