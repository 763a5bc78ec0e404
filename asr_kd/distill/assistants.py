"""Teacher-assistant chains (Mirzadeh et al. 2019): teacher -> assistant(s) -> student.

A chain is a path of network shapes "LxW" (L hidden layers of W units), e.g. the assistant path
"2x96 2x64" and the student shape "2x32". Each link is a frame classifier distilled from the link
before it; the first link's teacher is the given ensemble. An empty path is direct distillation.

Link directories nest by lineage, so chains that share a prefix share its assistants:

    <out-dir>/2x32/                  the student distilled straight from the teacher
    <out-dir>/2x96/                  assistant 1 (teacher -> 2x96)
    <out-dir>/2x96/2x64/             assistant 2 (2x96 -> 2x64)
    <out-dir>/2x96/2x64/2x32/        the chain's student
    <dir>/soft_T<T>/                 stored top-k soft targets of the model in <dir> (--soft-targets stored)

Each link runs `asr-kd make-soft-targets` for its teacher (stored mode; the first link may reuse a
store of the teacher, e.g. the main recipe's soft_T2/) and then `asr-kd train`. Both skip
finished outputs, so a rerun resumes at the first unfinished link.

The command line is `asr-kd distill-chain` (asr_kd/bin/distill_chain.py).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json

__all__ = ["NetShape", "ChainLink", "parse_shape", "parse_shape_path", "plan_chain", "soft_targets_dir",
           "link_train_args", "link_soft_target_args", "run_chain"]

log = logging.getLogger(__name__)

SoftTargetMode = Literal["stored", "online"]
_SHAPE = re.compile(r"([1-9][0-9]*)x([1-9][0-9]*)")
# Options each link sets itself; the same ones among the shared train options would be ambiguous.
_LINK_OPTIONS = ("--exp-dir", "--num-layers", "--hidden-dim", "--teacher-checkpoints", "--soft-targets-dir",
                 "--temperature", "--hard-weight", "--frame-bank")


@dataclass(frozen=True, order=True)
class NetShape:
    """Hidden layers x width of a frame classifier (context and outputs come from the preset/bank)."""

    num_layers: int
    hidden_dim: int

    def __str__(self) -> str:
        return f"{self.num_layers}x{self.hidden_dim}"


def parse_shape(text: str) -> NetShape:
    """"2x96" -> NetShape(2, 96); InputError for anything else."""
    match = _SHAPE.fullmatch(text.strip())
    if match is None:
        raise InputError(f"bad network shape {text!r}: expected LAYERSxWIDTH with positive integers, e.g. 2x96")
    return NetShape(int(match.group(1)), int(match.group(2)))


def parse_shape_path(text: str) -> tuple[NetShape, ...]:
    """"2x96 2x64" (spaces or commas) -> the assistants' shapes, teacher side first; never empty."""
    items = [t for t in re.split(r"[\s,]+", text.strip()) if t]
    if not items:
        raise InputError("empty assistant path: give at least one LAYERSxWIDTH shape, e.g. '2x96 2x64' "
                         "(direct distillation needs no path)")
    return tuple(parse_shape(t) for t in items)


@dataclass(frozen=True)
class ChainLink:
    """One distillation step: a `shape` network trained in `exp_dir` from the model(s) `teacher`."""

    index: int                    # 1-based position in the chain
    shape: NetShape
    exp_dir: Path
    teacher: tuple[Path, ...]     # checkpoints: the ensemble for link 1, else the previous link's final.pt
    teacher_dir: Path             # where the teacher's stored soft targets live (the previous link's exp_dir)
    is_student: bool

    @property
    def final(self) -> Path:
        """The trained model of this link."""
        return self.exp_dir / "final.pt"

    @property
    def lineage(self) -> str:
        """Shapes from the first assistant to this link, e.g. "2x96-2x64-2x32" (a file-name-safe id)."""
        # exp_dir is <root>/<shape 1>/.../<shape index>: its last `index` parts are the lineage.
        return "-".join(self.exp_dir.parts[-self.index:])

    @property
    def role(self) -> str:
        """"student" or "assistant"."""
        return "student" if self.is_student else "assistant"


