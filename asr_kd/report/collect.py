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

from asr_kd.score.wer import best_lm_weight
from asr_kd.utils.fingerprint import Digest, experiment_fingerprint

log = logging.getLogger(__name__)

NNET_SYSTEMS = ("baseline", "student", "baseline_subset", "student_subset", "student_subset_ensemble")
DEV, TEST = "dev-clean", "test-clean"
# A later test part, named by its corpus part; in the synthesized corpus, the never-heard voices.
NEVER_HEARD = "test-other"


def decode_dir(exp: Path, system: str) -> Path:
    """Where the recipe decodes `system`: the GMM ("gmm") under gmm/tri2/, a network (or its deployed copy,
    `<system>_onnx`) under decode/."""
    return exp / "gmm" / "tri2" / "decode" if system == "gmm" else exp / "decode" / system


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


def search_choice(results: dict) -> str | None:
    """The LM weight a decode's results.json chose on dev, with its word insertion penalty when not 0 ("9, wip 0.5")."""
    if results.get("lmwt") is None:
        return None
    penalty = results.get("word_ins_penalty", "0")
    return str(results["lmwt"]) if float(penalty) == 0 else f"{results['lmwt']}, wip {penalty}"


def gmm_wer(decode_dir: Path) -> dict | None:
    """GMM WER (%) from `asr-kd decode-gmm`'s results.json: the LM weight dev chose, applied to test and to every
    later test part: keys `lmwt`, `search_choice`, `dev_wer_by_lmwt`, `test_parts`, `<name>_wer`, `<name>_rtf`."""
    res = read_json_or_none(decode_dir / "results.json") or _earlier_gmm_results(decode_dir.parent)
    if res is None:
        return None
    out = {"lmwt": res["lmwt"], "search_choice": search_choice(res), "dev_wer_by_lmwt": res["dev_wer_by_lmwt"],
           "test_parts": res.get("test_parts", [])}
    for name in ("dev", "test", *out["test_parts"]):
        out[f"{name}_wer"], out[f"{name}_rtf"] = (res.get(name) or {}).get("wer"), (res.get(name) or {}).get("rtf")
    return out


def _earlier_gmm_results(sys_dir: Path) -> dict | None:
    """results.json's fields from a GMM decode in the earlier layout (decode_<part>/wer.json, WER as a fraction)."""
    old = {d.name.removeprefix("decode_"): read_json_or_none(d / "wer.json") for d in sorted(sys_dir.glob("decode_*"))}
    by_part = {"test" if p == TEST else "dev" if p == DEV else p: (r or {}).get("by_lmwt", {}) for p, r in old.items()}
    if not by_part.get("dev"):
        return None
    best = best_lm_weight({w: r["wer"] for w, r in by_part["dev"].items()})
    return {"lmwt": best, "dev_wer_by_lmwt": {w: 100 * r["wer"] for w, r in by_part["dev"].items()},
            "test_parts": [p for p in by_part if p != "dev"],
            **{p: {"wer": 100 * r[best]["wer"], "rtf": r[best].get("rtf")} for p, r in by_part.items() if best in r}}


def training_data(params: dict) -> dict:
    """The bank a trainer's params.json names and what it holds: frames (labelled ones too), utterances, the
    perturbed copies in it (asr-kd augment-data's summary, None for none), and the epochs' size and group shares."""
    out = {"train_bank": params.get("train_bank") or f"{params.get('frame_bank')}/train",
           "frames_per_epoch": params.get("epoch_frames"), "mix_shares": params.get("mix_shares")}
    bank = read_json_or_none(Path(out["train_bank"]) / "manifest.json")
    if bank is not None:
        out.update(num_frames=bank["num_frames"], num_labelled_frames=bank.get("num_labelled_frames", bank["num_frames"]),
                   num_utterances=bank.get("num_utterances"), copies=_bank_copies(bank.get("source_cuts")))
    return out


