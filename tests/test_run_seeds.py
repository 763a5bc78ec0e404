"""egs/synth/run_seeds.sh trains more seeds under the source experiment's own preset, and refuses another one.

The source is a directory of links to the tiny recipe run's stages 0-4 with a copy of its log (the recipe's
`preset:` lines) and commands.tsv, so that the shared run is left as it is; `--stop-stage 4` keeps the seed's
recipe run to its setup (no network trains), which is where the preset is read and logged.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.recipe_run import REPO, env_with_this_python

RUN_SEEDS = REPO / "egs" / "synth" / "run_seeds.sh"


def _source_from(recipe_exp: Path, dest: Path, with_log: bool = True) -> Path:
    dest.mkdir()
    for name in ("corpus", "data", "lang", "lang_test", "lm", "gmm", "bank"):
        if (recipe_exp / name).exists():
            (dest / name).symlink_to(recipe_exp / name)
    (dest / ".stage4.done").touch()
    (dest / "results").mkdir()
    shutil.copy(recipe_exp / "results" / "commands.tsv", dest / "results")
    if with_log:
        (dest / "log").mkdir()
        shutil.copy(recipe_exp / "log" / "run.log", dest / "log")
    return dest


def _run_seeds(src: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RUN_SEEDS), "--src-exp", str(src), "--seeds", "2", "--stop-stage", "4", *extra],
                          cwd=REPO, env=env_with_this_python(), capture_output=True, text=True, timeout=300)


def test_seeds_take_the_preset_the_source_was_made_with(tiny_recipe_exp, tmp_path):
    src = _source_from(tiny_recipe_exp, tmp_path / "src")
    done = _run_seeds(src)
    assert done.returncode == 0, done.stderr[-2000:]
    # run.sh logs the preset it read; the recipe's default (mini) would train other networks.
    assert "preset: tiny (recipes/conf/tiny.conf" in (src / "seed2" / "log" / "run.log").read_text()


def test_another_preset_than_the_sources_is_refused_before_anything_runs(tiny_recipe_exp, tmp_path):
    src = _source_from(tiny_recipe_exp, tmp_path / "src")
    done = _run_seeds(src, "--preset", "mini")
    assert done.returncode == 2
    assert "--preset mini" in done.stderr and "made with preset tiny" in done.stderr
    assert not (src / "seed2").exists()


def test_a_source_without_a_logged_preset_is_known_by_its_gmm_settings_or_needs_one_given(tiny_recipe_exp, tmp_path):
    # A log from before run.sh named its preset: the tiny preset's GMM settings are tiny's alone.
    src = _source_from(tiny_recipe_exp, tmp_path / "src", with_log=False)
    done = _run_seeds(src)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "preset: tiny (recipes/conf/tiny.conf" in (src / "seed2" / "log" / "run.log").read_text()
    # Without the GMM step's record either, nothing says which networks the source has.
    bare = _source_from(tiny_recipe_exp, tmp_path / "bare", with_log=False)
    commands = bare / "results" / "commands.tsv"
    commands.write_text("".join(line for line in commands.read_text().splitlines(keepends=True)
                                if not line.startswith("train_gmm\t")))
    done = _run_seeds(bare)
    assert done.returncode == 2 and "name a preset: give --preset" in done.stderr
    assert not (bare / "seed2").exists()
