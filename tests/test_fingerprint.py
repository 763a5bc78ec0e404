"""Stage fingerprints: digests that follow file names and contents, not where an experiment lies; the first
stage output where two experiments part; the tool versions recorded where the corpus and GMM were made."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from asr_kd.bin import fingerprint as fingerprint_cli
from asr_kd.utils.fingerprint import files_digest


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_digest_follows_names_and_contents_not_the_directory(tmp_path):
    files = {"a/x.flac": b"\x00\x01" * 1000, "b/y.flac": b"other", "b/notes.md": b"not covered"}
    one = _write(tmp_path / "one", files)
    two = _write(tmp_path / "elsewhere" / "two", files)
    digest = files_digest(one, ["**/*.flac"])
    assert digest is not None and digest.files == 2 and digest.bytes == 2005
    assert files_digest(two, ["**/*.flac"]) == digest  # another place, same digest

    (two / "b" / "y.flac").write_bytes(b"othes")  # one byte
    assert files_digest(two, ["**/*.flac"]).sha256 != digest.sha256
    (two / "b" / "y.flac").write_bytes(b"other")
    (two / "b" / "y.flac").rename(two / "b" / "z.flac")  # same bytes under another name
    assert files_digest(two, ["**/*.flac"]).sha256 != digest.sha256
    assert files_digest(one, ["**/*.wav"]) is None


def _copy_stages(src: Path, dst: Path) -> None:
    for where in ("data", "lang", "lang_test", "gmm", "bank/train"):
        shutil.copytree(src / where, dst / where, symlinks=True)


def test_a_copy_agrees_everywhere_and_a_changed_gmm_is_where_they_part(tiny_recipe_exp, tmp_path, capsys):
    copy = tmp_path / "copy"
    _copy_stages(tiny_recipe_exp, copy)
    assert fingerprint_cli.main(["--exp-dir", str(tiny_recipe_exp), "--against", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "no stage output that both hold differs" in out
    for stage in ("corpus audio", "features", "GMM tri2", "decoding graph (HCLG)", "train frame bank"):
        assert re.search(rf"\| {re.escape(stage)}[^|]*\|[^|]*\|[^|]*\| same \|", out), stage

    model = copy / "gmm" / "tri2" / "final.mdl"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 1
    model.write_bytes(bytes(data))
    assert fingerprint_cli.main(["--exp-dir", str(tiny_recipe_exp), "--against", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "first difference: GMM tri2" in out
    assert re.search(r"\| GMM tri1 \|[^|]*\|[^|]*\| same \|", out)


def test_a_missing_experiment_is_named(tmp_path, capsys):
    assert fingerprint_cli.main(["--exp-dir", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such experiment directory" in capsys.readouterr().err


def _tool_version(program: str) -> str:
    return subprocess.run([program, "--version"], capture_output=True, text=True, check=False).stdout


def test_results_record_the_synthesizers_and_gmm_libraries_that_made_them(tiny_recipe_exp):
    md = (tiny_recipe_exp / "RESULTS.md").read_text()
    synth = re.search(r"- corpus synthesized with: (.*)", md).group(1)
    versions = dict(re.findall(r"([\w-]+) ([^,]+)", synth))
    assert set(versions) == {"espeak-ng", "festival", "flite", "sox"}
    # dpkg's upstream version is what the programs themselves report (1.51+dfsg-10 -> 1.51)
    for program in ("espeak-ng", "sox"):
        upstream = re.match(r"(?:\d+:)?([\d.]+)", versions[program]).group(1)
        assert upstream in _tool_version(program), (program, versions[program])
    gmm = re.search(r"- features and GMM made with: (.*)", md).group(1)
    assert f"numpy {np.__version__}" in gmm and "kaldi-hmm-gmm " in gmm
    assert re.search(r"\| GMM tri2 \| 3 \| [\d.]+ \| `[0-9a-f]{16}` \|", md)
