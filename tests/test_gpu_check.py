"""bench/gpu_check.py's CPU fallback: the GPU check's code paths run in the suite, so the script cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.markdown_table import table_rows

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_fallback_writes_its_table_with_every_row(tmp_path):
    out = tmp_path / "gpu_check.md"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--device", "cpu", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    assert "GPU check (quick fallback)" in table and table in proc.stdout
    rows = {row[0] for row in table_rows(table)}
    assert {"bf16 GEMM ceiling", "trainer frames/s, tiny 2x128", "ensemble soft targets", "training 3 s, tiny",
            "CUDA test group"} <= rows
    assert table.count("MFU") == 3 and "(falls)" in table
    # pytest's own output lands beside the table, so a failing CUDA test can be read after the run
    assert "no tests collected" in (tmp_path / "cuda_tests.log").read_text()
