"""Training curves for TensorBoard: every metrics.csv row (and a few scalars more) as scalar events.

One events file per model, <exp-dir>/tensorboard/events.out.tfevents.asr-kd, so that
`tensorboard --logdir exp/<name>/nnet` shows the baseline, the members and the students side by side.
Records are appended (and the file closed) as each metrics.csv row is, at the same cadence, with no
writer thread. Tags: `interval/<column>` for the rows written every --log-interval steps,
`epoch/<column>` for the end-of-epoch rows; the step axis is the global step.

A resumed run appends TensorBoard's restart record (SessionLog.START) at the first step after what
metrics.csv kept, so that readers drop what a killed run wrote past its checkpoint; a fresh run
starts the file again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter

EVENTS_FILE = "events.out.tfevents.asr-kd"
NOT_SCALARS = ("epoch", "step")  # the row's position, already the event's step


def row_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """TensorBoard tag -> value of a metrics row: `epoch/...` when it has a dev accuracy, else `interval/...`."""
    section = "epoch" if row.get("dev_acc") is not None else "interval"
    return {f"{section}/{name}": float(value) for name, value in row.items()
            if name not in NOT_SCALARS and value is not None}


class TensorBoardLog:
    """The events file of one training run, appended record by record (a no-op when not `enabled`)."""

    def __init__(self, log_dir: Path, enabled: bool):
        self.path, self.enabled = log_dir / EVENTS_FILE, enabled

    def restart(self, after_step: int | None) -> None:
        """A fresh file (`after_step` None), or a resume: readers drop events of steps after `after_step`."""
        if not self.enabled:
            return
        if after_step is None or not self.path.is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.unlink(missing_ok=True)
            self._append(Event(wall_time=time.time(), step=0, file_version="brain.Event:2"))
        if after_step is not None:
            self._append(Event(wall_time=time.time(), step=after_step + 1,
                               session_log=SessionLog(status=SessionLog.START)))

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """One event holding `scalars` (tag -> value) at global step `step`."""
        if self.enabled and scalars:
            values = [Summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()]
            self._append(Event(wall_time=time.time(), step=step, summary=Summary(value=values)))

    def _append(self, event: Event) -> None:
        with open(self.path, "ab") as f:
            RecordWriter(f).write(event.SerializeToString())
