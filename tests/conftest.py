"""Shared fixtures: the tiny synthesized corpus and its features, made once per test session.

The suite runs the same checks on every machine: a test names its device (the CPU, or CUDA in
tests/cuda/, collected only where CUDA is available), and `--device auto` fails it (`device_pinned`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

CUDA_TESTS = Path(__file__).parent / "cuda"


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """tests/cuda/ needs a GPU: elsewhere it is not collected at all, even when named (no skips to read past)."""
    if collection_path.is_relative_to(CUDA_TESTS) and not torch.cuda.is_available():
        return True
    return None

TRAIN, DEV, TEST = "train-clean-100", "dev-clean", "test-clean"
TRANSFER = "train-clean-360"  # the tiny corpus's unlabelled transfer audio
NEVER_HEARD = "test-other"  # test-clean's sentences in voices no other split has; decoded and frame-scored only
PARTS = (TRAIN, DEV, TEST)


@pytest.fixture(scope="session", autouse=True)
def device_pinned() -> Iterator[Callable[[], str]]:
    """Fail any test that lets `--device auto` choose: on a GPU host it would pick CUDA (and bf16, fused
    optimizers, NCCL) and the suite would test other things there. Yields the real `auto_device`."""
    from asr_kd.utils import device

    real = device.auto_device

    def refuse() -> str:
        pytest.fail("a test resolved --device auto (CUDA on a GPU host): pass --device cpu, or --device cuda "
                    "in tests/cuda/")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(device, "auto_device", refuse)
        yield real


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """The `tiny` size of the embedded corpus (~10 minutes of real synthesized speech)."""
    from asr_kd.data.synth import synthesize_corpus

    out = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(out, size="tiny", seed=0, num_workers=2)
    return out


@pytest.fixture(scope="session")
def tiny_exp(tiny_corpus, tmp_path_factory) -> Path:
    """An experiment dir with manifests, fbank cuts and CMVN stats of the tiny corpus (transfer and never-heard
    parts included)."""
    from asr_kd.data.features import compute_cmvn_stats, compute_fbank
    from asr_kd.data.prepare import prepare_manifests

    exp = tmp_path_factory.mktemp("exp")
    parts = (*PARTS, TRANSFER, NEVER_HEARD)
    prepare_manifests(tiny_corpus, exp / "data" / "manifests", parts)
    compute_fbank(exp / "data" / "manifests", exp / "data" / "fbank", parts, num_workers=2)
    compute_cmvn_stats(exp / "data" / "fbank", TRAIN, parts)
    return exp


@pytest.fixture(scope="session")
def tiny_recipe_exp(tiny_corpus, tiny_exp, tmp_path_factory) -> Path:
    """recipes/run.sh --preset tiny through every stage: SIGKILLed once while a member trains, then rerun."""
    from tests.recipe_run import ensure_recipe_run

    return ensure_recipe_run(tiny_corpus, tiny_exp, tmp_path_factory.getbasetemp())
