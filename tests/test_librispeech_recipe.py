"""egs/librispeech/run.sh on a directory exactly as a LibriSpeech user has it, built from the tiny corpus.

The directory holds only `LibriSpeech/<part>/<spk>/<chapter>/*.flac + *.trans.txt` and resource files
in openslr.org/11's formats: a lexicon `WORD PH1 PH2 ...` (with stress, missing some words, which
CMUdict gives), a gzipped LM text, and a gzipped ARPA trained on that text by the toolkit. Its parts
are LibriSpeech's: the tiny corpus's test-other speakers are split between dev-other and test-other.
One run goes from stage 1 to RESULTS.md with --lexicon and --arpa (G is the given ARPA; README's
command, so the default --dev-parts dev-clean,dev-other) and two training parts joined; a second run,
sharing stage 1, trains G on the gzipped LM text (--lm-text).
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.markdown_table import table_row
from tests.recipe_run import REPO, env_with_this_python

LS_RUN_SH = REPO / "egs" / "librispeech" / "run.sh"
# The word whose pronunciation the lexicon file gives differently from CMUdict, to see which wins.
OWN_WORD, OWN_PRON = "THE", "DH IY0"

pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(LS_RUN_SH), "--preset", "tiny", "--num-workers", "1", *args], cwd=REPO,
                          env=env_with_this_python(), capture_output=True, text=True,
                          timeout=3600)  # only a hang reaches it: a loaded 2-core host runs this in minutes
    assert proc.returncode == 0, f"recipe failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _librispeech_user_dir(corpus: Path, out: Path) -> dict[str, Path]:
    """`out`/LibriSpeech with the corpus's audio and transcripts only, and LibriSpeech-format resources."""
    from asr_kd.lang.lexicon import cmudict_lexicon, read_word_list
    from asr_kd.lang.lm import sample_sentences, train_arpa

    src = corpus / "LibriSpeech"
    # LibriSpeech's dev-other and test-other: other speakers each; here every other test-other speaker.
    other = sorted(p.name for p in (src / "test-other").iterdir() if p.is_dir())
    dev_other = set(other[::2])
    assert dev_other and len(dev_other) < len(other)
    for path in sorted(src.glob("*/*/*/*")):
        if path.suffix == ".flac" or path.name.endswith(".trans.txt"):
            part, speaker, *rest = path.relative_to(src).parts
            if part == "test-other" and speaker in dev_other:
                part = "dev-other"
            target = out / "LibriSpeech" / part / speaker / Path(*rest)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    # The tiny preset's LM text: 3,000 of the corpus's sentences; the ARPA and the lexicon cover them.
    sample = out / "lm-sample.txt.tmp"
    sample_sentences(corpus / "lm-text.txt", sample, 3000)
    words = sorted(read_word_list(sorted(src.glob("*/*/*/*.trans.txt")), skip_first_field=True)
                   | read_word_list([sample]))
    cmu = cmudict_lexicon(keep_stress=True, words=words)
    # librispeech-lexicon.txt: 'WORD<TAB>PH1 PH2 ...' with stress digits; this one lacks every third word.
    lines = [f"{w}\t{' '.join(p)}" for i, w in enumerate(words) if i % 3 and w in cmu and w != OWN_WORD
             for p in cmu[w]]
    lexicon = out / "librispeech-lexicon.txt"
    lexicon.write_text("\n".join(sorted(lines + [f"{OWN_WORD}\t{OWN_PRON}"])) + "\n", encoding="utf-8")
    lm_text = out / "librispeech-lm-norm.txt.gz"
    with gzip.open(lm_text, "wt", encoding="utf-8") as f:
        f.write((corpus / "lm-text.txt").read_text(encoding="utf-8"))
    arpa = out / "3-gram.pruned.1e-7.arpa.gz"
    plain = train_arpa(sample, out / "lm.arpa.tmp", order=3)
    with gzip.open(arpa, "wt", encoding="utf-8") as f:
        f.write(plain.read_text(encoding="utf-8"))
    plain.unlink()
    sample.unlink()
    return {"lexicon": lexicon, "lm_text": lm_text, "arpa": arpa}


