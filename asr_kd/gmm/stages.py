"""The GMM stages of the recipe (mono -> tri1 -> tri2, alignment of all parts), each resumable."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from lhotse import CutSet, load_manifest

from asr_kd.gmm.ali_io import ali_cuts_path, write_ali_info, write_alignment_cuts
from asr_kd.gmm.align import AlignOptions, align_with_system
from asr_kd.gmm.boundaries import boundary_accuracy, engines_of_utterances, read_phone_ctms, read_speaker_engines
from asr_kd.gmm.features import GmmFeatures, compute_gmm_features
from asr_kd.gmm.lang_files import GmmLang, load_gmm_lang
from asr_kd.gmm.mono import mono_schedule, train_mono
from asr_kd.gmm.system import GmmSystem, TransitionArrays
from asr_kd.gmm.triphone import train_lda_mllt, train_triphone, tri_schedule
from asr_kd.utils.errors import InputError
from asr_kd.utils.fingerprint import GMM_LIBRARIES, python_package_versions
from asr_kd.utils.io import atomic_path, atomic_write_json, read_json

log = logging.getLogger(__name__)

SYSTEMS = ("mono", "tri1", "tri2")


@dataclass
class GmmConfig:
    """Sizes and iteration counts of the three systems (Kaldi's LibriSpeech recipe, scaled down)."""

    mono_iters: int = 25
    mono_gauss: int = 1000
    mono_utts: int | None = 1000
    tri1_iters: int = 20
    tri1_leaves: int = 2000
    tri1_gauss: int = 10000
    tri2_iters: int = 20
    tri2_leaves: int = 2500
    tri2_gauss: int = 15000
    tri2_features: str = "lda-mllt"  # or "deltas"
    cmvn: str = "speaker"
    num_workers: int = 2
    beam: float = 10.0
    retry_beam: float = 40.0

    def align_options(self) -> AlignOptions:
        return AlignOptions(beam=self.beam, retry_beam=self.retry_beam, num_workers=self.num_workers)


def load_cuts(path: str | Path) -> CutSet:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cuts manifest {path} does not exist (run the fbank stage first)")
    return load_manifest(path)


def transcripts_of(cuts: CutSet, lang: GmmLang, what: str) -> dict[str, list[int]]:
    """Cut id -> word ids of its supervisions' text; OOVs map to the OOV word with a counted warning."""
    out = {}
    for cut in cuts:
        text = " ".join(s.text or "" for s in cut.supervisions).strip()
        if not text:
            raise InputError(f"cut {cut.id} has no transcript")
        out[cut.id] = lang.word_ids(text)
    lang.report_oovs(what)
    return out


def save_alignments(alignments: dict[str, np.ndarray], path: Path) -> None:
    """Transition-id alignments (the next stage's input) as an .npz keyed by cut id."""
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **alignments)


