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

Each link makes its teacher's soft-target store (`make_soft_targets`; stored mode, and the first link
may reuse a store of the teacher, e.g. the main recipe's soft_T2/) and then trains (`train`). Both skip
finished outputs, so a rerun resumes at the first unfinished link. <dir>/link.json records each
link's role, shape, teacher and training config.

The command line is `asr-kd distill-chain` (asr_kd/bin/distill_chain.py).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from asr_kd.distill.ensemble import MeanType
from asr_kd.distill.soft_targets import SoftTargetConfig, make_soft_targets
from asr_kd.models.shapes import NetShape, parse_shape
from asr_kd.train.train import TrainConfig, train
from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_write_json

__all__ = ["ChainLink", "parse_shape_path", "plan_chain", "soft_targets_dir",
           "link_train_config", "link_soft_target_config", "run_chain"]

log = logging.getLogger(__name__)

SoftTargetMode = Literal["stored", "online"]
# TrainConfig fields each link sets itself; the same ones among the shared train options would be ambiguous.
_LINK_FIELDS = ("exp_dir", "model_shape", "teacher_checkpoints", "soft_targets_dir", "temperature",
                "hard_weight", "frame_bank")


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


def link_soft_target_config(link: ChainLink, train_bank: str | Path, temperature: float, top_k: int | str,
                            mean: MeanType = "arithmetic", device: str = "auto") -> SoftTargetConfig:
    """The store of the top-k targets of `link`'s teacher over `train_bank`."""
    return SoftTargetConfig(teacher=list(link.teacher), frame_bank=Path(train_bank),
                            out_dir=soft_targets_dir(link, temperature), temperature=temperature, top_k=top_k,
                            mean=mean, device=device)


def link_train_config(link: ChainLink, frame_bank: str | Path, *, temperature: float, hard_weight: float,
                      soft_targets: SoftTargetMode = "stored", first_store: str | Path | None = None,
                      mean: MeanType = "arithmetic", train_options: Mapping[str, Any] | None = None) -> TrainConfig:
    """How `link` trains: the shared `train_options` (TrainConfig fields), then its shape and its teacher."""
    train_options = dict(train_options or {})
    clashes = sorted(set(train_options) & set(_LINK_FIELDS))
    if clashes:
        options = ["--" + name.replace("_", "-") for name in clashes]
        raise InputError(f"train options {options} are set by each chain link; leave them out")
    if soft_targets == "stored":
        teacher: dict[str, Any] = {"soft_targets_dir": soft_targets_dir(link, temperature, first_store)}
    elif soft_targets == "online":
        teacher = {"teacher_checkpoints": list(link.teacher), "teacher_mean": mean}
    else:
        raise InputError(f"soft targets must be 'stored' or 'online', got {soft_targets!r}")
    return TrainConfig(**{**train_options, "exp_dir": link.exp_dir, "frame_bank": Path(frame_bank),
                          "model_shape": str(link.shape), **teacher,
                          "temperature": temperature, "hard_weight": hard_weight})


def run_chain(links: Sequence[ChainLink], frame_bank: str | Path, *, temperature: float, hard_weight: float,
              soft_targets: SoftTargetMode = "stored", first_store: str | Path | None = None,
              top_k: int | str = "auto", mean: MeanType = "arithmetic", train_options: Mapping[str, Any] | None = None,
              device: str = "auto") -> None:
    """Train every link in order (teacher soft targets first when stored); finished steps are skipped.

    `train_options` are TrainConfig fields shared by every link (e.g. {"lr": 0.1, "num_epochs": 3});
    `device` runs the teachers that make the stores.
    """
    for link in links:
        log.info("link %d: %s %s from %s", link.index, link.role, link.shape, " ".join(map(str, link.teacher)))
        if soft_targets == "stored" and not (link.index == 1 and first_store):
            make_soft_targets(link_soft_target_config(link, Path(frame_bank) / "train", temperature, top_k, mean,
                                                      device))
        config = link_train_config(link, frame_bank, temperature=temperature, hard_weight=hard_weight,
                                   soft_targets=soft_targets, first_store=first_store, mean=mean,
                                   train_options=train_options)
        link.exp_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(link.exp_dir / "link.json", {
            "index": link.index, "role": link.role, "shape": str(link.shape), "lineage": link.lineage,
            "teacher": [str(p) for p in link.teacher], "train_config": config.to_json()})
        train(config)
