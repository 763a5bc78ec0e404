"""The paper's 8 x 2560 ReLU network trains on the CPU, with the trainer's step, initialisation and precision.

The precision is the one `--amp auto` gives here: bf16 autocast on a CPU with bf16 units (AVX512-BF16
or AMX), fp32 on one without, where bf16 is emulated and these 40 steps took over 5 minutes on 2 cores
(tests/test_device.py runs the bf16 step itself on a small network everywhere).

Data: frames drawn around one random mean window per class (unit-variance noise, class means of
std 0.5): labels that the network can only predict by reading its input through all 8 layers, and
classes uniform, so a loss well below log(classes) is learning, not the label prior. Fresh frames
every step: the loss that falls is on frames the network has not seen.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from asr_kd.models import FrameClassifier, shape_config
from asr_kd.train.attribute_dict import AttributeDict
from asr_kd.train.train import _make_optimizer, train_step
from asr_kd.utils.device import autocast, use_bf16

NUM_CLASSES, BATCH, STEPS = 32, 256, 40
CPU = torch.device("cpu")
BF16 = use_bf16("auto", CPU)  # what the trainer runs in on this CPU


def hidden_rms(model: FrameClassifier, inputs: Tensor) -> list[float]:
    """RMS of each hidden layer's output (after its ReLU) on `inputs`, in the training's precision."""
    outputs: list[Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out.float()))
             for m in model.hidden if isinstance(m, nn.ReLU)]
    with torch.no_grad(), autocast(CPU, BF16):
        model(inputs)
    for hook in hooks:
        hook.remove()
    return [float(out.pow(2).mean().sqrt()) for out in outputs]


def test_paper_shape_trains_in_the_cpus_precision_and_keeps_every_layer_o1():
    config = shape_config("paper", num_outputs=NUM_CLASSES)
    assert (config.num_layers, config.hidden_dim, config.context) == (8, 2560, 26)
    gen = torch.Generator().manual_seed(0)
    means = 0.5 * torch.randn(NUM_CLASSES, config.context, config.feat_dim, generator=gen)

    def batch() -> dict[str, Tensor]:
        labels = torch.randint(NUM_CLASSES, (BATCH,), generator=gen)
        return {"inputs": means[labels] + torch.randn(BATCH, config.context, config.feat_dim, generator=gen),
                "labels": labels}

    torch.manual_seed(1)
    model = FrameClassifier(config)  # the trainer's model and its initialisation
    probe = batch()["inputs"]
    # He init keeps the second moment layer to layer: with E[x^2] = 1.25 every layer starts at RMS ~1.1.
    # [0.5, 2] allows width-2560 fluctuations; PyTorch's default Linear init (~1/sqrt(3) per layer) leaves
    # 0.009 at layer 8 (measured), and fails here.
    at_init = hidden_rms(model, probe)
    assert len(at_init) == 8 and all(0.5 < r < 2.0 for r in at_init), at_init

    # The trainer's step: its precision, its optimizer (fused SGD with momentum), gradient clipping.
    params = AttributeDict(device=CPU, use_bf16=BF16, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=0.0,
                           grad_clip=5.0)
    optimizer = _make_optimizer(params, model)
    assert optimizer.defaults["fused"] is True
    losses = [float(train_step(params, model, optimizer, batch())["loss_sum"]) / BATCH for _ in range(STEPS)]
    early, late = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert early > 0.8 * math.log(NUM_CLASSES) and late < 0.3 * early, losses

    # Trained: still O(1) through all 8 layers ([0.1, 10]: neither vanished nor blown up by updates).
    trained = hidden_rms(model, probe)
    assert all(0.1 < r < 10.0 for r in trained), trained