def network_training(net_dir: Path) -> dict | None:
    """`training_data` of the network in `net_dir`, its updates per epoch and its input lifter (0: none; the baseline:
    what every full-data network trained on)."""
    params = read_json_or_none(net_dir / "params.json")
    return None if params is None else {**training_data(params), "steps_per_epoch": params.get("steps_per_epoch"),
                                        "input_lifter": params.get("input_lifter") or 0}


def student_teaching(student_dir: Path) -> dict | None:
    """How a student was taught, from its params.json: the store's record (stored top-k) or the online members."""
    params = read_json_or_none(student_dir / "params.json")
    if params is None:
        return None
    out = {**training_data(params), "steps_per_epoch": params.get("steps_per_epoch"),
           "num_epochs": params.get("num_epochs"), "batch_size": params.get("batch_size"),
           "temperature": params.get("temperature"), "hard_weight": params.get("hard_weight"),
           "lr_schedule": params.get("lr_schedule"), "newbob_start_gain": params.get("newbob_start_gain"),
           "newbob_end_gain": params.get("newbob_end_gain")}
    if params.get("soft_targets_dir"):
        manifest = read_json_or_none(Path(params["soft_targets_dir"]) / "manifest.json") or {}
        out.update(kind="stored", store=params["soft_targets_dir"], k=manifest.get("k"),
                   num_classes=manifest.get("num_classes"), tail=manifest.get("tail", "renormalise"),
                   mean_kept_mass=manifest.get("mean_topk_mass"), fidelity=manifest.get("fidelity"),
                   num_members=(manifest.get("teacher") or {}).get("num_members"))
    else:
        out.update(kind="online", num_members=len(params.get("teacher_checkpoints") or []))
    return out


def _bank_copies(source_cuts: str | None) -> dict | None:
    """What `asr-kd augment-data` wrote beside a bank's cuts_<name>.jsonl.gz (<name>.json), None for other cuts."""
    if not source_cuts or not Path(source_cuts).name.startswith("cuts_"):
        return None
    name = Path(source_cuts).name.removeprefix("cuts_").removesuffix(".jsonl.gz")
    summary = read_json_or_none(Path(source_cuts).parent / f"{name}.json")
    return summary if summary and "perturbations" in summary else None


def count_params(checkpoint: Path) -> int | None:
    """Trainable parameters of a FrameClassifier checkpoint (buffers such as priors excluded)."""
    if not checkpoint.is_file():
        return None
    from asr_kd.models import FrameClassifier  # here, not at the top: the report and `asr-kd status` need torch only for this

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
    # Training frames in one epoch of each network of `curves` (params.json's epoch_frames; None when unknown).
    epoch_frames: dict[str, int | None] = field(default_factory=dict)
    params: dict[str, int | None] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    corpus: dict | None = None
    input_norm: str | None = None
    teaching: dict | None = None
    subset_teaching: dict | None = None  # the soft-target subset student's (Table 5), as `teaching`
    # What the baseline (so every full-data network) trained on: `network_training`.
    net_training: dict | None = None
    # The parts decoded at dev's LM weight beside dev and test, by their corpus names: the other test parts
    # (NEVER_HEARD), then the other dev parts; frame-scored where they aligned.
    more_tests: list[str] = field(default_factory=list)
    # True when the ensemble's first member is the baseline itself (recipes/run.sh links nnet/member1 to it).
    baseline_in_ensemble: bool = False
    # Each stage output's digest (asr_kd.utils.fingerprint) and the GMM's library versions, for comparing two runs.
    fingerprint: dict[str, Digest | None] = field(default_factory=dict)
    gmm_libraries: dict[str, str | None] | None = None

    def acc(self, system: str, part: str) -> float | None:
        """Frame accuracy (%) of a system on train, dev, test or one of `more_tests`, None when not measured."""
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
    res.decode = {s: read_json_or_none(decode_dir(exp, s) / "results.json") for s in systems}
    res.gmm = gmm_wer(decode_dir(exp, "gmm"))
    # Every decode's results list the parts decoded at dev's weight: `test`, then the other test and dev parts.
    names = [n for r in (*res.decode.values(), res.gmm) if r for n in r.get("test_parts", ()) if n != "test"]
    res.more_tests = list(dict.fromkeys(names))
    res.accuracy = {s: {p: read_json_or_none(exp / "results" / f"acc_{s}_{p}.json")
                        for p in ("train", "dev", "test", *res.more_tests)} for s in systems}
    return res


