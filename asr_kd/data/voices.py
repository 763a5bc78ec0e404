"""Text-to-speech engines and the synthetic speakers built from them.

A speaker is one engine x voice x speaking rate x pitch factor. Three Debian engines are used:
espeak-ng (formant synthesis, many accents and voice variants, no phone times), flite (diphone
and clustergen voices, phone end times from `-psdur`) and festival (two diphone voices and an HTS
voice, phone times from the utterance's Segment relation, many sentences per process because
start-up costs 0.2 s). Audio is written as 16 kHz mono 16-bit FLAC by sox.

One voice family is kept apart for the never-heard test set (`never_heard_catalog`): espeak-ng's
Klatt variants, which no other catalog ever offers. `revoice_catalog` offers espeak-ng's other named
variants for re-voiced training copies, none of them driving the Klatt synthesizer.
"""

from __future__ import annotations

import itertools
import logging
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import soundfile

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
ENGINES = ("espeak-ng", "flite", "festival")
# Programs each engine needs, with the Debian package that provides them.
ENGINE_PROGRAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "espeak-ng": (("espeak-ng", "espeak-ng"), ("sox", "sox")),
    "flite": (("flite", "flite"), ("sox", "sox")),
    "festival": (("festival", "festival"), ("sox", "sox")),
}
FESTIVAL_VOICE_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
}
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
# The never-heard voice family: espeak-ng's Klatt variants. They drive a Klatt cascade-parallel formant
# synthesizer instead of espeak-ng's default one, so the source, the formant bandwidths and the spectral
# tilt all differ from every training voice, while the lexicon and the accents' phoneme rules stay the
# ones the systems can recognise. No new package (espeak-ng-data ships them, Debian main) and espeak-ng's
# speed. klatt6 is left out: in espeak-ng 1.51 it gives the same samples as klatt. The others in Debian
# main were weaker choices: festvox-kallpc8k / kdlpc8k are the kal and ked voices already in training
# (only band-limited), and espeak-ng's named variants are the default synthesizer with other settings.
NEVER_HEARD_VARIANTS = ("klatt", "klatt2", "klatt3", "klatt4", "klatt5")
# espeak-ng's named voice variants that no corpus catalog offers, for re-voiced training copies
# (`asr_kd.data.augment`'s `revoice`): each sets its own pitch range, formant frequencies, strengths and
# widths, breathiness, roughness or voicing on espeak-ng's default synthesizer. Left out: every variant
# that switches to the Klatt synthesizer (the never-heard family's, and robosoft*, adam, announcer,
# benjamin, caleb, david, edward*, UniRobot), and "Mr serious" (a space in its name).
REVOICE_VARIANTS = (
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Diogo", "Gene", "Gene2",
    "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "RicishayMax",
    "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "anika", "anikaRobot", "antonio", "aunty", "belinda",
    "boris", "croak", "ed", "fast", "grandma", "grandpa", "gustave", "iven", "iven2", "iven3", "iven4", "john",
    "kaukovalta", "linda", "m8", "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro",
    "quincy", "rob", "robert", "sandro", "shelby", "steph", "steph2", "steph3", "travis", "victor", "whisper",
    "whisperf", "zac")
FLITE_VOICES = {"kal16": "M", "awb": "M", "rms": "M", "slt": "F"}
FESTIVAL_VOICES = {"kal_diphone": "M", "ked_diphone": "M", "cmu_us_slt_arctic_hts": "F"}
# Rate and pitch are factors around each voice's default: 7 x 7 per voice.
RATES = (0.82, 0.88, 0.94, 1.0, 1.06, 1.12, 1.18)
PITCHES = (0.82, 0.88, 0.94, 1.0, 1.06, 1.12, 1.18)

ARPABET = frozenset("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T "
                    "TH UH UW V W Y Z ZH".split())