@pytest.fixture(scope="module")
def librispeech_runs(tiny_corpus, tmp_path_factory) -> dict:
    """The user's directory, an --arpa run through the report, and an --lm-text run of stage 2 on its stage 1."""
    base = tmp_path_factory.mktemp("librispeech_user")
    data = base / "data"
    resources = _librispeech_user_dir(tiny_corpus, data)
    arpa_exp, text_exp = base / "exp_arpa", base / "exp_lm_text"
    # The README's command, with the tiny preset.
    arpa_run = _run("--corpus-dir", str(data), "--exp-dir", str(arpa_exp),
                    "--lexicon", str(resources["lexicon"]), "--arpa", str(resources["arpa"]),
                    "--train-parts", "train-clean-100,train-clean-360", "--transfer-part", "")
    shutil.copytree(arpa_exp / "data", text_exp / "data")
    (text_exp / ".stage1.done").touch()
    text_run = _run("--corpus-dir", str(data / "LibriSpeech"), "--exp-dir", str(text_exp),
                    "--lexicon", str(resources["lexicon"]), "--lm-text", str(resources["lm_text"]),
                    "--train-parts", "train-clean-100,train-clean-360", "--transfer-part", "", "--stop-stage", "2")
    return {"data": data, "arpa_exp": arpa_exp, "arpa_run": arpa_run, "text_exp": text_exp, "text_run": text_run,
            **resources}


def test_the_user_directory_has_only_librispeech_and_its_resources(librispeech_runs):
    data = librispeech_runs["data"]
    assert sorted(p.name for p in data.iterdir()) == sorted(
        ["LibriSpeech", "librispeech-lexicon.txt", "librispeech-lm-norm.txt.gz", "3-gram.pruned.1e-7.arpa.gz"])
    kinds = {p.suffix if p.suffix == ".flac" else "".join(p.suffixes[-2:])
             for p in (data / "LibriSpeech").rglob("*") if p.is_file()}
    assert kinds == {".flac", ".trans.txt"}


def test_arpa_run_decodes_and_reports_with_the_given_lm_as_g(librispeech_runs):
    exp, run = librispeech_runs["arpa_exp"], librispeech_runs["arpa_run"]
    assert (exp / ".stage11.done").is_file()
    assert "## Table 1" in run.stdout
    info = json.loads((exp / "lm" / "info.json").read_text())
    assert info["given_arpa"] == str(librispeech_runs["arpa"]) and info["prune_threshold"] == 0
    assert not (exp / "lm" / "lm_3gram.arpa").exists()  # no LM was trained
    results = json.loads((exp / "decode" / "student" / "results.json").read_text())
    assert 0 <= results["test"]["wer"] < 100
    assert "preset tiny" not in run.stdout  # --preset was given: no machine-based choice


def test_dev_other_is_decoded_at_dev_cleans_lm_weight_aligned_and_reported(librispeech_runs):
    exp = librispeech_runs["arpa_exp"]
    refs = {}
    for path in (librispeech_runs["data"] / "LibriSpeech" / "dev-other").glob("*/*/*.trans.txt"):
        refs.update(line.split(" ", 1) for line in path.read_text().splitlines())
    assert refs
    # dev-clean chooses the weight (and is the LM's dev text); dev-other is decoded at it, after the test parts.
    dev_clean = [line for p in (librispeech_runs["data"] / "LibriSpeech" / "dev-clean").glob("*/*/*.trans.txt")
                 for line in p.read_text().splitlines()]
    assert sorted((exp / "lm" / "dev-transcripts.txt").read_text().splitlines()) == sorted(dev_clean)
    gmm = json.loads((exp / "gmm" / "tri2" / "decode" / "results.json").read_text())
    assert gmm["parts"] == {"dev": "dev-clean", "test": "test-clean", "test-other": "test-other",
                            "dev-other": "dev-other"}
    for decode in (exp / "gmm" / "tri2" / "decode", *(exp / "decode" / s for s in ("baseline", "ensemble", "student"))):
        res = json.loads((decode / "results.json").read_text())
        assert res["test_parts"] == ["test", "test-other", "dev-other"]
        assert [p.name for p in (decode / "dev-other" / "scoring").iterdir()] == [f"{res['lmwt']}.txt"]
        assert res["dev-other"]["data"]["utterances"] == len(refs) and 0 <= res["dev-other"]["wer"] <= 100
    # Every dev and test part aligned by tri2, with a frame bank; dev's bank is still dev-clean's.
    ali = json.loads((exp / "gmm" / "tri2" / "ali" / "info.json").read_text())
    assert {"dev-clean", "test-clean", "test-other", "dev-other"} <= set(ali["parts"]) and "unaligned" not in ali
    for name, part in (("dev", "dev-clean"), ("test", "test-clean"), ("test-other", "test-other"),
                       ("dev-other", "dev-other")):
        bank = json.loads((exp / "bank" / name / "manifest.json").read_text())
        assert bank["source_cuts"].endswith(f"cuts_{part}.jsonl.gz")
    # RESULTS.md: each part's WER beside test's, and the frame accuracy on each.
    md = (exp / "RESULTS.md").read_text()
    others = md[md.index("## Other test and dev parts"):]
    assert ("| system | test WER % | test-other WER % | dev-other WER % | test-other / test | dev-other / test "
            "| test-other frame acc % | dev-other frame acc % |") in others
    for system, row in (("baseline", "baseline"), ("ensemble", "ensemble of 2"), ("student", "distilled single model")):
        res = json.loads((exp / "decode" / system / "results.json").read_text())
        cells = table_row(others, row)
        assert cells[3] == f"{res['dev-other']['wer']:.2f}"
        for cell, part in ((cells[6], "test-other"), (cells[7], "dev-other")):
            acc = json.loads((exp / "results" / f"acc_{system}_{part}.json").read_text())
            assert cell == f"{100 * acc['accuracy']:.2f}"
    assert table_row(others, "GMM tri2")[6:] == ["–", "–"]
    assert "dev-other: another dev part" in others


