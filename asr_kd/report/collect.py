"""Gather what the recipe's stages wrote under an experiment directory into one `Results` record.

Every reader returns None for a stage that was not run, so a partial experiment still reports.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NNET_SYSTEMS = ("baseline", "student", "baseline_subset", "student_subset", "student_subset_ensemble")
DEV, TEST = "dev-clean", "test-clean"
# A test part that is only decoded, named by its corpus part; in the synthesized corpus, the never-heard voices.
NEVER_HEARD = "test-other"


def read_json_or_none(path: Path) -> Any:
    """A JSON file's content, None when absent or unreadable (a stage not run or cut short)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        log.warning("%s: unreadable (%s); reported as missing", path, err)
        return None


def read_commands(path: Path) -> dict[str, str]:
    """`name<TAB>command` lines written by run.sh's `step`; the last run of a name wins."""
    commands: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, _, command = line.partition("\t")
            if command:
                commands[name] = command
    return commands


def read_metrics(path: Path) -> list[tuple[int, float]]:
    """(epoch, dev accuracy) of the end-of-epoch rows of a trainer's metrics.csv."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("dev_acc"):
                rows.append((int(row["epoch"]), float(row["dev_acc"])))
    return rows


def gmm_wer(decode_dir_dev: Path, decode_dir_test: Path, more_tests: dict[str, Path] | None = None) -> dict | None:
    """GMM WER (%) the Kaldi way: LM weight with the lowest dev WER, applied to test and to each of
    `more_tests` (name -> decode dir): keys `<name>_wer`, `<name>_rtf`."""
    dev = read_json_or_none(decode_dir_dev / "wer.json")
    if dev is None:
        return None
    by_lmwt = dev["by_lmwt"]
    best = min(by_lmwt, key=lambda w: (by_lmwt[w]["wer"], float(w)))
    out = {"lmwt": best, "dev_wer": 100 * by_lmwt[best]["wer"],
           "dev_wer_by_lmwt": {w: 100 * r["wer"] for w, r in by_lmwt.items()},
           "dev_rtf": by_lmwt[best].get("rtf")}
    for name, decode_dir in {"test": decode_dir_test, **(more_tests or {})}.items():
        test = read_json_or_none(decode_dir / "wer.json")
        out[f"{name}_wer"] = out[f"{name}_rtf"] = None
        if test is not None and best in test["by_lmwt"]:
            out[f"{name}_wer"] = 100 * test["by_lmwt"][best]["wer"]
            out[f"{name}_rtf"] = test["by_lmwt"][best].get("rtf")
    return out


def student_teaching(student_dir: Path) -> dict | None:
    """How a student was taught, from its params.json: the store's record (stored top-k) or the online members."""
    params = read_json_or_none(student_dir / "params.json")
    if params is None:
        return None
    out = {"train_bank": params.get("train_bank") or f"{params.get('frame_bank')}/train",
           "frames_per_epoch": params.get("epoch_frames"), "steps_per_epoch": params.get("steps_per_epoch"),
           "num_epochs": params.get("num_epochs"), "batch_size": params.get("batch_size"),
           "temperature": params.get("temperature"), "hard_weight": params.get("hard_weight")}
    if params.get("soft_targets_dir"):
        manifest = read_json_or_none(Path(params["soft_targets_dir"]) / "manifest.json") or {}
        out.update(kind="stored", store=params["soft_targets_dir"], k=manifest.get("k"),
                   num_classes=manifest.get("num_classes"), tail=manifest.get("tail", "renormalise"),
                   mean_kept_mass=manifest.get("mean_topk_mass"), fidelity=manifest.get("fidelity"),
                   num_members=(manifest.get("teacher") or {}).get("num_members"))
    else:
        out.update(kind="online", num_members=len(params.get("teacher_checkpoints") or []))
    bank = read_json_or_none(Path(out["train_bank"]) / "manifest.json")
    if bank is not None:
        out.update(num_frames=bank["num_frames"], num_labelled_frames=bank.get("num_labelled_frames", bank["num_frames"]))
    return out


def count_params(checkpoint: Path) -> int | None:
    """Trainable parameters of a FrameClassifier checkpoint (buffers such as priors excluded)."""
    if not checkpoint.is_file():
        return None
    from asr_kd.models import FrameClassifier

    model = FrameClassifier.load(checkpoint)
    return sum(p.numel() for p in model.parameters())


