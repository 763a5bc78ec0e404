"""Train a frame classifier on a frame bank (icefall's train.py skeleton).

Usage:
  python -m asr_kd.bin.train --exp-dir exp/member1 --frame-bank exp/bank --model-shape paper --seed 1
  torchrun --nproc-per-node 8 -m asr_kd.bin.train --exp-dir ... (one rank per GPU)
  python -m asr_kd.bin.train --world-size 2 ... (spawn ranks here; gloo on CPU)

Minibatches are random frame indices into a bank held on the device; the context window of each
frame is gathered there with one index op. Outputs in --exp-dir: final.pt (FrameClassifier with
priors), best.pt, epoch-N.pt (every epoch's, or the last --keep-last-epochs), checkpoint.pt (latest
resumable state; checkpoint.prev.pt, the one before it, is resumed from when checkpoint.pt is
damaged), metrics.csv, train.log, and
tensorboard/ (the metrics.csv rows and each epoch's loss terms as TensorBoard events).
A rerun of the same command resumes from checkpoint.pt exactly where the last run stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from asr_kd.bin.common import add_trust_pickle_option, config_defaults, config_from_args, run_cli
from asr_kd.models.shapes import MODEL_SHAPES
from asr_kd.train.train import TrainConfig, TrainingDiverged, train
from asr_kd.utils.device import AMP_CHOICES


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the module doc's layout and shows the options' defaults (those that are not None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        hidden = action.default is None or action.default is False or action.default == [] \
            or action.default == argparse.SUPPRESS
        if not hidden and "default" not in text:
            text += " (default: %(default)s)"
        return text


def get_parser(given_only: bool = False) -> argparse.ArgumentParser:
    """The trainer's options, one per TrainConfig field, defaults from it (`given_only`: no defaults, none required)."""
    p = argparse.ArgumentParser(prog="asr-kd train", description=__doc__, formatter_class=_HelpFormatter,
                                argument_default=argparse.SUPPRESS if given_only else None)
    g = p.add_argument_group("data")
    g.add_argument("--exp-dir", required=not given_only, type=Path,
                   help="where checkpoints, metrics.csv and train.log go")
    g.add_argument("--frame-bank", type=Path, help="directory holding train/ and dev/ frame banks")
    g.add_argument("--train-bank", type=Path, help="training frame bank (default: FRAME_BANK/train)")
    g.add_argument("--dev-bank", type=Path, help="dev frame bank (default: FRAME_BANK/dev)")
    g.add_argument("--subset-fraction", type=float,
                   help="train on this seeded fraction of the training utterances (e.g. 0.03, paper Table 5)")
    g.add_argument("--subset-seed", type=int, help="seed choosing the subset's utterances")
    g.add_argument("--frames-per-epoch", type=int,
                   help="frames drawn per epoch (0: the training frames once). A transfer set larger than the "
                        "labelled data then gets the same number of updates as a model trained on the labelled data")
    g.add_argument("--mix-shares",
                   help="fixed shares of each epoch by group of an augmented bank, e.g. 'original=0.5': half of every "
                        "epoch from the unperturbed utterances, the rest uniformly from the copies (groups: original "
                        "and each perturbation, the suffix of a copy's cut id; default: uniform over all frames)")
    g = p.add_argument_group("model")
    g.add_argument("--model-shape", help=f"hidden layers x width, LAYERSxWIDTH (e.g. 3x512), or a named shape: "
                   f"{', '.join(f'{n} = {c.num_layers}x{c.hidden_dim}' for n, c in MODEL_SHAPES.items())}; "
                   "all with a 20/5-frame context and ReLU")
    g.add_argument("--left-context", type=int, help="override the shape's left context (frames)")
    g.add_argument("--right-context", type=int, help="override the shape's right context (frames)")
    g.add_argument("--activation", choices=["relu", "sigmoid", "tanh", "gelu", "silu"], help="hidden activation")
    g.add_argument("--dropout", type=float, help="dropout after each hidden layer")
    g.add_argument("--norm", choices=["none", "layernorm", "batchnorm"], help="normalisation in hidden layers")
    g.add_argument("--input-norm", choices=["none", "layernorm", "batchnorm"], help="normalisation of input frames")
    g.add_argument("--input-lifter", type=int, metavar="N",
                   help="keep the first N cepstral coefficients of each input frame (its DCT over the mel bins): "
                        "the spectral envelope without fine structure such as pitch harmonics (0: off)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--num-epochs", type=int)
    g.add_argument("--batch-size", type=int, help="frames per step per rank")
    g.add_argument("--optimizer", choices=["sgd", "adam"])
    g.add_argument("--lr", type=float, help="base learning rate")
    g.add_argument("--momentum", type=float, help="SGD momentum")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--lr-schedule", choices=["newbob", "plateau", "cosine", "constant"],
                   help="newbob: halve the LR once the dev accuracy gain per epoch drops below --newbob-start-gain, "
                        "then every epoch; plateau: halve it after each epoch that gains less than that")
    g.add_argument("--newbob-start-gain", type=float,
                   help="dev accuracy gain (fraction) below which an epoch starts newbob's halving (plateau: halves the LR)")
    g.add_argument("--newbob-end-gain", type=float,
                   help="stop when halving (plateau: at --min-lr) and the gain is below this (0: never)")
    g.add_argument("--warmup-steps", type=int, help="linear warm-up steps (cosine schedule)")
    g.add_argument("--min-lr", type=float)
    g.add_argument("--grad-clip", type=float, help="max gradient norm (0: no clipping)")
    g.add_argument("--max-norm", type=float,
                   help="after each update, cap the L2 norm of every unit's incoming weights at this (0: off)")
    g.add_argument("--early-stopping-patience", type=int,
                   help="stop after this many epochs without a better dev accuracy; final.pt is then the best model")
    g.add_argument("--dev-every", type=int,
                   help="evaluate dev after every N-th epoch and after the last (default 1; must be 1 under early "
                        "stopping or newbob): a schedule blind to dev need not pay for it every epoch")
    g.add_argument("--seed", type=int, help="model initialisation and dropout (and shuffling, unless "
                   "--shuffle-seed)")
    g.add_argument("--shuffle-seed", type=int,
                   help="seed of the frame order alone: ensemble members that differ only in their initialisation "
                        "share it (default: --seed)")
    g.add_argument("--init-from", type=Path,
                   help="start from this FrameClassifier checkpoint's weights (same model config) instead of a "
                        "random init; a resumed run ignores it")
    g = p.add_argument_group("distillation")
    g.add_argument("--teacher-checkpoints", nargs="*", type=Path,
                   help="teacher models; their ensemble's soft targets are computed online")
    g.add_argument("--teacher-mean", choices=["arithmetic", "geometric"])
    g.add_argument("--soft-targets-dir", type=Path, help="stored top-k soft targets of the training frame bank")
    g.add_argument("--min-kept-mass", type=float,
                   help="refuse a --soft-targets-dir whose top-k keep less of the teacher's mass on average")
    g.add_argument("--resident-soft-targets", choices=("auto", "yes", "no"),
                   help="hold the --soft-targets-dir arrays on the training device instead of reading the memory-mapped "
                        "files (auto: on CUDA)")
    g.add_argument("--temperature", type=float, help="distillation temperature T")
    g.add_argument("--hard-weight", type=float, help="weight of the hard-label CE relative to the soft term")
    g.add_argument("--temperature-schedule",
                   help="T per epoch, e.g. 'linear:5:1:1:10' or 'step:1=5,4=2' (online teacher only; "
                        "overrides --temperature)")
    g.add_argument("--hard-weight-schedule", help="hard weight per epoch, same forms; overrides --hard-weight")
    g.add_argument("--augment",
                   help="perturb training windows, e.g. 'freq_mask=8,time_mask=5,noise=0.1' or 'mixup=0.4' "
                        "(asr_kd.train.augment; an online teacher scores the perturbed windows too)")
    g.add_argument("--soft-until-epoch", type=int,
                   help="early-stopped distillation: after this epoch train on hard labels only")
    g = p.add_argument_group("running")
    g.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--amp", choices=AMP_CHOICES,
                   help="bf16 autocast with fp32 master weights (auto: where the GPU or CPU has bf16 units)")
    g.add_argument("--world-size", type=int, help="spawn this many data-parallel ranks (torchrun sets it itself)")
    g.add_argument("--master-port", type=int, help="rendezvous port for --world-size > 1")
    g.add_argument("--checkpoint-every", type=int, help="write checkpoint.pt every N steps (and each epoch)")
    g.add_argument("--keep-last-epochs", type=int,
                   help="keep only the latest N epoch-N.pt files (0: every one); checkpoint.pt, best.pt, final.pt stay")
    g.add_argument("--log-interval", type=int, help="steps between log lines and CSV rows")
    g.add_argument("--max-steps", type=int, help="stop (resumably) after this many steps in all (0: no limit)")
    g.add_argument("--no-resume", action="store_true", help="ignore checkpoint.pt and start again")
    add_trust_pickle_option(p)
    if not given_only:
        p.set_defaults(**config_defaults(TrainConfig))
    return p


def parse_train_options(argv: Sequence[str]) -> dict[str, Any]:
    """The `asr-kd train` options given in `argv` (no others), as TrainConfig field values."""
    return vars(get_parser(given_only=True).parse_args(argv))


def run_training(body: Callable[[], object], prog: str, trust_pickle_files: bool = False) -> int:
    """`run_cli` for commands that train: also 1 with one line when the loss diverged or a spawned rank failed."""
    try:
        return run_cli(body, prog, trust_pickle_files)
    except TrainingDiverged as err:
        print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        return 1
    except torch.multiprocessing.ProcessRaisedException as err:
        # A spawned rank failed; its own traceback is in the message, the last line says why.
        print(f"{prog}: error: a rank failed: {str(err).strip().splitlines()[-1]}", file=sys.stderr, flush=True)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options and train: spawn --world-size ranks, join torchrun's, or run one process."""
    config = config_from_args(TrainConfig, get_parser().parse_args(argv))
    return run_training(lambda: train(config), "asr-kd train")


if __name__ == "__main__":
    sys.exit(main())
