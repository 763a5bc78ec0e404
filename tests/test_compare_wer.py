"""Bootstrap comparison of two systems' WERs (`asr_kd.score.bootstrap`, `asr-kd compare-wer`)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from asr_kd.bin.compare_wer import main as compare_main
from asr_kd.score.bootstrap import compare_wer, read_per_utt_counts, wer_interval
from asr_kd.score.wer import compute_wer, score_dev_test
from asr_kd.utils.errors import InputError
from tests.markdown_table import table_row, table_rows

WORDS = "THE OF AND TO A IN THAT HE WAS IT HIS IS WITH AS I HAD FOR AT BY ON NOT BE FROM BUT".split()


def references(num_utts: int, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {f"spk-1-{i:04d}": [rng.choice(WORDS) for _ in range(rng.randint(4, 20))] for i in range(num_utts)}


def corrupt(refs: dict[str, list[str]], rate: float, seed: int) -> dict[str, list[str]]:
    """Hypotheses with about `rate` of the words substituted, deleted or followed by an insertion."""
    rng = random.Random(seed)
    hyps = {}
    for utt, words in refs.items():
        out = []
        for w in words:
            r = rng.random()
            if r < rate / 3:
                out.append(rng.choice(WORDS))
            elif r < 2 * rate / 3:
                continue
            else:
                out.append(w)
                if r < rate:
                    out.append(rng.choice(WORDS))
        hyps[utt] = out
    return hyps


def per_utt_file(tmp_path: Path, name: str, refs, hyps) -> Path:
    path = tmp_path / f"{name}.txt"
    path.write_text(compute_wer(refs, hyps).per_utt_text())
    return path


def test_per_utt_counts_are_the_scorer_s_errors_and_reference_words(tmp_path):
    refs = references(40)
    result = compute_wer(refs, corrupt(refs, 0.3, seed=1))
    counts = read_per_utt_counts(per_utt_file(tmp_path, "per_utt_test", refs, corrupt(refs, 0.3, seed=1)))
    assert counts == {u.utt_id: (u.errors, len(u.ref)) for u in result.utterances}
    assert sum(e for e, _ in counts.values()) == result.errors > 0
    assert sum(n for _, n in counts.values()) == result.num_ref_words


def test_a_system_against_itself_ties_in_every_resample():
    refs = references(50)
    counts = read_counts(refs, corrupt(refs, 0.2, seed=2))
    cmp = compare_wer(counts, counts, replicates=2000)
    assert cmp.errors_a == cmp.errors_b and cmp.prob_b_better == 0.0 and cmp.prob_tie == 1.0
    assert cmp.interval_diff == (0.0, 0.0)
    assert cmp.interval_a[0] < cmp.wer_a < cmp.interval_a[1]
    assert wer_interval(counts, replicates=2000) == (cmp.wer_a, *cmp.interval_a)  # one system alone: the same resamples


def test_fewer_errors_on_every_utterance_is_better_in_every_resample():
    refs = references(50)
    better = read_counts(refs, corrupt(refs, 0.2, seed=3))
    worse = {u: (e + 1, n) for u, (e, n) in better.items()}  # one error more on every utterance
    cmp = compare_wer(worse, better, replicates=2000)
    assert cmp.prob_b_better == 1.0 and cmp.prob_tie == 0.0
    assert cmp.interval_diff[1] < 0 and cmp.wer_b < cmp.wer_a


def test_the_interval_narrows_as_one_over_the_square_root_of_the_test_set_size():
    refs = references(100)
    counts = read_counts(refs, corrupt(refs, 0.25, seed=4))
    four_times = {f"{u}-{k}": c for k in range(4) for u, c in counts.items()}  # the same errors, 4x the utterances
    width = [c.interval_a[1] - c.interval_a[0]
             for c in (compare_wer(d, d, replicates=4000, seed=5) for d in (counts, four_times))]
    assert 0.4 < width[1] / width[0] < 0.6  # 1 / sqrt(4) = 0.5


def test_the_seed_fixes_the_resamples():
    refs = references(60)
    a, b = read_counts(refs, corrupt(refs, 0.3, seed=6)), read_counts(refs, corrupt(refs, 0.3, seed=7))
    assert compare_wer(a, b, replicates=1500, seed=3) == compare_wer(a, b, replicates=1500, seed=3)
    assert compare_wer(a, b, replicates=1500, seed=3) != compare_wer(a, b, replicates=1500, seed=4)


def test_different_test_sets_and_references_are_refused_by_name():
    refs = references(20)
    a = read_counts(refs, refs)
    fewer = dict(list(a.items())[:-1])
    with pytest.raises(InputError, match=r"sys_a and sys_b scored different utterances: 1 only in the first"):
        compare_wer(a, fewer, names=("sys_a", "sys_b"))
    other_ref = {u: (e, n + 1) for u, (e, n) in a.items()}
    with pytest.raises(InputError, match="different references for 20 utterances"):
        compare_wer(a, other_ref)


def test_a_malformed_per_utt_file_is_named_with_its_line(tmp_path):
    bad = tmp_path / "per_utt_dev.txt"
    bad.write_text("u1 ref A B\nu1 hyp A B\nu1 #csid 2 0 x 0\n")
    with pytest.raises(InputError, match=rf"{bad}:3: a #csid row needs four counts"):
        read_per_utt_counts(bad)
    text = tmp_path / "text"
    text.write_text("u1 A B\n")
    with pytest.raises(InputError, match=rf"{text}: no `<utt> #csid"):
        read_per_utt_counts(text)


def test_the_cli_compares_every_part_two_decode_dirs_scored(tmp_path, capsys):
    dev, test = references(30, seed=10), references(30, seed=11)
    test = {u.replace("spk-1", "spk-2"): w for u, w in test.items()}
    for name, rate in (("baseline", 0.3), ("student", 0.1)):
        score_dev_test(tmp_path / name / "scoring", dev, {"11": corrupt(dev, rate, 12), "13": corrupt(dev, rate, 13)},
                       test, {"11": corrupt(test, rate, 14), "13": corrupt(test, rate, 15)})
    out = tmp_path / "cmp.md"
    assert compare_main([str(tmp_path / "baseline"), str(tmp_path / "student"), "--replicates", "500",
                         "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [row for row in table_rows(printed) if row[0] in ("dev", "test")]
    assert [row[0] for row in rows] == ["dev", "test"] and out.read_text() == printed
    assert all(float(row[-1]) > 0.95 for row in rows)  # a third of the errors: B better
    assert compare_main([str(tmp_path / "baseline"), str(tmp_path / "student"), "--parts", "test-other"]) == 2
    assert "test-other are not scored in both" in capsys.readouterr().err


def read_counts(refs, hyps) -> dict[str, tuple[int, int]]:
    return {u.utt_id: (u.errors, len(u.ref)) for u in compute_wer(refs, hyps).utterances}


def test_results_md_gives_each_difference_of_the_seeds_mean_wers_and_how_sure_it_is(tmp_path):
    from asr_kd.bin import report

    dev, test = references(40, seed=20), references(40, seed=21)
    test = {u.replace("spk-1", "spk-2"): w for u, w in test.items()}
    rates = {"baseline": 0.4, "ensemble": 0.35, "student": 0.05}  # the student far better, the ensemble a little
    wers = {}
    for k, run in enumerate(("s1", "s2")):
        for system, rate in rates.items():
            hyps = {w: corrupt(dev, rate, 100 * k + int(w)) for w in ("11", "13")}
            tests = {"11": corrupt(test, rate, 200 + k), "13": corrupt(test, rate, 300 + k)}
            summary = score_dev_test(tmp_path / run / "decode" / system / "scoring", dev, hyps, test, tests)
            wers[run, system] = summary["test"]["wer"]
            (tmp_path / run / "decode" / system / "results.json").write_text(
                json.dumps({"lmwt": summary["lmwt"], "test_parts": ["test"], "dev_wer_by_lmwt": {},
                            "dev": summary["dev"], "test": summary["test"]}))
    (tmp_path / "s2" / "decode" / "ensemble" / "scoring" / "per_utt_dev.txt").unlink()  # one seed lacks a part
    assert report.main(["--exp-dir", str(tmp_path / "s1"), "--num-members", "2", "--no-plots",
                        "--seed-exp-dirs", str(tmp_path / "s2"), "--seeds", "1", "2"]) == 0
    md = (tmp_path / "s1" / "RESULTS.md").read_text()
    section = md[md.index("## How sure the WER differences are"):md.index("## Spread over network seeds")]
    distilled = _cells(section, "distilled - baseline")
    mean_diff = sum(wers[run, "student"] - wers[run, "baseline"] for run in ("s1", "s2")) / 2
    assert float(distilled["test"].split()[0]) == pytest.approx(mean_diff, abs=0.006)  # of the seeds' mean WERs
    assert distilled["test"].endswith("P 1.00") and distilled["dev"].endswith("P 1.00")
    assert _cells(section, "ensemble - baseline")["dev"] == "–"  # not decoded in every seed
    assert "summed over the 2 network seeds" in section
    assert "baseline - GMM tri2" not in section  # no GMM decode: no row
    assert report.main(["--exp-dir", str(tmp_path / "s1"), "--num-members", "2"]) == 0  # with its plots
    png = tmp_path / "s1" / "plots" / "wer_by_part.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(plots/wer_by_part.png)" in (tmp_path / "s1" / "RESULTS.md").read_text()


def _cells(md: str, name: str) -> dict[str, str]:
    """The cells of the row `name` of the significance table, by part."""
    parts = [c.removesuffix(" WER") for c in table_rows(md)[0][1:]]
    return dict(zip(parts, table_row(md, name)[1:]))