@dataclass
class Results:
    """Everything RESULTS.md shows; None where a stage did not run."""

    exp_dir: Path
    num_members: int
    lm: dict | None = None
    alignment: dict | None = None
    gmm: dict | None = None
    banks: dict[str, dict | None] = field(default_factory=dict)
    decode: dict[str, dict | None] = field(default_factory=dict)
    accuracy: dict[str, dict[str, dict | None]] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    params: dict[str, int | None] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    corpus: dict | None = None
    input_norm: str | None = None
    teaching: dict | None = None
    more_tests: list[str] = field(default_factory=list)  # test parts decoded beside dev and test (NEVER_HEARD)

    def acc(self, system: str, part: str) -> float | None:
        """Frame accuracy (%) of a system on train/dev/test, None when not measured."""
        record = self.accuracy.get(system, {}).get(part)
        return None if record is None else 100 * record["accuracy"]

    def wer(self, system: str, part: str) -> float | None:
        """WER (%) of a decoded system on dev, test or one of `more_tests` (GMM included), None when not decoded."""
        if system == "gmm":
            return None if self.gmm is None else self.gmm.get(f"{part}_wer")
        record = self.decode.get(system)
        return None if record is None or part not in record else record[part]["wer"]


def collect_scores(exp_dir: str | Path, num_members: int) -> Results:
    """The WERs and frame accuracies under `exp_dir` alone: what the stages' small JSON files say, quickly."""
    exp = Path(exp_dir)
    res = Results(exp, num_members)
    systems = (*NNET_SYSTEMS, "ensemble")
    res.decode = {s: read_json_or_none(exp / "decode" / s / "results.json") for s in systems}
    tri2 = exp / "gmm" / "tri2"
    # The networks' results list their test parts; the GMM's are its decode_<part> dirs.
    names = [n for r in res.decode.values() if r for n in r.get("test_parts", ()) if n != "test"]
    names += sorted(d.name.removeprefix("decode_") for d in tri2.glob("decode_*") if d.is_dir())
    res.more_tests = [n for n in dict.fromkeys(names) if n not in (DEV, TEST)]
    res.gmm = gmm_wer(tri2 / f"decode_{DEV}", tri2 / f"decode_{TEST}",
                      {name: tri2 / f"decode_{name}" for name in res.more_tests})
    res.accuracy = {s: {p: read_json_or_none(exp / "results" / f"acc_{s}_{p}.json") for p in ("train", "dev", "test")}
                    for s in systems}
    return res


def collect_results(exp_dir: str | Path, num_members: int) -> Results:
    """Read every stage's outputs under `exp_dir` (see recipes/run.sh for where each one is)."""
    exp = Path(exp_dir)
    res = collect_scores(exp, num_members)
    res.lm = read_json_or_none(exp / "lm" / "info.json")
    res.alignment = read_json_or_none(exp / "gmm" / "tri2" / "ali" / "info.json")
    res.banks = {name: read_json_or_none(exp / "bank" / name / "manifest.json")
                 for name in ("train", "dev", "test", "transfer")}
    cmvn = read_json_or_none(exp / "bank" / "cmvn.json")
    res.input_norm = None if cmvn is None else cmvn.get("mode", "global")
    res.teaching = student_teaching(exp / "nnet" / "student")
    nnet = exp / "nnet"
    members = [f"member{m}" for m in range(1, num_members + 1)]
    res.curves = {name: read_metrics(nnet / name / "metrics.csv") for name in (*NNET_SYSTEMS, *members)}
    res.params = {s: count_params(nnet / s / "final.pt") for s in NNET_SYSTEMS}
    member_params = [count_params(nnet / m / "final.pt") for m in members]
    res.params["ensemble"] = sum(member_params) if member_params and None not in member_params else None
    res.commands = read_commands(exp / "results" / "commands.tsv")
    res.corpus = read_json_or_none(corpus_dir(exp) / "summary.json")
    return res


def corpus_dir(exp: Path) -> Path:
    """The corpus an experiment was prepared from: <exp>/corpus when the recipe synthesized it, else the
    directory above LibriSpeech/ of the audio its dev manifest names (a --corpus-dir)."""
    if (exp / "corpus").is_dir():
        return exp / "corpus"
    manifest = exp / "data" / "manifests" / f"librispeech_recordings_{DEV}.jsonl.gz"
    if manifest.is_file():
        with gzip.open(manifest, "rt", encoding="utf-8") as f:
            first = json.loads(f.readline() or "{}")
        sources = first.get("sources") or [{}]
        audio = Path(sources[0].get("source") or "")
        if len(audio.parents) > 4:
            return audio.parents[4]  # <corpus>/LibriSpeech/<part>/<spk>/<chapter>/<utt>.flac
    return exp / "corpus"
