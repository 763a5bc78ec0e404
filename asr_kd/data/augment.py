"""Perturbed copies of a training set through lhotse, as Kaldi's and icefall's recipes make them.

Each perturbation makes one copy of every training cut, with its own fbank features and `pdf_ids`:
  sp<F>       speed perturbation by factor F (`perturb_speed`, sox's `speed`: tempo and pitch), e.g. sp0.9,
              sp1.1 as Kaldi's and icefall's LibriSpeech recipes; the copies are force-aligned anew
  volume      a gain per cut, uniform in `volume` (Kaldi's perturb_data_dir_volume.sh: 0.125-2)
  noise       coloured noise (power ~ 1/f^b, b uniform in 0..2: white to brown) mixed with `cut.mix`
              at an SNR uniform in `noise_snr`
  babble      3-7 other speakers' training utterances summed, mixed at an SNR uniform in `babble_snr`
              (Kaldi's MUSAN babble settings); never the target's own speaker
  reverb      `reverb_rir` with a room impulse response: simulated here (diffuse-field model: a direct
              path and exponentially decaying noise, T60 uniform in `t60`, direct-to-reverberant ratio
              uniform in `drr_db`), or drawn from a given RIR recording set
  narrowband  the channel of a telephone: resampled to 8 kHz and back (two lhotse `resample` steps;
              lhotse's short filter leaves a transition band to ~4.4 kHz, the bands above are 35+ dB down)
  revoice     new voices: each training speaker's sentences spoken again by one espeak-ng voice no corpus
              split uses (`asr_kd.data.voices.revoice_catalog`: named variants on espeak-ng's default
              synthesizer, never the never-heard set's Klatt one; rate and pitch drawn too); the copies
              are force-aligned anew. revoice2, revoice3, ... are further copies, each in voices no
              other revoice copy of the seed has
Noise, babble and impulse responses are made offline, once, into `<out_dir>/noise/` (FLAC).
lhotse's own simulated impulse responses need torchaudio, which has no build beside the CPU torch
here (DESIGN.md), hence the simulation in this module.

Speed and revoice change the frame count; every other copy takes the original's alignment, after a check
that the frame counts agree. A copy's cut id and speaker get the suffix `_<perturbation>`, so speaker
CMVN (Kaldi's sp0.9-<speaker> convention) takes its means over one condition (for revoice: one new voice).

Layout of `out_dir` (every file atomic; a copy's `cuts_<name>.jsonl.gz` is written last, so a rerun
skips finished copies):
  settings.json              the AugmentSettings the copies were made with (a rerun with others is refused)
  noise/                     the noise, babble and impulse-response recordings
  audio_revoice<k>/          a re-voiced copy's audio (FLAC), kept when rerun
  feats_<name>.lca           lilcom fbank of a copy (a directory with num_workers > 1); pdf_ids_<name>.h5: the
                             speed and revoice copies' alignments
  cuts_<name>.jsonl.gz       one copy: features + `pdf_ids` (+ the perturbation in `custom["augment"]`)
  stats_<name>.json          its cut, frame and failed-alignment counts and wall seconds
  cuts_<set>.jsonl.gz        the source cuts and every asked copy (default set name: augmented), last, after
                             <set>.json (what it holds) and info.json (num_pdfs, read by build-frame-bank)
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import zlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile
import torch
from lhotse import CutSet, LilcomChunkyWriter, Recording, RecordingSet, load_manifest
from lhotse.cut import Cut, MonoCut
from lhotse.utils import fastcopy
from tqdm import tqdm

from asr_kd.data.cmvn import speaker_of
from asr_kd.data.features import check_frame_counts, fbank_extractor, feature_workers
from asr_kd.data.voices import Speaker, revoice_catalog, synthesize
from asr_kd.gmm.ali_io import write_alignment_cuts
from asr_kd.gmm.align import AlignOptions, align_with_system
from asr_kd.gmm.features import compute_gmm_features
from asr_kd.gmm.lang_files import load_gmm_lang
from asr_kd.gmm.stages import system_config, transcripts_of
from asr_kd.gmm.system import GmmSystem, TransitionArrays
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path, atomic_write_json, read_json

log = logging.getLogger(__name__)

REVOICE = "revoice"
NON_SPEED = ("volume", "noise", "babble", "reverb", "narrowband")
PERTURBATIONS_HELP = "sp<factor> (e.g. sp0.9, sp1.1), " + ", ".join(NON_SPEED) + ", revoice (revoice2, ...)"
NARROWBAND_RATE = 8000


@dataclass(frozen=True)
class AugmentSettings:
    """How the copies are drawn; the same settings and seed give the same copies."""

    seed: int = 0
    volume: tuple[float, float] = (0.125, 2.0)
    noise_snr: tuple[float, float] = (5.0, 20.0)
    babble_snr: tuple[float, float] = (13.0, 20.0)
    babble_talkers: tuple[int, int] = (3, 7)
    t60: tuple[float, float] = (0.2, 0.8)
    drr_db: tuple[float, float] = (0.0, 10.0)
    num_noises: int = 20  # recordings made offline of each kind (coloured noise, babble, impulse responses)

    def __post_init__(self) -> None:
        for name in ("volume", "noise_snr", "babble_snr", "babble_talkers", "t60", "drr_db"):
            low, high = getattr(self, name)
            if low > high:
                raise InputError(f"augmentation setting {name}: the range {low}..{high} is empty")
        if self.volume[0] <= 0 or self.t60[0] <= 0 or self.babble_talkers[0] < 1 or self.num_noises < 1:
            raise InputError(f"augmentation settings out of range: {self}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def speed_factor(name: str) -> float | None:
    """The factor of a speed perturbation's name (sp0.9 -> 0.9); None for the other perturbations."""
    match = re.fullmatch(r"sp(\d+(?:\.\d+)?)", name)
    return float(match.group(1)) if match else None


