"""RESULTS.md of a specialists run (egs/synth/run_specialists.sh stage 5), the paper's JFT figures beside ours.

Reads <exp-dir>/sets.json, <exp-dir>/spec*/specialist.pt, <exp-dir>/results/acc_{dev,test}.json (from
`asr-kd specialist-accuracy`) and the results.json of two hybrid decodings (generalist alone,
generalist + specialists): frame accuracy and WER with and without specialists, then the breakdown by
number of active specialists covering the correct state, beside Hinton et al. 2015, Tables 3 and 4.

The command line is `asr-kd specialist-report` (asr_kd/bin/specialist_report.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from asr_kd.distill.specialists.sets import SpecialistSets
from asr_kd.models.frame_classifier import read_checkpoint
from asr_kd.report.markdown import markdown_table
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import read_json

__all__ = ["PAPER_TABLE4", "specialists_report"]

# Hinton et al. 2015, Table 4 (JFT test set): relative change of top-1 accuracy by number of
# specialists covering the correct class; Table 3: 25.0% -> 26.1% (+4.4% relative) with 61 specialists.
PAPER_TABLE4 = {"0": 0.0, "1": 3.4, "2": 7.4, "3": 8.8, "4": 10.5, "5": 11.1, "6": 11.3, "7": 12.8, "8": 13.6,
                "9": 6.6, "10+": 14.1}


def _required(path: Path) -> dict[str, Any]:
    """A JSON file an earlier stage must have written; InputError when it has not."""
    if not path.is_file():
        raise InputError(f"{path}: missing (run the earlier stages first)")
    return read_json(path)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def specialists_report(exp: Path, decode_without: Path, decode_with: Path) -> str:
    """The whole RESULTS.md of the specialists run in `exp`."""
    sets = SpecialistSets.load(exp / "sets.json")
    acc = {part: _required(exp / "results" / f"acc_{part}.json") for part in ("dev", "test")}
    dec = {"without": _required(decode_without / "results.json"), "with": _required(decode_with / "results.json")}
    specs = sorted(exp.glob("spec*/specialist.pt"))
    info = [read_checkpoint(p)["specialist"] for p in specs]
    cover = np.bincount(np.minimum(sets.coverage(), 3), minlength=4)
    hw = acc["test"]["hardware"]
    shares = ", ".join(f"{100 * i['natural_fraction']:.1f}%" for i in info)
    corrections = ", ".join(f"{i['dustbin_log_correction']:+.2f}" for i in info)
    systems = []
    for name, key, d in (("generalist (baseline)", "accuracy_without", dec["without"]),
                         (f"generalist + {len(specs)} specialists", "accuracy_with", dec["with"])):
        systems.append([name, _pct(acc["dev"][key]), _pct(acc["test"][key]), f"{d['dev']['wer']:.2f}%",
                        f"{d['test']['wer']:.2f}%", str(d["lmwt"]), f"{d['test']['rtf']:.3f}"])
    breakdown = []
    for part in ("dev", "test"):
        for row in acc[part]["breakdown"]:
            paper = PAPER_TABLE4.get(row["covering"])
            breakdown.append([part, row["covering"], str(row["frames"]), _pct(row["acc_without"]),
                              _pct(row["acc_with"]), f"{100 * row['relative_change']:+.2f}%",
                              "-" if paper is None else f"{paper:+.1f}%"])
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
             markdown_table(["system", "dev frame acc.", "test frame acc.", "dev WER", "test WER", "LM weight",
                             "test RTF"], systems, align=["left", *["right"] * 6]).rstrip("\n"),
             "", "Paper (JFT, 15,000 image classes, 61 specialists of 300 classes): test accuracy 25.0% -> 26.1% "
             "(+4.4% relative).", "",
             "## By number of active specialists covering the correct state (paper Table 4)", "",
             markdown_table(["data", "covering", "frames", "acc. without", "acc. with", "relative change",
                             "paper (JFT)"], breakdown, align=["left", "left", *["right"] * 5]).rstrip("\n"),
             "", f"Hardware: {hw.get('cpu')}, {hw.get('cores')} cores, torch {hw.get('torch')}.",
             f"Frame accuracy: `{acc['test']['command']}`", "",
             f"Decoding with specialists: `{dec['with']['command']}`", "",
             f"Decoding without: `{dec['without']['command']}`", ""]
    return "\n".join(lines)
