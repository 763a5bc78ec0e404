"""What the soft-target store and the trainer ask of a teacher: the `FrameTeacher` protocol.

`EnsembleTeacher` (FrameClassifier members) and `MixedTeacher` (GMM and FrameClassifier members)
both provide it; GMM members score the bank frames named by `frame_idx`, networks the windows `x`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from asr_kd.distill.ensemble import MeanType


@runtime_checkable
class FrameTeacher(Protocol):
    """M members whose posteriors, averaged at a temperature, are the soft targets of bank frames."""

    mean: MeanType
    weights: list[float] | None  # normalised per-member weights; None: equal

    @property
    def num_members(self) -> int:
        """M."""

    @property
    def context(self) -> tuple[int, int]:
        """(left, right) frames of context the members' windows `x` hold."""

    def member_logits(self, x: Tensor, frame_idx: Tensor | None = None) -> Tensor:
        """(M, B, C) logits for windows `x` (B, ...) of the bank frames `frame_idx` (B,)."""

    def manifest_record(self) -> dict[str, Any]:
        """What identifies the teacher in a soft-target store's manifest."""