# flite's and festival's US phone sets are ARPAbet plus reduced / syllabic / flapped variants;
# map them to the CMUdict phone a lexicon would give for the same sound.
_PHONE_MAP = {"ax": "AH", "axr": "ER", "ix": "IH", "ux": "UW", "dx": "T", "nx": "N", "el": "L",
              "em": "M", "en": "N", "hv": "HH", "pau": "SIL", "h#": "SIL", "brth": "SIL", "sil": "SIL"}


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: engine, voice, rate factor (>1 faster) and pitch factor (>1 higher)."""

    engine: str
    voice: str
    rate: float
    pitch: float
    sex: str

    def describe(self) -> str:
        """Name for SPEAKERS.TXT, e.g. `espeak-ng en-gb-scotland+f2 rate 1.06 pitch 0.94`."""
        return f"{self.engine} {self.voice} rate {self.rate:.2f} pitch {self.pitch:.2f}"


@dataclass(frozen=True)
class Utterance:
    """What a synthesis call produced for one utterance: length and, if the engine tells, phone times."""

    utt_id: str
    num_samples: int
    phones: tuple[tuple[float, float, str], ...] | None  # (start, duration, ARPAbet or SIL)

    @property
    def duration(self) -> float:
        return self.num_samples / SAMPLE_RATE


def speaker_catalog(engine: str) -> list[Speaker]:
    """Every speaker an engine offers, in a fixed order."""
    if engine == "espeak-ng":
        voices = [(f"{a}+{v}", v[0].upper()) for a, v in itertools.product(ESPEAK_ACCENTS, ESPEAK_VARIANTS)]
    elif engine == "flite":
        voices = list(FLITE_VOICES.items())
    elif engine == "festival":
        voices = list(FESTIVAL_VOICES.items())
    else:
        raise InputError(f"unknown TTS engine {engine!r}; choose from {', '.join(ENGINES)}")
    return [Speaker(engine, voice, rate, pitch, sex)
            for (voice, sex), rate, pitch in itertools.product(voices, RATES, PITCHES)]


def never_heard_catalog() -> list[Speaker]:
    """The speakers of the never-heard voice family (espeak-ng accents x Klatt variants), in a fixed order.

    Disjoint from every `speaker_catalog`: no split but the never-heard one can draw them.
    """
    voices = [f"{a}+{v}" for a, v in itertools.product(ESPEAK_ACCENTS, NEVER_HEARD_VARIANTS)]
    return [Speaker("espeak-ng", voice, rate, pitch, "M")
            for voice, rate, pitch in itertools.product(voices, RATES, PITCHES)]


def revoice_catalog() -> list[Speaker]:
    """espeak-ng speakers of the variants no corpus split uses (`REVOICE_VARIANTS` x accents x rate x pitch).

    Disjoint from every `speaker_catalog` and from `never_heard_catalog`: copies spoken by them add
    voices to training without touching the never-heard family.
    """
    voices = [f"{a}+{v}" for a, v in itertools.product(ESPEAK_ACCENTS, REVOICE_VARIANTS)]
    return [Speaker("espeak-ng", voice, rate, pitch, "-")
            for voice, rate, pitch in itertools.product(voices, RATES, PITCHES)]


def check_engine(engine: str) -> None:
    """Raise `InputError` naming the missing program (or voice) and the apt package to install."""
    if engine not in ENGINE_PROGRAMS:
        raise InputError(f"unknown TTS engine {engine!r}; choose from {', '.join(ENGINES)}")
    for program, package in ENGINE_PROGRAMS[engine]:
        if shutil.which(program) is None:
            raise InputError(f"TTS engine {engine} needs the program {program!r}, which is not installed: "
                             f"apt-get install {package}")
    if engine == "festival":
        voices = Path("/usr/share/festival/voices")
        for voice, package in FESTIVAL_VOICE_PACKAGES.items():
            if not any(voices.glob(f"*/{voice}")):
                raise InputError(f"festival voice {voice} is not installed: apt-get install {package}")


def spoken_text(sentence: str) -> str:
    """What the engines read: the transcript in lower case (all-caps words get spelled out)."""
    return " ".join("I" if w == "I" else w.lower() for w in sentence.split())


def _to_arpabet(phone: str) -> str | None:
    phone = _PHONE_MAP.get(phone, phone.upper())
    return phone if phone in ARPABET or phone == "SIL" else None


def phones_from_end_times(ends: Sequence[tuple[str, float]], duration: float
                          ) -> tuple[tuple[float, float, str], ...] | None:
    """(start, duration, phone) from (engine phone, end time) pairs, clipped to the audio's length.

    Adjacent silences merge. None when a phone has no ARPAbet equivalent.
    """
    phones: list[list] = []
    start = 0.0
    for name, end in ends:
        phone = _to_arpabet(name)
        if phone is None:
            logger.warning("phone %r has no ARPAbet equivalent; no phone times for this utterance", name)
            return None
        end = min(end, duration)
        if end <= start:
            continue
        if phones and phone == "SIL" and phones[-1][2] == "SIL":
            phones[-1][1] = end
        else:
            phones.append([start, end, phone])
        start = end
    return tuple((round(s, 3), round(e - s, 3), p) for s, e, p in phones)


def _run(command: list[str], what: str, input_text: str | None = None) -> str:
    result = subprocess.run(command, input=input_text, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {' '.join(command[:6])} ...\n"
                           f"{result.stderr.strip()[-2000:]}")
    return result.stdout


def _wav_to_flac(wav: Path, flac: Path, pitch: float = 1.0) -> int:
    """Convert to 16 kHz mono 16-bit FLAC atomically; returns the number of samples written.

    `pitch` != 1 shifts the pitch with sox (length unchanged, so phone times stay valid) for
    voices whose engine ignores its own pitch setting. No dither (-D): sox would otherwise add
    random noise when resampling, and the corpus must be bit-identical for a seed.
    """
    effects = [] if pitch == 1.0 else ["pitch", f"{1200 * math.log2(pitch):.1f}"]
    with atomic_path(flac) as tmp:
        _run(["sox", "-D", str(wav), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(tmp), *effects], "sox")
    return soundfile.info(str(flac)).frames


def _espeak(speaker: Speaker, items: Sequence[tuple[str, str]], out_dir: Path, work: Path) -> list[Utterance]:
    wpm = round(175 * speaker.rate)  # espeak-ng's default is 175 words per minute
    pitch = min(99, max(0, round(50 + 200 * (speaker.pitch - 1.0))))  # 0-99 scale, default 50
    results = []
    for utt_id, sentence in items:
        wav = work / f"{utt_id}.wav"
        _run(["espeak-ng", "-v", speaker.voice, "-s", str(wpm), "-p", str(pitch), "-w", str(wav),
              spoken_text(sentence)], "espeak-ng")
        results.append(Utterance(utt_id, _wav_to_flac(wav, out_dir / f"{utt_id}.flac"), None))
    return results


def _flite(speaker: Speaker, items: Sequence[tuple[str, str]], out_dir: Path, work: Path) -> list[Utterance]:
    # kal16 is a diphone voice (pitch from int_f0_target_mean, default ~100 Hz); awb and slt are
    # clustergen voices that scale their predicted F0 by f0_shift; rms ignores both (measured),
    # so sox shifts its pitch. Setting both features is harmless.
    sox_pitch = speaker.pitch if speaker.voice == "rms" else 1.0
    options = ["--setf", f"duration_stretch={1.0 / speaker.rate:.4f}",
               "--setf", f"f0_shift={speaker.pitch:.4f}",
               "--setf", f"int_f0_target_mean={100.0 * speaker.pitch:.1f}"]
    results = []
    for utt_id, sentence in items:
        wav = work / f"{utt_id}.wav"
        output = _run(["flite", "-voice", speaker.voice, *options, "-psdur", "-t", spoken_text(sentence),
                       "-o", str(wav)], "flite")
        num_samples = _wav_to_flac(wav, out_dir / f"{utt_id}.flac", sox_pitch)
        ends = [(p, float(t)) for p, t in (tok.rsplit(":", 1) for tok in output.split())]
        results.append(Utterance(utt_id, num_samples, phones_from_end_times(ends, num_samples / SAMPLE_RATE)))
    return results


_FESTIVAL_PRELUDE = """
(define (asrkd_say text wav segs)
  (let ((utt (eval (list 'Utterance 'Text text))))
    (utt.synth utt)
    (utt.wave.resample utt 16000)
    (utt.save.wave utt wav 'riff)
    (utt.save.segs utt segs)))
"""


def _festival_voice_setup(speaker: Speaker) -> str:
    if speaker.voice == "cmu_us_slt_arctic_hts":
        # hts_engine's -r is the speech speed; festival's HTS module ignores F0 options (measured),
        # so its pitch is shifted by sox afterwards.
        return (f"(voice_{speaker.voice})\n(set! hts_engine_params (append cmu_us_slt_arctic_hts::hts_engine_params "
                f"'((\"-r\" {speaker.rate:.4f}))))\n")
    # The diphone voices set Duration_Stretch 1.1 and a 105 Hz target mean themselves.
    return (f"(voice_{speaker.voice})\n(Parameter.set 'Duration_Stretch {1.1 / speaker.rate:.4f})\n"
            f"(set! int_lr_params '((target_f0_mean {105 * speaker.pitch:.1f}) (target_f0_std 15) "
            f"(model_f0_mean 170) (model_f0_std 34)))\n")


def _read_segs(path: Path) -> list[tuple[str, float]]:
    lines = path.read_text().splitlines()
    body = lines[lines.index("#") + 1:]  # xlabel header ends with "#"
    return [(name, float(end)) for end, _, name in (line.split() for line in body if line.strip())]


def _festival(speaker: Speaker, items: Sequence[tuple[str, str]], out_dir: Path, work: Path) -> list[Utterance]:
    script = [_FESTIVAL_PRELUDE, _festival_voice_setup(speaker)]
    for utt_id, sentence in items:
        script.append(f'(asrkd_say "{spoken_text(sentence)}" "{work / utt_id}.wav" "{work / utt_id}.segs")\n')
    script_path = work / "batch.scm"
    script_path.write_text("".join(script))
    _run(["festival", "-b", str(script_path)], f"festival ({speaker.voice})")  # exits 255 on a Scheme error
    sox_pitch = speaker.pitch if speaker.voice == "cmu_us_slt_arctic_hts" else 1.0
    results = []
    for utt_id, _ in items:
        num_samples = _wav_to_flac(work / f"{utt_id}.wav", out_dir / f"{utt_id}.flac", sox_pitch)
        ends = _read_segs(work / f"{utt_id}.segs")
        results.append(Utterance(utt_id, num_samples, phones_from_end_times(ends, num_samples / SAMPLE_RATE)))
    return results


_SYNTHESIZERS = {"espeak-ng": _espeak, "flite": _flite, "festival": _festival}


def synthesize(speaker: Speaker, items: Sequence[tuple[str, str]], out_dir: str | Path) -> list[Utterance]:
    """Speak each (utt_id, SENTENCE) as `out_dir/<utt_id>.flac` (16 kHz mono); one festival process per call."""
    check_engine(speaker.engine)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="asrkd-tts-") as work:
        return _SYNTHESIZERS[speaker.engine](speaker, items, out_dir, Path(work))