def plan_chain(teacher: Sequence[str | Path], assistants: Sequence[NetShape], student: NetShape,
               out_dir: str | Path) -> list[ChainLink]:
    """The links teacher -> assistants[0] -> ... -> student, each taught by the link before it."""
    if not teacher:
        raise InputError("a chain needs teacher checkpoints (the ensemble members or one model)")
    links: list[ChainLink] = []
    parent_dir, parent = Path(out_dir), tuple(Path(p) for p in teacher)
    for i, shape in enumerate([*assistants, student], start=1):
        exp_dir = parent_dir / str(shape)
        link = ChainLink(i, shape, exp_dir, parent, parent_dir, is_student=i == len(assistants) + 1)
        links.append(link)
        parent_dir, parent = exp_dir, (link.final,)
    return links


def soft_targets_dir(link: ChainLink, temperature: float, first_store: str | Path | None = None) -> Path:
    """The stored soft targets `link` learns from: beside its teacher, or `first_store` for link 1."""
    if link.index == 1 and first_store:
        return Path(first_store)
    return link.teacher_dir / f"soft_T{temperature:g}"


def link_soft_target_args(link: ChainLink, train_bank: str | Path, temperature: float, top_k: int | str,
                          mean: str = "arithmetic") -> list[str]:
    """`asr-kd make-soft-targets` options storing the top-k targets of `link`'s teacher."""
    return ["--teacher", *map(str, link.teacher), "--frame-bank", str(train_bank),
            "--out-dir", str(soft_targets_dir(link, temperature)), "--temperature", f"{temperature:g}",
            "--top-k", str(top_k), "--mean", mean]


def link_train_args(link: ChainLink, frame_bank: str | Path, *, temperature: float, hard_weight: float,
                    soft_targets: SoftTargetMode = "stored", first_store: str | Path | None = None,
                    mean: str = "arithmetic", train_options: Sequence[str] = ()) -> list[str]:
    """`asr-kd train` options of `link`: the shared `train_options`, then its shape and its teacher."""
    clashes = sorted({o.split("=")[0] for o in train_options} & set(_LINK_OPTIONS))
    if clashes:
        raise InputError(f"train options {clashes} are set by each chain link; leave them out")
    if soft_targets == "stored":
        teacher = ["--soft-targets-dir", str(soft_targets_dir(link, temperature, first_store))]
    elif soft_targets == "online":
        teacher = ["--teacher-checkpoints", *map(str, link.teacher), "--teacher-mean", mean]
    else:
        raise InputError(f"soft targets must be 'stored' or 'online', got {soft_targets!r}")
    return [*train_options, "--exp-dir", str(link.exp_dir), "--frame-bank", str(frame_bank),
            "--num-layers", str(link.shape.num_layers), "--hidden-dim", str(link.shape.hidden_dim),
            *teacher, "--temperature", f"{temperature:g}", "--hard-weight", f"{hard_weight:g}"]


def run_chain(links: Sequence[ChainLink], frame_bank: str | Path, *, temperature: float, hard_weight: float,
              soft_targets: SoftTargetMode = "stored", first_store: str | Path | None = None,
              top_k: int | str = "auto", mean: str = "arithmetic", train_options: Sequence[str] = (),
              soft_target_options: Sequence[str] = ()) -> None:
    """Train every link in order (teacher soft targets first when stored); finished steps are skipped."""
    from asr_kd.bin.make_soft_targets import main as make_soft_targets_main
    from asr_kd.train.train import main as train_main

    for link in links:
        log.info("link %d: %s %s from %s", link.index, link.role, link.shape, " ".join(map(str, link.teacher)))
        if soft_targets == "stored" and not (link.index == 1 and first_store):
            args = [*link_soft_target_args(link, Path(frame_bank) / "train", temperature, top_k, mean),
                    *soft_target_options]
            if make_soft_targets_main(args) != 0:
                raise InputError(f"link {link.index} ({link.exp_dir}): make-soft-targets failed ({' '.join(args)})")
        args = link_train_args(link, frame_bank, temperature=temperature, hard_weight=hard_weight,
                               soft_targets=soft_targets, first_store=first_store, mean=mean,
                               train_options=train_options)
        link.exp_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(link.exp_dir / "link.json", {
            "index": link.index, "role": link.role, "shape": str(link.shape), "lineage": link.lineage,
            "teacher": [str(p) for p in link.teacher], "train_args": args})
        if train_main(args) != 0:
            raise InputError(f"link {link.index} ({link.exp_dir}): training failed (asr-kd train {' '.join(args)})")
