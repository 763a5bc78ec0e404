"""Learning-rate schedules with resumable state: newbob (Kaldi nnet1), plateau, cosine, constant."""

from __future__ import annotations

import math
from typing import Any

import torch

from asr_kd.utils.errors import InputError


class LrSchedule:
    """Sets the optimizer's learning rate every step and decides at each epoch end whether to stop."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float):
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.lr = base_lr
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr

    def step(self, global_step: int) -> None:
        """Called before optimizer step `global_step` (0-based)."""

    def epoch_end(self, dev_accuracy: float) -> bool:
        """Called after each epoch's dev evaluation; True means training should stop."""
        return False

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._apply()


class NewbobSchedule(LrSchedule):
    """Kaldi nnet1's schedule: keep the LR while dev accuracy gains >= `start_gain` per epoch, then
    halve it every epoch; stop once halving and the gain falls below `end_gain` (if > 0)."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, start_gain: float = 0.005,
                 end_gain: float = 0.0005, factor: float = 0.5, min_lr: float = 0.0):
        self.start_gain, self.end_gain, self.factor, self.min_lr = start_gain, end_gain, factor, min_lr
        self.halving = False
        self.prev_accuracy: float | None = None
        super().__init__(optimizer, base_lr)

    def _gain_over_best(self, dev_accuracy: float) -> float:
        """This epoch's dev accuracy gain over the best before it (inf for the first); records the best."""
        gain = math.inf if self.prev_accuracy is None else dev_accuracy - self.prev_accuracy
        self.prev_accuracy = dev_accuracy if self.prev_accuracy is None else max(self.prev_accuracy, dev_accuracy)
        return gain

    def epoch_end(self, dev_accuracy: float) -> bool:
        gain = self._gain_over_best(dev_accuracy)
        if self.halving and self.end_gain > 0 and gain < self.end_gain:
            return True
        if gain < self.start_gain:
            self.halving = True
        if self.halving:
            self.lr = max(self.lr * self.factor, self.min_lr)
            self._apply()
        return False


class PlateauSchedule(NewbobSchedule):
    """Newbob's thresholds, but the LR is halved after each epoch whose dev accuracy gains less than
    `start_gain` over the best so far, and only then: each LR is kept while it still helps (newbob, once
    halving, halves every epoch). Stop when an epoch at `min_lr` gains less than `end_gain` (if > 0)."""

    def epoch_end(self, dev_accuracy: float) -> bool:
        gain = self._gain_over_best(dev_accuracy)
        if gain >= self.start_gain:
            return False
        if self.end_gain > 0 and self.lr <= self.min_lr and gain < self.end_gain:
            return True
        self.lr = max(self.lr * self.factor, self.min_lr)
        self._apply()
        return False


class CosineSchedule(LrSchedule):
    """Linear warm-up over `warmup_steps`, then cosine decay to `min_lr` at `total_steps`."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, total_steps: int,
                 warmup_steps: int = 0, min_lr: float = 0.0):
        self.total_steps, self.warmup_steps, self.min_lr = max(total_steps, 1), warmup_steps, min_lr
        super().__init__(optimizer, base_lr)
        self.step(0)

    def step(self, global_step: int) -> None:
        if global_step < self.warmup_steps:
            self.lr = self.base_lr * (global_step + 1) / self.warmup_steps
        else:
            span = max(self.total_steps - self.warmup_steps, 1)
            progress = min((global_step - self.warmup_steps) / span, 1.0)
            self.lr = self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))
        self._apply()


def make_schedule(name: str, optimizer: torch.optim.Optimizer, base_lr: float, total_steps: int,
                  warmup_steps: int = 0, min_lr: float = 0.0, start_gain: float = 0.005,
                  end_gain: float = 0.0005) -> LrSchedule:
    """Schedule `name` (newbob, plateau, cosine or constant) over an optimizer."""
    if name == "newbob":
        return NewbobSchedule(optimizer, base_lr, start_gain=start_gain, end_gain=end_gain, min_lr=min_lr)
    if name == "plateau":
        return PlateauSchedule(optimizer, base_lr, start_gain=start_gain, end_gain=end_gain, min_lr=min_lr)
    if name == "cosine":
        return CosineSchedule(optimizer, base_lr, total_steps, warmup_steps=warmup_steps, min_lr=min_lr)
    if name == "constant":
        return LrSchedule(optimizer, base_lr)
    raise InputError(f"unknown --lr-schedule {name!r}; choose newbob, plateau, cosine or constant")
