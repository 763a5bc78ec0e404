"""HMM topologies as Kaldi `topo` text (what Kaldi's gen_topo.pl writes)."""

from __future__ import annotations

from typing import Sequence


def _left_to_right(num_states: int) -> list[str]:
    # Each emitting state: self-loop 0.75, forward 0.25 (Kaldi's initial values; training re-estimates).
    lines = [
        f"<State> {s} <PdfClass> {s} <Transition> {s} 0.75 <Transition> {s + 1} 0.25 </State>"
        for s in range(num_states)
    ]
    lines.append(f"<State> {num_states} </State>")
    return lines


def _ergodic_silence(num_states: int) -> list[str]:
    # Kaldi's silence model: the first state may jump to any of the middle ones, the middle states
    # are fully connected and may leave to the last; only the last state exits. It lets silence
    # of any length be modelled with few frames tied to one state.
    last = num_states - 1
    lines = []
    targets = range(0, last)
    p = 1.0 / len(targets)
    lines.append("<State> 0 <PdfClass> 0 " + " ".join(f"<Transition> {t} {p:g}" for t in targets) + " </State>")
    targets = range(1, num_states)
    p = 1.0 / len(targets)
    for s in range(1, last):
        arcs = " ".join(f"<Transition> {t} {p:g}" for t in targets)
        lines.append(f"<State> {s} <PdfClass> {s} {arcs} </State>")
    lines.append(f"<State> {last} <PdfClass> {last} <Transition> {last} 0.75 <Transition> {num_states} 0.25 </State>")
    lines.append(f"<State> {num_states} </State>")
    return lines


def make_topo(nonsilence_ids: Sequence[int], silence_ids: Sequence[int],
              num_nonsil_states: int = 3, num_sil_states: int = 5) -> str:
    """Kaldi `topo` text: left-to-right `num_nonsil_states` for speech phones; silence phones get
    Kaldi's ergodic 5-state model (or left-to-right when `num_sil_states` < 4)."""
    if num_nonsil_states < 1 or num_sil_states < 1:
        raise ValueError("HMMs need at least one emitting state")
    entries = [("\n".join(map(str, nonsilence_ids)), _left_to_right(num_nonsil_states))]
    sil_states = _ergodic_silence(num_sil_states) if num_sil_states >= 4 else _left_to_right(num_sil_states)
    entries.append(("\n".join(map(str, silence_ids)), sil_states))
    out = ["<Topology>"]
    for phones, states in entries:
        out += ["<TopologyEntry>", "<ForPhones>", phones, "</ForPhones>", *states, "</TopologyEntry>"]
    out.append("</Topology>")
    return "\n".join(out) + "\n"


def load_topo(text: str):
    """Parse `topo` text into a `kaldi_hmm_gmm.HmmTopology` (its `read` takes the text itself)."""
    import kaldi_hmm_gmm

    topo = kaldi_hmm_gmm.HmmTopology()
    topo.read(text)
    topo.check()
    return topo