def load_alignments(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{path} does not exist (train the previous system first)")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def system_config(sys_dir: str | Path) -> dict:
    """The GmmConfig a system was trained with (from its info.json)."""
    path = Path(sys_dir) / "info.json"
    if not path.is_file():
        raise InputError(f"{path} does not exist: {Path(sys_dir).name} is not completely trained")
    return read_json(path).get("config", {})


def find_speakers_txt(corpus_dir: str | Path) -> Path:
    """SPEAKERS.TXT of a LibriSpeech-layout corpus (at its root or under LibriSpeech/)."""
    for cand in (Path(corpus_dir) / "LibriSpeech" / "SPEAKERS.TXT", Path(corpus_dir) / "SPEAKERS.TXT"):
        if cand.is_file():
            return cand
    raise InputError(f"no SPEAKERS.TXT under {corpus_dir}")


def train_systems(exp_dir: str | Path, lang_dir: str | Path, cuts_path: str | Path,
                  systems: Sequence[str] = SYSTEMS, config: GmmConfig | None = None) -> dict[str, dict]:
    """Train the requested systems in order into `<exp>/gmm/<system>/`; complete ones are skipped."""
    config = config or GmmConfig()
    for s in systems:
        if s not in SYSTEMS:
            raise InputError(f"unknown GMM system {s!r} (choose from {', '.join(SYSTEMS)})")
    gmm_dir = Path(exp_dir) / "gmm"
    if config.tri2_features not in ("lda-mllt", "deltas"):
        raise InputError(f"unknown tri2 features {config.tri2_features!r} (use lda-mllt or deltas)")
    # in pipeline order: each system starts from the previous one's alignment
    todo = [s for s in SYSTEMS if s in systems and not (gmm_dir / s / "info.json").is_file()]
    if not todo:
        log.info("GMM systems %s are complete; skipping", ", ".join(systems))
        return {}
    lang = load_gmm_lang(lang_dir)
    cuts = load_cuts(cuts_path)
    feats = compute_gmm_features(cuts, cmvn=config.cmvn)
    transcripts = transcripts_of(cuts, lang, str(cuts_path))
    log.info("GMM training data: %d utterances, %d frames, %d-dim features", len(transcripts), feats.num_frames(),
             feats.dim)
    summaries = {}
    for name in todo:
        start = time.perf_counter()
        out = gmm_dir / name
        opts = config.align_options()
        if name == "mono":
            schedule = mono_schedule(config.mono_iters, config.mono_gauss)
            system, alis, failed = train_mono(lang, feats, transcripts, schedule, opts, config.mono_utts)
        else:
            prev = "mono" if name == "tri1" else "tri1"
            leaves, gauss, iters = ((config.tri1_leaves, config.tri1_gauss, config.tri1_iters) if name == "tri1"
                                    else (config.tri2_leaves, config.tri2_gauss, config.tri2_iters))
            prev_system = GmmSystem.load(gmm_dir / prev)
            prev_alis = load_alignments(gmm_dir / prev / "ali_train.npz")
            train = (train_lda_mllt if name == "tri2" and config.tri2_features == "lda-mllt" else train_triphone)
            system, alis, failed = train(lang, feats, transcripts, prev_system, prev_alis, leaves,
                                         tri_schedule(iters, gauss), opts, name=name)
        system.save(out)
        save_alignments(alis, out / "ali_train.npz")
        summary = {"system": name, "num_pdfs": system.transition_model.num_pdfs, "num_gauss": system.am.num_gauss,
                   "num_utterances": len(transcripts), "num_aligned": len(alis), "failed": sorted(failed),
                   "seconds": round(time.perf_counter() - start, 1), "config": asdict(config),
                   "libraries": python_package_versions(GMM_LIBRARIES)}
        atomic_write_json(out / "info.json", summary)  # last: marks the system complete
        log.info("%s: %d pdfs, %d Gaussians, %d/%d utterances aligned, %.0f s", name, summary["num_pdfs"],
                 summary["num_gauss"], len(alis), len(transcripts), summary["seconds"])
        summaries[name] = summary
    return summaries


def align_parts(exp_dir: str | Path, lang_dir: str | Path, system_name: str, parts: Sequence[str],
                fbank_dir: str | Path | None = None, config: GmmConfig | None = None,
                corpus_dir: str | Path | None = None, optional_parts: Sequence[str] = ()) -> dict:
    """Align every part with `<exp>/gmm/<system>` and write pdf-id cuts + info.json under its `ali/`.

    With `corpus_dir`, phone start times are also scored against the synthesizer's `*.phones.ctm`
    (share within 20 ms, per TTS engine) into info.json's "boundary_accuracy". `optional_parts` are
    aligned where they can be: one whose cuts lack transcripts, or of which no cut aligns, is skipped
    with a log line and listed with the reason in info.json's "unaligned" (it has no alignment cuts).
    Parts that info.json already records are not aligned again; the new ones are added to it.
    """
    config = config or GmmConfig()
    exp_dir = Path(exp_dir)
    sys_dir = exp_dir / "gmm" / system_name
    if not GmmSystem.exists(sys_dir):
        raise InputError(f"{sys_dir} has no trained system (tree + final.mdl); train it first")
    fbank_dir = Path(fbank_dir) if fbank_dir else exp_dir / "data" / "fbank"
    ali_dir = sys_dir / "ali"
    info_path = ali_dir / "info.json"
    previous = read_json(info_path) if info_path.is_file() else None
    # Alignments made before the system was (re)trained are not kept.
    if previous is not None and (previous.get("system") != system_name
                                 or (sys_dir / "final.mdl").stat().st_mtime_ns > info_path.stat().st_mtime_ns):
        previous = None

    def recorded(part: str) -> bool:
        aligned = part in previous.get("failed_by_part", {}) and ali_cuts_path(ali_dir, part).is_file()
        return aligned or (part in optional_parts and part in previous.get("unaligned", {}))

    todo = [p for p in dict.fromkeys([*parts, *optional_parts]) if previous is None or not recorded(p)]
    if not todo:
        log.info("%s exists; skipping", ali_dir)
        return {}
    if previous is not None:
        log.info("%s has the other parts; aligning %s", ali_dir, ", ".join(todo))
    system = GmmSystem.load(sys_dir)
    cmvn = system_config(sys_dir).get("cmvn", config.cmvn)  # features must be made as in training
    lang = load_gmm_lang(lang_dir)
    arrays = TransitionArrays.from_model(system.transition_model)
    old = previous or {}
    failed_by_part, counts = dict(old.get("failed_by_part", {})), dict(old.get("parts", {}))
    accuracy, unaligned = dict(old.get("boundary_accuracy", {})), dict(old.get("unaligned", {}))
    references = read_phone_ctms(corpus_dir) if corpus_dir else {}
    engines = read_speaker_engines(find_speakers_txt(corpus_dir)) if corpus_dir else {}
    for part in todo:
        cuts = load_cuts(fbank_dir / f"cuts_{part}.jsonl.gz")
        try:
            transcripts = transcripts_of(cuts, lang, f"{part} transcripts")
        except InputError as err:
            if part not in optional_parts:
                raise
            unaligned[part] = str(err)
            log.warning("%s: not aligned (%s): it has no frame bank and no frame accuracy", part, err)
            continue
        feats: GmmFeatures = compute_gmm_features(cuts, cmvn=cmvn, transform=system.transform)
        result = align_with_system(system, lang, feats.feats, transcripts, config.align_options(),
                                   f"{system_name} alignment of {part}")
        if not result.alignments and part in optional_parts:
            unaligned[part] = f"none of its {len(transcripts)} cuts aligned"
            log.warning("%s: not aligned (%s): it has no frame bank and no frame accuracy", part, unaligned[part])
            continue
        pdf_ids = {u: arrays.pdf[a] for u, a in result.alignments.items()}
        write_alignment_cuts(cuts, pdf_ids, ali_dir, part)
        unaligned.pop(part, None)
        failed_by_part[part] = result.failed
        counts[part] = {"cuts": len(transcripts), "aligned": len(result.alignments),
                        "loglike_per_frame": round(result.loglike_per_frame(), 3)}
        log.info("%s: %d/%d cuts aligned, log-likelihood/frame %.2f", part, len(result.alignments),
                 len(transcripts), result.loglike_per_frame())
        if references:
            utt_of = {c.id: c.supervisions[0].id for c in cuts}
            by_utt = {utt_of[c]: a for c, a in result.alignments.items()}
            accuracy[part] = boundary_accuracy(by_utt, arrays, lang.id_to_phone, references,
                                               engines_of_utterances(by_utt, engines))
            log.info("%s: phone starts within 20 ms of the truth: %s", part,
                     ", ".join(f"{e} {v['within']:.1%} ({v['boundaries']})" for e, v in sorted(accuracy[part].items())))
    extra: dict = {"parts": counts}
    if accuracy:
        extra["boundary_accuracy"] = accuracy
    if unaligned:
        extra["unaligned"] = unaligned
    write_ali_info(ali_dir, system.transition_model.num_pdfs, system_name, failed_by_part, extra)
    return counts