def collect_results(exp_dir: str | Path, num_members: int, fingerprint: bool = True) -> Results:
    """Read every stage's outputs under `exp_dir` (see recipes/run.sh for where each one is); `fingerprint`:
    also hash the stage outputs (Results.fingerprint), which reads every file of the corpus, features and GMM."""
    exp = Path(exp_dir)
    res = collect_scores(exp, num_members)
    res.lm = read_json_or_none(exp / "lm" / "info.json")
    res.alignment = read_json_or_none(exp / "gmm" / "tri2" / "ali" / "info.json")
    res.banks = {name: read_json_or_none(exp / "bank" / name / "manifest.json")
                 for name in ("train", "train_copies", "dev", "test", *res.more_tests, "transfer")}
    cmvn = read_json_or_none(exp / "bank" / "cmvn.json")
    res.input_norm = None if cmvn is None else cmvn.get("mode", "global")
    res.teaching = student_teaching(exp / "nnet" / "student")
    res.subset_teaching = student_teaching(exp / "nnet" / "student_subset")
    res.net_training = network_training(exp / "nnet" / "baseline")
    nnet = exp / "nnet"
    members = [f"member{m}" for m in range(1, num_members + 1)]
    res.baseline_in_ensemble = (nnet / "baseline").is_dir() and (nnet / "member1").resolve() == (nnet / "baseline").resolve()
    res.curves = {name: read_metrics(nnet / name / "metrics.csv") for name in (*NNET_SYSTEMS, *members)}
    res.epoch_frames = {name: (read_json_or_none(nnet / name / "params.json") or {}).get("epoch_frames")
                        for name in res.curves}
    res.params = {s: count_params(nnet / s / "final.pt") for s in NNET_SYSTEMS}
    member_params = [count_params(nnet / m / "final.pt") for m in members]
    res.params["ensemble"] = sum(member_params) if member_params and None not in member_params else None
    res.commands = read_commands(exp / "results" / "commands.tsv")
    corpus = corpus_dir(exp)
    res.corpus = read_json_or_none(corpus / "summary.json")
    if fingerprint:
        res.fingerprint = experiment_fingerprint(exp, corpus)
    res.gmm_libraries = (read_json_or_none(exp / "gmm" / "tri2" / "info.json") or {}).get("libraries")
    return res


def corpus_dir(exp: Path) -> Path:
    """The corpus an experiment was prepared from: <exp>/corpus when the recipe synthesized it, else the
    directory above LibriSpeech/ of the audio its dev manifest (or another part's) names (a --corpus-dir)."""
    if (exp / "corpus").is_dir():
        return exp / "corpus"
    manifests = exp / "data" / "manifests"
    manifest = manifests / f"librispeech_recordings_{DEV}.jsonl.gz"
    if not manifest.is_file():  # dev is another part (--dev-parts)
        manifest = next(iter(sorted(manifests.glob("librispeech_recordings_*.jsonl.gz"))), manifest)
    if manifest.is_file():
        with gzip.open(manifest, "rt", encoding="utf-8") as f:
            first = json.loads(f.readline() or "{}")
        sources = first.get("sources") or [{}]
        audio = Path(sources[0].get("source") or "")
        if len(audio.parents) > 4:
            return audio.parents[4]  # <corpus>/LibriSpeech/<part>/<spk>/<chapter>/<utt>.flac
    return exp / "corpus"
