"""Shared fixtures: the tiny synthesized corpus, its features and recipe run, made once per test session
(once for all the xdist workers: tests/shared_build.py).

The suite runs the same checks on every machine: a test names its device (the CPU, or CUDA in
tests/cuda/, collected only where CUDA is available), and `--device auto` fails it (`device_pinned`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

from tests.shared_build import build_once, shared_path

CUDA_TESTS = Path(__file__).parent / "cuda"


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """tests/cuda/ needs a GPU: elsewhere it is not collected at all, even when named (no skips to read past)."""
    if collection_path.is_relative_to(CUDA_TESTS) and not torch.cuda.is_available():
        return True
    return None

# The longest modules start first, so that `make test`'s two workers (--dist loadfile, files in this order)
# run them side by side: the first builds the tiny recipe run that the third also needs, while the second runs
# its own LibriSpeech-layout recipe; the short modules then fill in behind them.
FIRST_MODULES = ("test_decode_nnet.py", "test_librispeech_recipe.py", "test_fault_injection.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put FIRST_MODULES' tests first, in that order; the others keep their order."""
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return FIRST_MODULES.index(name) if name in FIRST_MODULES else len(FIRST_MODULES)

    items.sort(key=rank)


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

    return build_once(shared_path(tmp_path_factory, "corpus"),
                      lambda out: synthesize_corpus(out, size="tiny", seed=0, num_workers=2))


@pytest.fixture(scope="session")
def tiny_exp(tiny_corpus, tmp_path_factory) -> Path:
    """An experiment dir with manifests, fbank cuts and CMVN stats of the tiny corpus (transfer and never-heard
    parts included)."""
    from asr_kd.data.features import compute_cmvn_stats, compute_fbank
    from asr_kd.data.prepare import prepare_manifests

    def build(exp: Path) -> None:
        parts = (*PARTS, TRANSFER, NEVER_HEARD)
        prepare_manifests(tiny_corpus, exp / "data" / "manifests", parts)
        compute_fbank(exp / "data" / "manifests", exp / "data" / "fbank", parts, num_workers=2)
        compute_cmvn_stats(exp / "data" / "fbank", TRAIN, parts)

    return build_once(shared_path(tmp_path_factory, "exp"), build)


@pytest.fixture(scope="session")
def tiny_recipe_exp(tiny_corpus, tiny_exp, tmp_path_factory) -> Path:
    """recipes/run.sh --preset tiny through every stage: SIGKILLed once while a member trains, then rerun."""
    from tests.recipe_run import make_recipe_run

    return build_once(shared_path(tmp_path_factory, "recipe_tiny"),
                      lambda exp: make_recipe_run(tiny_corpus, tiny_exp, exp))


@pytest.fixture(scope="session")
def small_gmm_exp(tmp_path_factory) -> Path:
    """A small real corpus (4 espeak-ng speakers) with mono -> tri2 trained and aligned (tests/test_gmm.py)."""
    from tests.test_gmm import build_small_gmm_exp

    return build_once(shared_path(tmp_path_factory, "gmm_small"), build_small_gmm_exp) / "exp"
