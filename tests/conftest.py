"""Shared fixtures: the tiny synthesized corpus and its features, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

TRAIN, DEV, TEST = "train-clean-100", "dev-clean", "test-clean"
TRANSFER = "train-clean-360"  # the tiny corpus's unlabelled transfer audio
PARTS = (TRAIN, DEV, TEST)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """The `tiny` preset of the embedded corpus (~10 minutes of real synthesized speech)."""
    from asr_kd.data.synth import synthesize_corpus

    out = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(out, preset="tiny", seed=0, num_workers=2)
    return out


@pytest.fixture(scope="session")
def tiny_exp(tiny_corpus, tmp_path_factory) -> Path:
    """An experiment dir with manifests, fbank cuts and CMVN stats of the tiny corpus (transfer part included)."""
    from asr_kd.data.features import compute_cmvn_stats, compute_fbank
    from asr_kd.data.prepare import prepare_manifests

    exp = tmp_path_factory.mktemp("exp")
    parts = (*PARTS, TRANSFER)
    prepare_manifests(tiny_corpus, exp / "data" / "manifests", parts)
    compute_fbank(exp / "data" / "manifests", exp / "data" / "fbank", parts, num_jobs=2)
    compute_cmvn_stats(exp / "data" / "fbank", TRAIN, parts)
    return exp


@pytest.fixture(scope="session")
def tiny_recipe_exp(tiny_corpus, tiny_exp, tmp_path_factory) -> Path:
    """recipes/run.sh --preset tiny through every stage: SIGKILLed once while a member trains, then rerun."""
    from tests.recipe_run import ensure_recipe_run

    return ensure_recipe_run(tiny_corpus, tiny_exp, tmp_path_factory.getbasetemp())