def revoice_index(name: str) -> int | None:
    """Which re-voiced copy a name is (revoice -> 1, revoice2 -> 2); None for the other perturbations."""
    match = re.fullmatch(rf"{REVOICE}([2-9]|[1-9]\d+)?", name)
    return int(match.group(1) or 1) if match else None


def realigned(name: str) -> bool:
    """Whether a perturbation's copies get a new alignment (speed, revoice) rather than their source's."""
    return revoice_index(name) is not None or speed_factor(name) is not None


def parse_perturbations(given: Sequence[str]) -> tuple[str, ...]:
    """Perturbation names, checked, each once in the order given; InputError naming an unknown one."""
    names = tuple(dict.fromkeys(n.strip() for n in given if n.strip()))
    for name in names:
        factor = speed_factor(name)
        if name not in NON_SPEED and revoice_index(name) is None and (factor is None or not 0.5 <= factor <= 2.0 or factor == 1.0):
            raise InputError(f"unknown perturbation {name!r}: use {PERTURBATIONS_HELP} (speed factors 0.5-2, not 1)")
    if not names:
        raise InputError(f"no perturbation given: use {PERTURBATIONS_HELP}")
    return names


def _rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one perturbation: a function of the seed and the name only."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _write_audio(path: Path, samples: np.ndarray, sampling_rate: int, recording_id: str) -> Recording:
    """16-bit FLAC of samples in [-1, 1] (written atomically) as a lhotse Recording."""
    if not path.is_file():
        with atomic_path(path) as tmp:
            soundfile.write(tmp, np.clip(samples, -1.0, 1.0), sampling_rate, subtype="PCM_16", format="FLAC")
    return Recording.from_file(path, recording_id=recording_id)


