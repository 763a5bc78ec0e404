"""Fbank's worker processes: one torch thread each, and the same features as one process computes."""

from __future__ import annotations

import numpy as np
import torch
from lhotse import load_manifest

from asr_kd.data.features import compute_fbank, cuts_path, feature_workers
from tests.conftest import DEV


def test_feature_workers_compute_with_one_torch_thread():
    # Spawned processes start with one thread per core, whatever the parent set.
    with feature_workers(1) as workers:
        assert workers.submit(torch.get_num_threads).result() == 1


def test_fbank_of_parallel_workers_equals_one_process(tiny_exp, tmp_path):
    # tiny_exp computed its features with num_workers=2.
    compute_fbank(tiny_exp / "data" / "manifests", tmp_path / "fbank", [DEV], num_workers=1)
    parallel = {c.id: c for c in load_manifest(cuts_path(tiny_exp / "data" / "fbank", DEV))}
    serial = load_manifest(cuts_path(tmp_path / "fbank", DEV))
    assert set(serial.ids) == set(parallel)
    for cut in serial:
        np.testing.assert_array_equal(cut.load_features(), parallel[cut.id].load_features())


def test_compute_fbank_restores_the_callers_thread_count(tiny_exp, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        # num_workers=1 computes in this process, at one thread.
        compute_fbank(tiny_exp / "data" / "manifests", tmp_path / "fbank", [DEV], num_workers=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
