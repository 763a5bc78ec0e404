"""PNG plots for RESULTS.md: dev frame accuracy per epoch, dev WER against the LM weight, WER by part."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from asr_kd.report.collect import Results
from asr_kd.report.significance import wer_intervals
from asr_kd.utils.io import atomic_path


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _epoch_size(frames: int | None) -> str:
    return "?" if frames is None else f"{frames / 1e6:.2f} M" if frames >= 100_000 else f"{frames / 1e3:.1f} k"


def curve_labels(names: list[str], epoch_frames: dict[str, int | None]) -> dict[str, str]:
    """The legend label of each network's dev curve: its name ("ensemble members" for every member), with its
    epoch's training frames when the networks' epochs differ in size (a student's transfer set, the 3% subset),
    so that an epoch on the shared x axis is not read as the same amount of training."""
    sized = len({epoch_frames.get(name) for name in names}) > 1
    labels = {}
    for name in names:
        label = "ensemble members" if name.startswith("member") else name
        labels[name] = f"{label} (epoch {_epoch_size(epoch_frames.get(name))} frames)" if sized else label
    return labels


def plot_dev_accuracy(res: Results, path: Path) -> Path | None:
    """Dev frame accuracy per epoch of every trained network (members thin and grey), labelled by `curve_labels`."""
    curves = {name: pts for name, pts in res.curves.items() if pts}
    if not curves:
        return None
    labels = curve_labels(list(curves), res.epoch_frames)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    member_labelled = False
    for name, pts in curves.items():
        epochs, acc = zip(*pts)
        if name.startswith("member"):
            ax.plot(epochs, [100 * a for a in acc], color="0.6", lw=1, marker=".",
                    label=None if member_labelled else labels[name])
            member_labelled = True
        else:
            ax.plot(epochs, [100 * a for a in acc], lw=2, marker="o", label=labels[name])
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev frame accuracy %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)  # beside the curves
    return _save(fig, path)


def plot_wer_vs_lmwt(res: Results, path: Path) -> Path | None:
    """Dev WER at each LM weight tried, per decoded system."""
    series = {}
    if res.gmm:
        series["GMM tri2"] = res.gmm["dev_wer_by_lmwt"]
    for system, record in res.decode.items():
        if record:
            series[system] = record["dev_wer_by_lmwt"]
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, by_lmwt in series.items():
        points = sorted((float(w), wer) for w, wer in by_lmwt.items())
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_xlabel("LM weight (acoustic scale = 1 / weight)")
    ax.set_ylabel("dev WER %")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_wer_by_part(runs: Sequence[Results], path: Path) -> Path | None:
    """Each decoded system's WER on each part (one panel per part, its own scale), with 95% bootstrap intervals;
    several runs (seeds): their mean WER, from the errors summed over them."""
    intervals = wer_intervals(runs)
    if not intervals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(intervals), figsize=(3.2 * len(intervals), 3.6), squeeze=False)
    for ax, (part, by_system) in zip(axes[0], intervals.items()):
        labels = list(by_system)
        wer = [by_system[s][0] for s in labels]
        below = [by_system[s][0] - by_system[s][1] for s in labels]
        above = [by_system[s][2] - by_system[s][0] for s in labels]
        ax.bar(range(len(labels)), wer, yerr=[below, above], capsize=4, color="0.75", edgecolor="0.3")
        for x, value in enumerate(wer):
            ax.annotate(f"{value:.2f}", (x, value), xytext=(3, 2), textcoords="offset points", fontsize="small")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_title(part)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("WER % (95% bootstrap interval)")
    if len(runs) > 1:
        fig.suptitle(f"mean over {len(runs)} seeds (errors summed over them)", fontsize="medium")
    fig.tight_layout()
    return _save(fig, path)