def test_status_lists_every_decoded_part(librispeech_runs, capsys):
    from asr_kd.bin.status import main as status_main

    assert status_main(["--exp-dir", str(librispeech_runs["arpa_exp"])]) == 0
    out = capsys.readouterr().out
    assert "GMM tri2 WER dev / test / test-other / dev-other: " in out
    assert ("frame accuracy dev / test / test-other / dev-other, WER dev / test / test-other / dev-other "
            "(results/, decode/):") in out
    scores = out[out.index("frame accuracy dev / test / test-other"):].splitlines()
    student = next(line for line in scores if line.strip().startswith("student "))
    assert student.count("%") == 8 and "–" not in student  # four frame accuracies, four WERs


def test_lexicon_file_wins_and_cmudict_fills_the_words_it_lacks(librispeech_runs):
    exp = librispeech_runs["arpa_exp"]
    entries = (exp / "lang" / "lexicon.txt").read_text().splitlines()
    prons = {}
    for line in entries:
        word, *phones = line.split()
        prons.setdefault(word, []).append(" ".join(phones))
    assert prons[OWN_WORD] == ["DH IY"]  # the file's, stress stripped; not CMUdict's DH AH
    file_words = {line.split()[0] for line in librispeech_runs["lexicon"].read_text().splitlines()}
    assert set(prons) - file_words - {"<UNK>"}  # CMUdict gave the words the file lacks
    stderr = librispeech_runs["arpa_run"].stderr
    assert "librispeech-lexicon.txt has" in stderr and "CMUdict gives" in stderr  # the merge is counted


def test_training_parts_are_joined_into_one_training_set(librispeech_runs):
    exp = librispeech_runs["arpa_exp"]
    fbank = exp / "data" / "fbank"
    joined = fbank / "cuts_train-clean-100+train-clean-360.jsonl.gz"
    from lhotse import load_manifest

    sizes = [len(load_manifest(fbank / f"cuts_{p}.jsonl.gz")) for p in ("train-clean-100", "train-clean-360")]
    assert len(load_manifest(joined)) == sum(sizes)
    bank = json.loads((exp / "bank" / "train" / "manifest.json").read_text())
    assert bank["num_utterances"] == sum(sizes) and bank["source_cuts"].endswith(joined.name)


def test_lm_text_run_trains_g_on_the_gzipped_text(librispeech_runs):
    exp = librispeech_runs["text_exp"]
    info = json.loads((exp / "lm" / "info.json").read_text())
    # The tiny preset's every-k-th sample of 3,000 sentences, read from the .gz.
    assert 3000 <= sum(1 for _ in open(exp / "lm" / "lm-text.txt")) < 3100
    assert info["train_words"] > 0 and "given_arpa" not in info and info["prune_threshold"] == 1e-6
    assert (exp / "lang_test" / "G.fst").is_file() and not (exp / ".stage3.done").exists()


def test_a_corpus_without_lm_text_and_no_lm_option_names_what_is_missing(librispeech_runs, tmp_path):
    proc = subprocess.run(["bash", str(LS_RUN_SH), "--preset", "tiny", "--corpus-dir", str(librispeech_runs["data"]),
                           "--exp-dir", str(tmp_path), "--stage", "2", "--stop-stage", "2"],
                          cwd=REPO, env=env_with_this_python(), capture_output=True, text=True,
                          timeout=600)  # an immediate refusal: only a hang reaches it
    assert proc.returncode == 2
    assert "lm-text.txt" in proc.stderr and "--lm-text" in proc.stderr and "--arpa" in proc.stderr
