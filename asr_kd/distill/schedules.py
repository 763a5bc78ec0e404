"""Per-epoch schedules for the distillation temperature and hard-label weight.

Epochs are counted as the trainer counts them (1-based in this project's trainer, like icefall).
A schedule can be written as a string for a CLI option:

    "2"                    constant 2
    "linear:5:1:1:10"      linear ramp from 5 at epoch 1 to 1 at epoch 10, flat outside
    "step:1=5,4=2,8=1"     5 from epoch 1, 2 from epoch 4, 1 from epoch 8

Early-stopped distillation (Cho & Hariharan 2019) trains with the soft term for the first
`soft_until_epoch` epochs and on hard labels only afterwards: `DistillationSchedule.at(epoch)`
then says `use_soft=False`, and the trainer calls `distillation_loss(..., teacher_probs=None)`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Protocol, Sequence

from asr_kd.utils.errors import InputError

__all__ = [
    "Schedule",
    "ConstantSchedule",
    "LinearRampSchedule",
    "StepSchedule",
    "DistillationSettings",
    "DistillationSchedule",
    "parse_schedule",
]


class Schedule(Protocol):
    """A value per epoch."""

    def __call__(self, epoch: int) -> float: ...


@dataclass(frozen=True)
class ConstantSchedule:
    """The same value at every epoch."""

    value: float

    def __call__(self, epoch: int) -> float:
        return self.value


@dataclass(frozen=True)
class LinearRampSchedule:
    """`start` up to `start_epoch`, `end` from `end_epoch`, linear in between."""

    start: float
    end: float
    start_epoch: int
    end_epoch: int

    def __post_init__(self) -> None:
        if self.end_epoch <= self.start_epoch:
            raise InputError(f"linear schedule: end epoch {self.end_epoch} must be after start epoch {self.start_epoch}")

    def __call__(self, epoch: int) -> float:
        if epoch <= self.start_epoch:
            return self.start
        if epoch >= self.end_epoch:
            return self.end
        frac = (epoch - self.start_epoch) / (self.end_epoch - self.start_epoch)
        return self.start + frac * (self.end - self.start)


@dataclass(frozen=True)
class StepSchedule:
    """Piecewise constant: `values[i]` from epoch `epochs[i]` on (the first value also before)."""

    epochs: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.epochs or len(self.epochs) != len(self.values):
            raise InputError("step schedule: needs as many values as epochs, at least one")
        if list(self.epochs) != sorted(set(self.epochs)):
            raise InputError(f"step schedule: epochs must increase strictly, got {list(self.epochs)}")

    def __call__(self, epoch: int) -> float:
        i = bisect.bisect_right(self.epochs, epoch) - 1
        return self.values[max(i, 0)]


def parse_schedule(spec: str) -> Schedule:
    """Parse "2", "linear:START:END:START_EPOCH:END_EPOCH" or "step:E1=V1,E2=V2,..."."""
    text = spec.strip()
    try:
        if text.startswith("linear:"):
            start, end, e0, e1 = text[len("linear:"):].split(":")
            return LinearRampSchedule(float(start), float(end), int(e0), int(e1))
        if text.startswith("step:"):
            pairs = [item.split("=") for item in text[len("step:"):].split(",")]
            return StepSchedule(tuple(int(e) for e, _ in pairs), tuple(float(v) for _, v in pairs))
        return ConstantSchedule(float(text))
    except ValueError as err:
        if isinstance(err, InputError):
            raise
        raise InputError(
            f"bad schedule {spec!r}: expected a number, 'linear:START:END:START_EPOCH:END_EPOCH' "
            f"or 'step:EPOCH=VALUE,...' ({err})"
        ) from None


@dataclass(frozen=True)
class DistillationSettings:
    """What the loss uses in one epoch."""

    temperature: float
    hard_weight: float
    use_soft: bool


@dataclass(frozen=True)
class DistillationSchedule:
    """Temperature and hard weight per epoch; the soft term stops after `soft_until_epoch`."""

    temperature: Schedule = ConstantSchedule(2.0)
    hard_weight: Schedule = ConstantSchedule(0.5)
    soft_until_epoch: int | None = None

    def at(self, epoch: int) -> DistillationSettings:
        """Settings for `epoch`; after `soft_until_epoch` only the hard CE is trained."""
        use_soft = self.soft_until_epoch is None or epoch <= self.soft_until_epoch
        temperature = self.temperature(epoch)
        if temperature <= 0:
            raise InputError(f"temperature schedule gives {temperature} at epoch {epoch}; it must be > 0")
        return DistillationSettings(temperature, self.hard_weight(epoch), use_soft)

    def describe(self, epochs: Sequence[int]) -> str:
        """One line per epoch, for the training log."""
        lines = []
        for e in epochs:
            s = self.at(e)
            soft = f"T={s.temperature:g}" if s.use_soft else "soft off"
            lines.append(f"epoch {e}: {soft}, hard_weight={s.hard_weight:g}")
        return "\n".join(lines)
