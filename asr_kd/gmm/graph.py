"""The decoding graph HCLG = min(det(H o min(det(C o min(det(L o G)))))) with self-loops, as Kaldi's mkgraph.sh.

H and C come from a GMM system's tree and transition model, L and G from a lang directory (`asr_kd.lang`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Iterable

import kaldi_hmm_gmm
import kaldifst

from asr_kd.gmm.model_io import load_transition_model, load_tree
from asr_kd.lang.lang import Lang
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path, atomic_write_json, read_json

logger = logging.getLogger(__name__)


def fst_size(fst: kaldifst.StdVectorFst) -> dict[str, int]:
    """Number of states and arcs of a VectorFst (its states are numbered 0..n-1)."""
    num_states = fst.num_states
    return {"states": num_states, "arcs": sum(map(fst.num_arcs, range(num_states)))}


def remove_input_symbols(fst: kaldifst.StdVectorFst, symbols: Iterable[int],
                         other_labels: Iterable[int]) -> kaldifst.StdVectorFst:
    """`fst` with input labels `symbols` replaced by epsilon (Kaldi's fstrmsymbols).

    `other_labels` are all the other input labels `fst` may have. Done as a composition with a
    one-state relabelling transducer so it stays in C++: visiting every arc from Python takes
    minutes on a real HCLG.
    """
    relabel = kaldifst.StdVectorFst()
    state = relabel.add_state()
    relabel.start = state
    relabel.set_final(state, 0.0)
    for label in other_labels:
        relabel.add_arc(state, kaldifst.StdArc(label, label, 0.0, state))
    for label in symbols:
        relabel.add_arc(state, kaldifst.StdArc(0, label, 0.0, state))
    kaldifst.arcsort(relabel, sort_type="olabel")
    return kaldifst.compose(relabel, fst)


def _fingerprint(paths: Iterable[str | os.PathLike]) -> dict[str, list[int]]:
    """Size and mtime of each input file: a rebuilt tree, model or G invalidates the graph."""
    out = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError(f"{path}: not found")
        stat = path.stat()
        out[str(path.resolve())] = [stat.st_size, stat.st_mtime_ns]
    return out


def compose_lg(lang: Lang) -> kaldifst.StdVectorFst:
    """LG = minimize_encoded(determinize_star(L_disambig o G)), determinized in the log semiring."""
    lexicon_fst = lang.read_fst("L_disambig.fst")
    grammar = lang.read_fst("G.fst")
    kaldifst.arcsort(lexicon_fst, sort_type="olabel")
    kaldifst.arcsort(grammar, sort_type="ilabel")
    lg = kaldifst.compose(lexicon_fst, grammar)
    if lg.num_states == 0:
        raise InputError(f"{lang.dir}: L_disambig o G is empty (do G's words match words.txt?)")
    if kaldifst.determinize_star(lg, use_log=True):
        raise RuntimeError("determinizing LG stopped early")
    kaldifst.minimize_encoded(lg)
    return lg


def compose_context(lg: kaldifst.StdVectorFst, disambig_phones: list[int],
                    ctx_dep) -> tuple[kaldifst.StdVectorFst, list[list[int]]]:
    """CLG = C o LG for the tree's context window; also the phone window behind each CLG input label."""
    clg, ilabels = kaldifst.compose_context(disambig_phones, ctx_dep.context_width, ctx_dep.central_position, lg)
    kaldifst.arcsort(clg, sort_type="ilabel")
    return clg, ilabels


def compose_hclga(clg: kaldifst.StdVectorFst, ilabels: list[list[int]], ctx_dep, trans_model,
                  transition_scale: float = 1.0) -> kaldifst.StdVectorFst:
    """HCLG without self-loops: min(rmsymbols(det(H o CLG))), Kaldi's HCLGa.fst."""
    h_fst, disambig_tids = kaldi_hmm_gmm.get_h_transducer(
        ilabels, ctx_dep, trans_model, kaldi_hmm_gmm.HTransducerConfig(transition_scale=transition_scale)
    )
    kaldifst.arcsort(h_fst, sort_type="olabel")
    hclga = kaldifst.compose(h_fst, clg)
    if kaldifst.determinize_star(hclga, use_log=True):
        raise RuntimeError("determinizing HCLG stopped early")
    hclga = remove_input_symbols(hclga, disambig_tids, range(1, trans_model.num_transition_ids + 1))
    kaldifst.minimize_encoded(hclga)
    return hclga


def make_hclg(
    lang_test_dir: str | os.PathLike,
    tree_path: str | os.PathLike,
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    self_loop_scale: float = 0.1,
    transition_scale: float = 1.0,
) -> Path:
    """Build `<out_dir>/HCLG.fst` (input: transition-ids, output: words) and `<out_dir>/info.json`.

    `lang_test_dir` is a lang directory with G.fst; the tree and model come from the GMM stage
    (`asr_kd.gmm.model_io` formats). Skips the work if HCLG.fst and info.json exist.
    """
    out_dir = Path(out_dir)
    hclg_path = out_dir / "HCLG.fst"
    info_path = out_dir / "info.json"
    lang = Lang.load(lang_test_dir)
    inputs = _fingerprint([tree_path, model_path, lang.dir / "L_disambig.fst", lang.dir / "G.fst"])
    inputs.update(self_loop_scale=self_loop_scale, transition_scale=transition_scale)
    if hclg_path.is_file() and info_path.is_file() and read_json(info_path).get("inputs") == inputs:
        logger.info("%s is up to date; skipping", hclg_path)
        return hclg_path
    ctx_dep = load_tree(tree_path)
    trans_model = load_transition_model(model_path)
    if sorted(trans_model.phones) != lang.phones:
        raise InputError(f"{model_path}: the model's phones do not match {lang.dir}/phones.txt")
    if trans_model.num_pdfs != ctx_dep.num_pdfs:
        raise InputError(f"{model_path} has {trans_model.num_pdfs} pdfs but {tree_path} has {ctx_dep.num_pdfs}")
    timings: dict[str, float] = {}
    sizes: dict[str, dict[str, int]] = {}

    def step(name: str, make):
        t0 = time.perf_counter()
        result = make()
        timings[name] = time.perf_counter() - t0
        sizes[name] = fst_size(result[0] if isinstance(result, tuple) else result)
        logger.info("%s: %d states, %d arcs (%.1f s)", name, sizes[name]["states"], sizes[name]["arcs"], timings[name])
        return result

    lg = step("LG", lambda: compose_lg(lang))
    clg, ilabels = step("CLG", lambda: compose_context(lg, lang.disambig_phones, ctx_dep))
    hclg = step("HCLGa", lambda: compose_hclga(clg, ilabels, ctx_dep, trans_model, transition_scale))
    hclg = step("HCLG", lambda: kaldi_hmm_gmm.add_self_loops(
        self_loop_scale=self_loop_scale, disambig_syms=[], reorder=True, trans_model=trans_model, ifst=hclg))
    kaldifst.arcsort(hclg, sort_type="ilabel")

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(hclg_path) as tmp:
        if not hclg.write(str(tmp)):
            raise OSError(f"could not write {hclg_path}")
    for name in ("words.txt", "phones.txt"):
        with atomic_path(out_dir / name) as tmp:
            shutil.copyfile(lang.dir / name, tmp)
    info = {
        "lang_dir": str(lang.dir),
        "tree": str(tree_path),
        "model": str(model_path),
        "context_width": ctx_dep.context_width,
        "central_position": ctx_dep.central_position,
        "self_loop_scale": self_loop_scale,
        "transition_scale": transition_scale,
        "sizes": sizes,
        "inputs": inputs,
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    atomic_write_json(info_path, info)
    logger.info("wrote %s: %d states, %d arcs, built in %.1f s", hclg_path, sizes["HCLG"]["states"],
                sizes["HCLG"]["arcs"], sum(timings.values()))
    return hclg_path

