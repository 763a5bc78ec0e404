"""CPU cost of each TTS engine: CPU-seconds per second of audio, and the ratio to espeak-ng.

Every engine speaks the same sentences with each of its voices at rate 1 and pitch 1, FLAC
conversion included (as in the corpus). CPU is the children's user+system time from
resource.getrusage plus this process's own, so process start-up counts too.

    python bench/bench_synth.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from asr_kd.data.voices import ENGINES, FESTIVAL_VOICES, FLITE_VOICES, Speaker, synthesize

SENTENCES = [
    "THE OLD MAN WALKED SLOWLY DOWN THE ROAD TOWARDS THE RIVER",
    "SHE OPENED THE WINDOW AND LOOKED OUT AT THE GARDEN",
    "IN THE MORNING THE CHILDREN WENT TO SCHOOL WITH THEIR BOOKS UNDER THEIR ARMS",
    "HE SAID THAT HE WOULD COME BACK BEFORE THE END OF THE WEEK",
    "A SMALL BOAT WAS TIED TO THE POST AT THE EDGE OF THE WATER",
    "NOBODY KNEW WHERE THE LETTER HAD COME FROM OR WHO HAD WRITTEN IT",
    "THE KING GAVE ORDERS THAT THE GATES OF THE CITY SHOULD BE SHUT AT NIGHT AND OPENED AGAIN AT DAWN",
    "WE HAVE NOTHING TO FEAR",
]
VOICES = {
    "espeak-ng": ["en-us+m1", "en-gb+f2", "en-gb-scotland+m3", "en-us-nyc+f4"],
    "flite": list(FLITE_VOICES),
    "festival": list(FESTIVAL_VOICES),
}


def _cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime


def measure(engine: str, repeats: int) -> tuple[float, float, float]:
    """(CPU seconds, audio seconds, wall seconds) for `engine` over all its voices and the sentences."""
    items = [(f"s{i:02d}", s) for i, s in enumerate(SENTENCES)]
    cpu = audio = wall = 0.0
    for _ in range(repeats):
        for voice in VOICES[engine]:
            speaker = Speaker(engine, voice, 1.0, 1.0, "M")
            with tempfile.TemporaryDirectory(prefix="bench-synth-") as out:
                cpu0, wall0 = _cpu_seconds(), time.perf_counter()
                results = synthesize(speaker, items, out)
                cpu += _cpu_seconds() - cpu0
                wall += time.perf_counter() - wall0
            audio += sum(u.duration for u in results)
    return cpu, audio, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="passes over voices x sentences per engine")
    args = parser.parse_args()
    rows = {engine: measure(engine, args.repeats) for engine in ENGINES}
    baseline = rows["espeak-ng"][0] / rows["espeak-ng"][1]
    print(f"{'engine':<10} {'audio s':>8} {'CPU s':>7} {'wall s':>7} {'CPU-s/audio-s':>14} {'vs espeak-ng':>13}")
    for engine, (cpu, audio, wall) in rows.items():
        per_second = cpu / audio
        print(f"{engine:<10} {audio:8.1f} {cpu:7.2f} {wall:7.2f} {per_second:14.4f} {per_second / baseline:12.2f}x")


if __name__ == "__main__":
    main()