def coloured_noise(num_samples: int, exponent: float, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of unit RMS whose power falls as 1/f^exponent (0 white, 1 pink, 2 brown) above 50 Hz."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.maximum(np.fft.rfftfreq(num_samples, 1.0 / sampling_rate), 50.0)  # no sub-audible drift
    noise = np.fft.irfft(spectrum * freqs ** (-exponent / 2), n=num_samples)
    noise -= noise.mean()
    return noise / np.sqrt(np.mean(noise**2))


def simulated_rir(sampling_rate: int, t60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response of the diffuse-field model: a direct path, then Gaussian noise decaying by 60 dB in t60.

    The reflections start 2 ms after the direct path, which carries `drr_db` more energy than they do.
    """
    t = np.arange(int(t60 * sampling_rate)) / sampling_rate
    rir = rng.standard_normal(len(t)) * 10.0 ** (-3.0 * t / t60)
    rir[: int(0.002 * sampling_rate)] = 0.0
    rir[0] = np.sqrt(np.sum(rir**2) * 10.0 ** (drr_db / 10.0))
    return 0.9 * rir / np.abs(rir).max()


def _speaker_audio(cuts: Sequence[Cut]) -> dict[str, list[Cut]]:
    by_speaker: dict[str, list[Cut]] = defaultdict(list)
    for cut in cuts:
        by_speaker[speaker_of(cut)].append(cut)
    return dict(by_speaker)


def babble(by_speaker: dict[str, list[Cut]], talkers: Sequence[str], num_samples: int,
           rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS sum of `talkers`, each reading their utterances in random order from a random point on."""
    total = np.zeros(num_samples)
    for speaker in talkers:
        stream: list[np.ndarray] = []
        length = 0
        start = None
        while length < num_samples + (start or 0):
            cut = by_speaker[speaker][rng.integers(len(by_speaker[speaker]))]
            audio = cut.load_audio()[0].astype(np.float64)
            stream.append(audio)
            length += len(audio)
            if start is None:
                start = int(rng.integers(len(audio)))
        voice = np.concatenate(stream)[start: start + num_samples]
        total += voice / max(np.sqrt(np.mean(voice**2)), 1e-8)
    return total / np.sqrt(np.mean(total**2))


@dataclass
class NoiseBank:
    """The recordings made offline that noise, babble and reverb copies draw from."""

    coloured: list[Recording]
    babble: list[Recording]
    babble_speakers: dict[str, frozenset[str]]
    rirs: list[Recording]


def make_noise_bank(cuts: Sequence[Cut], out_dir: Path, settings: AugmentSettings, kinds: Sequence[str],
                    rir_recordings: RecordingSet | None = None) -> NoiseBank:
    """The recordings of `kinds` (noise, babble, reverb), each as long as the longest cut + 1 s; reused when present.

    Recording i of a kind draws from its own generator, so one made before a crash is the one a
    fresh run would make.
    """
    sampling_rate = cuts[0].sampling_rate
    num_samples = int((max(c.duration for c in cuts) + 1.0) * sampling_rate)
    bank = NoiseBank([], [], {}, [])
    for i in range(settings.num_noises if "noise" in kinds else 0):
        rng = _rng(settings.seed, f"coloured{i:02d}")
        samples = 0.1 * coloured_noise(num_samples, rng.uniform(0.0, 2.0), sampling_rate, rng)
        bank.coloured.append(_write_audio(out_dir / f"coloured{i:02d}.flac", samples, sampling_rate, f"coloured{i:02d}"))
    if "babble" in kinds:
        by_speaker = _speaker_audio(cuts)
        speakers = sorted(by_speaker)
        if len(speakers) < 2:
            raise InputError(f"babble needs at least 2 speakers in the training cuts, got {len(speakers)}")
        for i in range(settings.num_noises):
            rng = _rng(settings.seed, f"babble{i:02d}")
            # Recording i never holds speakers[i % S]: with num_noises >= S every speaker has a babble to get.
            others = [s for s in speakers if s != speakers[i % len(speakers)]]
            k = min(int(rng.integers(settings.babble_talkers[0], settings.babble_talkers[1] + 1)), len(others))
            talkers = sorted(rng.choice(others, size=k, replace=False).tolist())
            path = out_dir / f"babble{i:02d}.flac"
            samples = np.zeros(0) if path.is_file() else 0.1 * babble(by_speaker, talkers, num_samples, rng)
            bank.babble.append(_write_audio(path, samples, sampling_rate, f"babble{i:02d}"))
            bank.babble_speakers[f"babble{i:02d}"] = frozenset(talkers)
    if "reverb" in kinds and rir_recordings is not None:
        bank.rirs = [r for r in rir_recordings if r.sampling_rate == sampling_rate]
        if not bank.rirs:
            raise InputError(f"the RIR recordings have no recording at the cuts' {sampling_rate} Hz")
    elif "reverb" in kinds:
        for i in range(settings.num_noises):
            rng = _rng(settings.seed, f"rir{i:02d}")
            rir = simulated_rir(sampling_rate, rng.uniform(*settings.t60), rng.uniform(*settings.drr_db), rng)
            bank.rirs.append(_write_audio(out_dir / f"rir{i:02d}.flac", rir, sampling_rate, f"rir{i:02d}"))
    return bank


def _renamed(cut: Cut, name: str, augment: dict[str, Any]) -> Cut:
    """A copy of a cut (no features, no alignment) whose id, supervisions and speaker carry `_<name>`."""
    supervisions = [fastcopy(s, id=f"{s.id}_{name}", speaker=f"{speaker_of(cut)}_{name}") for s in cut.supervisions]
    custom = {k: v for k, v in (cut.custom or {}).items() if k != "pdf_ids"}
    custom["augment"] = {"perturbation": name, "source_cut": cut.id, **augment}
    return fastcopy(cut, id=f"{cut.id}_{name}", supervisions=supervisions, features=None, custom=custom)


def _mixed(cut: Cut, name: str, noises: Sequence[Recording], snr_range: tuple[float, float],
           rng: np.random.Generator) -> Cut:
    """The copy of `cut` with a random stretch of one of `noises` mixed in at a random SNR (lhotse `cut.mix`)."""
    noise = noises[rng.integers(len(noises))]
    if noise.duration < cut.duration:
        raise InputError(f"cut {cut.id}: longer ({cut.duration:.2f} s) than the noise recording {noise.id}")
    offset = float(rng.uniform(0.0, noise.duration - cut.duration))
    snr = float(rng.uniform(*snr_range))
    piece = noise.to_cut().truncate(offset=offset, duration=cut.duration)
    # A MixedCut's custom fields are its tracks': the description goes on the speech track.
    speech = _renamed(cut, name, {"noise": noise.id, "offset": round(offset, 3), "snr": round(snr, 2)})
    return speech.mix(piece, snr=snr, preserve_id="left")


def perturbed_copies(cuts: Sequence[Cut], name: str, settings: AugmentSettings,
                     noise_bank: NoiseBank | None = None) -> CutSet:
    """The cuts' copies under perturbation `name`, lazy (audio transforms and mixes, no features yet)."""
    rng = _rng(settings.seed, name)
    factor = speed_factor(name)
    out = []
    for cut in cuts:
        if not cut.has_recording:
            raise InputError(f"cut {cut.id}: no recording; augmentation needs the audio")
        base = cut.drop_features()  # perturb_speed would detach (and log about) the features anyway
        if factor is not None:
            copy = _renamed(base.perturb_speed(factor, affix_id=False), name, {"factor": factor})
        elif name == "volume":
            gain = float(rng.uniform(*settings.volume))
            copy = _renamed(base.perturb_volume(gain, affix_id=False), name, {"factor": round(gain, 4)})
        elif name == "narrowband":
            copy = _renamed(base.resample(NARROWBAND_RATE).resample(cut.sampling_rate), name,
                            {"sampling_rate": NARROWBAND_RATE})
        elif name == "reverb":
            assert noise_bank is not None
            rir = noise_bank.rirs[rng.integers(len(noise_bank.rirs))]
            copy = _renamed(base.reverb_rir(rir, normalize_output=True, affix_id=False), name, {"rir": rir.id})
        elif name == "noise":
            assert noise_bank is not None
            copy = _mixed(base, name, noise_bank.coloured, settings.noise_snr, rng)
        elif name == "babble":
            assert noise_bank is not None
            speaker = speaker_of(cut)
            pool = [r for r in noise_bank.babble if speaker not in noise_bank.babble_speakers[r.id]]
            if not pool:
                raise InputError(f"cut {cut.id}: every babble recording holds its speaker {speaker}; "
                                 f"raise num_noises above {settings.num_noises}")
            copy = _mixed(base, name, pool, settings.babble_snr, rng)
        elif revoice_index(name) is not None:
            raise InputError("revoice copies are spoken anew, not perturbed: use revoiced_copies")
        else:
            raise InputError(f"unknown perturbation {name!r}: use {PERTURBATIONS_HELP}")
        out.append(copy)
    return CutSet.from_cuts(out)


def revoice_plan(speakers: Sequence[str], seed: int, copy: int = 1) -> dict[str, Speaker]:
    """Source speaker -> the new voice that speaks all their sentences again in re-voiced copy `copy` (1, 2, ...).

    One draw of the catalog per seed, dealt out over the sorted speakers and copy after copy: no voice
    speaks for two speakers or in two copies.
    """
    speakers = sorted(speakers)
    catalog = revoice_catalog()
    if copy * len(speakers) > len(catalog):
        raise InputError(f"revoice copy {copy}: {len(speakers)} training speakers a copy, but only "
                         f"{len(catalog)} new voices")
    order = _rng(seed, REVOICE).permutation(len(catalog))[(copy - 1) * len(speakers): copy * len(speakers)]
    return {speaker: catalog[i] for speaker, i in zip(speakers, order)}


def _revoiced(cut: Cut, name: str, voice: Speaker, audio: Path) -> Cut:
    """The copy `name` of `cut` whose recording is `audio` (its text in `voice`): one supervision over all of it."""
    copy_id = f"{cut.id}_{name}"
    recording = Recording.from_file(audio, recording_id=copy_id)
    supervision = fastcopy(cut.supervisions[0], id=f"{cut.supervisions[0].id}_{name}", recording_id=copy_id,
                           start=0.0, duration=recording.duration, speaker=f"{speaker_of(cut)}_{name}")
    custom = {k: v for k, v in (cut.custom or {}).items() if k != "pdf_ids"}
    custom["augment"] = {"perturbation": name, "source_cut": cut.id, "voice": voice.describe()}
    return MonoCut(id=copy_id, start=0.0, duration=recording.duration, channel=0, recording=recording,
                   supervisions=[supervision], custom=custom)


def revoiced_copies(cuts: Sequence[Cut], audio_dir: Path, seed: int, num_workers: int = 1,
                    name: str = REVOICE) -> CutSet:
    """The cuts' texts spoken again, each speaker's by its `revoice_plan` voice, as FLAC in `audio_dir`.

    `name` is revoice or revoice<k>, the k-th copy. Audio already in `audio_dir` is kept (a rerun
    synthesizes only what is missing). The engines are separate processes, so `num_workers` threads
    synthesize speakers side by side.
    """
    copy = revoice_index(name)
    if copy is None:
        raise InputError(f"{name!r} is not a revoice copy (revoice, revoice2, ...)")
    for cut in cuts:
        if len(cut.supervisions) != 1 or not cut.supervisions[0].text:
            raise InputError(f"cut {cut.id}: revoice needs exactly one supervision with text, "
                             f"got {len(cut.supervisions)}")
    by_speaker = _speaker_audio(cuts)
    plan = revoice_plan(list(by_speaker), seed, copy)
    audio_dir.mkdir(parents=True, exist_ok=True)

    def speak(speaker: str) -> None:
        todo = [(f"{c.id}_{name}", c.supervisions[0].text) for c in by_speaker[speaker]
                if not (audio_dir / f"{c.id}_{name}.flac").is_file()]
        if todo:
            synthesize(plan[speaker], todo, audio_dir)

    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        list(tqdm(pool.map(speak, sorted(by_speaker)), total=len(by_speaker), desc="revoice speakers",
                  disable=None))
    return CutSet.from_cuts(_revoiced(c, name, plan[speaker_of(c)], audio_dir / f"{c.id}_{name}.flac") for c in cuts)


def _compute_features(copies: CutSet, storage: Path, num_workers: int) -> CutSet:
    """Fbank of the copies (the recipe's extractor) into lilcom storage; every copy must come back."""
    with ExitStack() as stack:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        stack.callback(torch.set_num_threads, threads)
        executor = stack.enter_context(feature_workers(num_workers)) if num_workers > 1 else None
        done = copies.compute_and_store_features(extractor=fbank_extractor(), storage_path=storage.resolve(),
                                                 num_jobs=num_workers, executor=executor,
                                                 storage_type=LilcomChunkyWriter).to_eager()
    lost = sorted(set(copies.ids) - set(done.ids))
    if lost:
        raise InputError(f"cut {lost[0]}: no features computed for it ({len(lost)} of {len(copies)} copies lost)")
    check_frame_counts(done)
    # lhotse hands worker k every num_workers-th cut and joins their outputs worker by worker; back in the
    # copies' order, the bank (and a model trained on it) does not depend on --num-workers.
    return done.sort_like(copies)


def _with_original_alignment(copies: CutSet, sources: dict[str, Cut]) -> list[Cut]:
    """The copies with their source cut's `pdf_ids`; InputError naming a cut whose frame count changed."""
    out = []
    for copy in copies:
        source = sources[copy.custom["augment"]["source_cut"]]
        if copy.num_frames != source.num_frames:
            raise InputError(f"cut {source.id}: its {copy.custom['augment']['perturbation']} copy has "
                             f"{copy.num_frames} frames but the cut and its alignment have {source.num_frames}; "
                             "were its features made with another frame shift or snip_edges?")
        out.append(copy.with_custom("pdf_ids", source.custom["pdf_ids"]))
    return out


@dataclass
class Aligner:
    """Force-aligns speed-perturbed copies with a trained GMM system (its CMVN mode, Kaldi's beams)."""

    gmm_dir: Path
    lang_dir: Path
    options: AlignOptions

    def __call__(self, cuts: CutSet, what: str) -> tuple[dict[str, np.ndarray], list[str]]:
        """pdf-ids per frame of the cuts that aligned, and the ids of those that did not."""
        if not GmmSystem.exists(self.gmm_dir):
            raise InputError(f"{self.gmm_dir} has no trained GMM system (tree + final.mdl) to align the copies")
        system = GmmSystem.load(self.gmm_dir)
        lang = load_gmm_lang(self.lang_dir)
        feats = compute_gmm_features(cuts, cmvn=system_config(self.gmm_dir).get("cmvn", "speaker"),
                                     transform=system.transform)
        result = align_with_system(system, lang, feats.feats, transcripts_of(cuts, lang, what), self.options, what)
        pdf = TransitionArrays.from_model(system.transition_model).pdf
        return {u: pdf[a] for u, a in result.alignments.items()}, sorted(result.failed)


def check_source_cuts(cuts: CutSet, path: Path) -> dict[str, Cut]:
    """Cut id -> cut of the training cuts; InputError naming a cut without recording, features or alignment."""
    sources = {}
    for cut in cuts:
        if not cut.has_recording:
            raise InputError(f"{path}: cut {cut.id} has no recording; augmentation needs the audio")
        if not cut.has_features or "pdf_ids" not in (cut.custom or {}):
            raise InputError(f"{path}: cut {cut.id} has no features or no pdf_ids alignment; give the alignment "
                             "cuts (gmm/tri2/ali/cuts_<part>.jsonl.gz)")
        speaker_of(cut)
        sources[cut.id] = cut
    if not sources:
        raise InputError(f"{path}: no cuts")
    rates = {c.sampling_rate for c in sources.values()}
    if len(rates) > 1:
        raise InputError(f"{path}: cuts at several sampling rates {sorted(rates)}; resample them first")
    return sources


def _check_settings(out_dir: Path, wanted: dict[str, Any]) -> None:
    """Write settings.json, or refuse an out_dir whose copies were made from other cuts or settings."""
    path = out_dir / "settings.json"
    if path.is_file():
        made = read_json(path)
        if made != wanted:
            changed = sorted(k for k in set(made) | set(wanted) if made.get(k) != wanted.get(k))
            raise InputError(f"{out_dir}: its copies were made with other {', '.join(changed)} ({path}); "
                             "give another output directory")
    else:
        atomic_write_json(path, wanted)


def augment_cuts(cuts_path: str | Path, out_dir: str | Path, perturbations: Sequence[str],
                 settings: AugmentSettings | None = None, gmm_dir: str | Path | None = None,
                 lang_dir: str | Path | None = None, rir_recordings: str | Path | None = None,
                 num_workers: int = 1, align_options: AlignOptions | None = None, name: str = "augmented",
                 only: Sequence[str] | None = None) -> Path:
    """Make the copies of `perturbations` (finished ones are kept); write `cuts_<name>.jsonl.gz` and `<name>.json`.

    The training cuts need recordings, features and `pdf_ids` (the tri2 alignment cuts); with `only`,
    just the cuts of those ids are sources (each must be there), e.g. a training subset. Speed and revoice
    copies are aligned with the GMM system in `gmm_dir` and the lang dir it was trained with; their cuts
    that fail to align are left out and counted. Returns the combined manifest's path (the source
    cuts and the copies), written last; `info.json` beside it carries num_pdfs for build-frame-bank.
    """
    settings = settings or AugmentSettings()
    cuts_path, out_dir = Path(cuts_path), Path(out_dir)
    if not cuts_path.is_file():
        raise InputError(f"{cuts_path}: no such cuts manifest")
    to_align = [p for p in perturbations if realigned(p)]
    if to_align and (gmm_dir is None or lang_dir is None):
        raise InputError(f"{', '.join(to_align)} copies need a GMM system and its lang dir to align them")
    sources = check_source_cuts(load_manifest(cuts_path), cuts_path)
    only_ids = None if only is None else set(only)
    if only_ids is not None:
        missing = sorted(only_ids - set(sources))
        if missing:
            raise InputError(f"{cuts_path}: {len(missing)} of the {len(only_ids)} cuts asked for are not in it "
                             f"(first: {missing[0]})")
        sources = {cut_id: cut for cut_id, cut in sources.items() if cut_id in only_ids}
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, {"source_cuts": str(cuts_path.resolve()), **settings.to_dict(),
                              "rir_recordings": str(Path(rir_recordings).resolve()) if rir_recordings else None,
                              **({} if only_ids is None else {"only_cuts": sorted(only_ids)})})
    cuts = list(sources.values())
    todo = [p for p in perturbations if not (out_dir / f"cuts_{p}.jsonl.gz").is_file()]
    kinds = [k for k in ("noise", "babble", "reverb") if k in todo]
    noise_bank = None
    if kinds:
        rirs = RecordingSet.from_file(rir_recordings) if rir_recordings else None
        # Absolute: the copies' manifests name these files (reverb transforms, mixes).
        noise_bank = make_noise_bank(cuts, (out_dir / "noise").resolve(), settings, kinds, rirs)
    aligner = Aligner(Path(gmm_dir), Path(lang_dir), align_options or AlignOptions()) if to_align else None
    for perturbation in todo:
        start = time.perf_counter()
        if revoice_index(perturbation) is not None:
            raw = revoiced_copies(cuts, out_dir / f"audio_{perturbation}", settings.seed, num_workers, perturbation)
        else:
            raw = perturbed_copies(cuts, perturbation, settings, noise_bank)
        copies = _compute_features(raw, out_dir / f"feats_{perturbation}", num_workers)
        if realigned(perturbation):
            assert aligner is not None
            pdf_ids, failed = aligner(copies, f"alignment of the {perturbation} copies")
            kept = [c for c in copies if c.id in pdf_ids]
            atomic_write_json(out_dir / f"stats_{perturbation}.json", _stats(perturbation, kept, failed, start))
            write_alignment_cuts(copies, pdf_ids, out_dir, perturbation)
        else:
            kept = _with_original_alignment(copies, sources)
            atomic_write_json(out_dir / f"stats_{perturbation}.json", _stats(perturbation, kept, [], start))
            with atomic_path(out_dir / f"cuts_{perturbation}.jsonl.gz") as tmp:
                CutSet.from_cuts(kept).to_file(tmp)
        log.info("%s: %d copies (%d not aligned), %.0f s", perturbation, len(kept), len(copies) - len(kept),
                 time.perf_counter() - start)
    return _combine(cuts_path, cuts, out_dir, perturbations, settings, name)


def _stats(perturbation: str, cuts: Sequence[Cut], failed: list[str], start: float) -> dict[str, Any]:
    return {"perturbation": perturbation, "cuts": len(cuts), "frames": int(sum(c.num_frames for c in cuts)),
            "failed_alignments": failed, "seconds": round(time.perf_counter() - start, 1)}


def _combine(cuts_path: Path, cuts: list[Cut], out_dir: Path, perturbations: Sequence[str],
             settings: AugmentSettings, name: str) -> Path:
    """cuts_<name>.jsonl.gz (source cuts + the asked copies), info.json and <name>.json (what it holds), last."""
    combined: list[Cut] = list(cuts)
    for perturbation in perturbations:
        combined.extend(load_manifest(out_dir / f"cuts_{perturbation}.jsonl.gz"))
    source_info = cuts_path.parent / "info.json"
    num_pdfs = read_json(source_info).get("num_pdfs") if source_info.is_file() else None
    atomic_write_json(out_dir / "info.json", {"num_pdfs": num_pdfs, "source_cuts": str(cuts_path)})
    summary = {"source_cuts": str(cuts_path), "perturbations": list(perturbations), "settings": settings.to_dict(),
               "source": {"cuts": len(cuts), "frames": int(sum(c.num_frames for c in cuts))},
               "copies": {p: read_json(out_dir / f"stats_{p}.json") for p in perturbations},
               "cuts": len(combined), "frames": int(sum(c.num_frames for c in combined))}
    atomic_write_json(out_dir / f"{name}.json", summary)
    target = out_dir / f"cuts_{name}.jsonl.gz"
    with atomic_path(target) as tmp:
        CutSet.from_cuts(combined).to_file(tmp)
    log.info("%s: %d cuts, %d frames (source %d + %s)", target, summary["cuts"], summary["frames"],
             summary["source"]["frames"], ", ".join(perturbations))
    return target
