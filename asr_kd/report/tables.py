"""RESULTS.md: the paper's Table 1 and Table 5 forms, beside the paper's numbers, with provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from asr_kd.report.collect import NEVER_HEARD, Results, search_choice
from asr_kd.report.fingerprint_table import fingerprint_table
from asr_kd.report.markdown import format_cell, markdown_table
from asr_kd.report.significance import significance_table
from asr_kd.report.spread import SeedMeans, gains, mean_of, spread_tables
from asr_kd.utils.fingerprint import versions_line
from asr_kd.utils.hardware import describe_hardware, hardware_line

# Hinton, Vinyals & Dean (2015), Table 1 (test frame accuracy %, test WER %) and Table 5
# (train / test frame accuracy %). The paper gives no GMM row.
PAPER_TABLE1 = {"baseline": (58.9, 10.9), "ensemble": (61.1, 10.7), "student": (60.8, 10.7)}
PAPER_TABLE5 = {"baseline": (63.4, 58.9), "baseline_subset": (67.3, 44.5), "student_subset": (65.4, 57.0)}
PAPER_GAIN_RECOVERED = 80.0  # "more than 80% of the improvement"


def _paper(values: tuple[float, ...]) -> tuple[str, ...]:
    """The paper's numbers as printed there (one decimal)."""
    return tuple(f"{v:.1f}" for v in values)


def gain_recovered(baseline: float | None, ensemble: float | None, student: float | None) -> float | None:
    """Share (%) of the ensemble's gain over the baseline that the student keeps; None if undefined."""
    if None in (baseline, ensemble, student) or ensemble <= baseline:  # type: ignore[operator]
        return None
    return 100.0 * (student - baseline) / (ensemble - baseline)  # type: ignore[operator]


def _percent(value: float | None) -> str:
    return format_cell(value, 1) + ("%" if value is not None else "")


def _bank_size(res: Results, name: str) -> str:
    bank = res.banks.get(name)
    if bank is None:
        return "–"
    return f"{bank['num_utterances']} utterances, {bank['num_frames']} frames ({bank['num_frames'] / 360000:.3f} h)"


def never_heard_is_synthesized(res: Results) -> bool:
    """Whether NEVER_HEARD is the synthesized corpus's never-heard split (else, e.g., LibriSpeech's test-other)."""
    return NEVER_HEARD in res.more_tests and NEVER_HEARD in ((res.corpus or {}).get("splits") or {})


def _scored_parts(res: Results) -> list[str]:
    """The parts beside dev and test that some system has a frame accuracy on (those tri2 could align)."""
    return [p for p in res.more_tests if any(res.acc(s, p) is not None for s in ("baseline", "ensemble", "student"))]


def more_tests_note(res: Results) -> str:
    """What the columns of the parts beside dev and test are (the never-heard voices, in the synthesized corpus)."""
    notes = []
    for name in res.more_tests:
        if name == NEVER_HEARD and never_heard_is_synthesized(res):
            notes.append(f"{name} is the never-heard test set: test-clean's sentences read by voices of a family "
                         "that no training, dev or test speaker uses (espeak-ng's Klatt variants, "
                         "`asr_kd.data.voices.NEVER_HEARD_VARIANTS`), so its WER differs from test's by the voices alone")
        elif name.startswith("dev"):
            notes.append(f"{name}: another dev part (the first dev part alone chooses the LM weight)")
        else:
            notes.append(f"{name}: another test part")
    if not notes:
        return ""
    scored = _scored_parts(res)
    unaligned = [p for p in res.more_tests if p not in scored]
    return ("; ".join(notes) + ". Each is decoded, every utterance of it, at the LM weight and word insertion "
            "penalty chosen on dev"
            + (f"; frame accuracies are against its tri2 forced alignment ({', '.join(scored)})" if scored else "")
            + (f"; no frame accuracy on {', '.join(unaligned)}: not aligned by tri2" if unaligned else "")
            + ".\n")


def table1(res: Results) -> str:
    """System | dev/test frame accuracy | dev/test WER | the paper's test numbers."""
    members = f"ensemble of {res.num_members}"
    rows = [("GMM tri2 (labels and graph)", None, None, res.wer("gmm", "dev"), res.wer("gmm", "test"), "–", "–")]
    for system, name in (("baseline", "baseline"), ("ensemble", members), ("student", "distilled single model")):
        paper = PAPER_TABLE1[system]
        rows.append((name, res.acc(system, "dev"), res.acc(system, "test"), res.wer(system, "dev"),
                     res.wer(system, "test"), *_paper(paper)))
    header = ["system", "dev frame acc %", "test frame acc %", "dev WER %", "test WER %",
              "paper test frame acc %", "paper test WER %"]
    return markdown_table(header, rows) + (
        "\nReference for the GMM row (not in the paper): Kaldi's LibriSpeech tri6b system trained on 960 h "
        "gets 7.8-11.0% WER on test-clean, depending on the LM.\n")


def more_tests_title(res: Results) -> str:
    """The heading of `more_tests_table`'s section."""
    return "## Voices never heard in training\n" if never_heard_is_synthesized(res) else "## Other test and dev parts\n"


def more_tests_table(res: Results) -> str:
    """Test WER beside each other part's (the never-heard voices, other dev parts), their ratio, and the frame
    accuracy on each part that aligned, for Table 1's systems."""
    more = res.more_tests
    if not more:
        return ""
    scored = _scored_parts(res)
    systems = (("gmm", "GMM tri2"), ("baseline", "baseline"), ("ensemble", f"ensemble of {res.num_members}"),
               ("student", "distilled single model"))
    rows = []
    for system, name in systems:
        test = res.wer(system, "test")
        others = [res.wer(system, part) for part in more]
        rows.append((name, test, *others, *(format_cell(o / test, 2) if o is not None and test else None
                                            for o in others),
                     *(None if system == "gmm" else res.acc(system, part) for part in scored)))
    header = ["system", "test WER %", *(f"{name} WER %" for name in more), *(f"{name} / test" for name in more),
              *(f"{name} frame acc %" for name in scored)]
    return markdown_table(header, rows) + "\n" + more_tests_note(res)


TABLE5_ROWS = (("baseline", "baseline, 100% of train"),
               ("baseline_subset", "baseline, subset of train (early stopping)"),
               ("student_subset", "soft targets, subset of train (no early stopping)"),
               ("student_subset_ensemble", "ensemble's soft targets, subset of train (no early stopping)"))


def table5(res: Results) -> str:
    """Train / test frame accuracy of the 100% baseline and the 3% systems, beside the paper's."""
    rows = []
    for system, name in TABLE5_ROWS:
        paper = _paper(PAPER_TABLE5[system]) if system in PAPER_TABLE5 else ("–", "–")
        rows.append((name, res.acc(system, "train"), res.acc(system, "test"), *paper))
    header = ["system", "train frame acc %", "test frame acc %", "paper train %", "paper test %"]
    taught = _subset_teaching_note(res.subset_teaching)
    return markdown_table(header, rows) + (
        f"\nThe soft targets of the third row are the full-data baseline's (the paper's Table 5 teacher){taught}; "
        "the fourth row's are the ensemble's. All three subset models share one learning-rate schedule that never "
        "looks at dev; only the hard-label model stops early on dev.\n")


def _subset_teaching_note(t: dict | None) -> str:
    """', taught at T=.. with hard-label weight ..' and, when it trained on augmented copies of its subset, which."""
    if t is None:
        return ""
    note = f", taught at T={t.get('temperature'):g} with hard-label weight {t.get('hard_weight'):g}"
    copies = t.get("copies")
    if copies:
        source = copies.get("source", {})
        note += (f", on its {source.get('cuts')} utterances and their perturbed copies ({', '.join(copies['perturbations'])}; "
                 f"{t.get('num_frames')} frames against {source.get('frames')}), each labelled by its teacher")
    return note


def copies_note(res: Results) -> str:
    """One sentence when the full-data networks trained on train and perturbed copies of it (recipe train_copies)."""
    t = res.net_training or {}
    copies = t.get("copies")
    if not copies:
        return ""
    source = copies.get("source", {})
    shares = f", shares by group {t['mix_shares']}" if t.get("mix_shares") else ", drawn uniformly over them"
    student = res.teaching
    if student is not None and student.get("mix_shares") != t.get("mix_shares"):
        shares += (f"; the student's epochs shared by group {student['mix_shares']}" if student.get("mix_shares")
                   else "; the student's epochs drawn uniformly")
        if (student.get("num_frames") or 0) > (student.get("num_labelled_frames") or 0):
            shares += " (its transfer set's unlabelled audio in the group original, beside train)"
    return (f" The full-data networks (baseline, members, student) trained on train and perturbed copies of it "
            f"({', '.join(copies['perturbations'])}): {t.get('num_frames')} frames against train's {source.get('frames')}, "
            f"each epoch {t.get('frames_per_epoch')} frames{shares}.")


def teaching_note(res: Results) -> str:
    """One paragraph: what taught the distilled model, on which transfer set, with how many updates."""
    t = res.teaching
    if t is None:
        return ""
    if t.get("kind") == "stored":
        fidelity = ((t.get("fidelity") or {}).get("tails") or {}).get(t.get("tail"), {})
        error = fidelity.get("loss_rel_error")
        kept = t.get("mean_kept_mass")
        teacher = (f"stored soft targets: the top {t.get('k')} of {t.get('num_classes')} classes of the "
                   f"{t.get('num_members')}-member ensemble's T={t.get('temperature'):g} distribution per frame, the "
                   f"rest of the mass spread {'uniformly over the other classes' if t.get('tail') == 'uniform' else 'nowhere (renormalised)'}"
                   + (f"; the stored classes hold {100 * kept:.2f}% of the teacher's mass on average" if kept else "")
                   + (f", and the soft-target loss against them is within {100 * error:.2f}% of the loss against the "
                      f"dense teacher ({(t.get('fidelity') or {}).get('frames')} frames, members as probes)"
                      if error is not None else "") + f" (`{t.get('store')}`)")
    else:
        teacher = f"the {t.get('num_members')} members run online on every minibatch (dense targets)"
    frames = t.get("num_frames")
    labelled = t.get("num_labelled_frames")
    transfer = ("" if frames is None else
                f" Transfer set: {frames} frames ({frames / 360000:.2f} h), of which {labelled} have alignments"
                + (f" and {frames - labelled} are unlabelled audio that only the teacher labels" if frames > labelled else "")
                + ".")
    budget = "" if t.get("steps_per_epoch") is None else _budget_note(res, t)
    return f"How the distilled model was taught: {teacher}; T={t.get('temperature'):g}, hard-label weight " \
           f"{t.get('hard_weight'):g}.{transfer}{budget}\n"


def _budget_note(res: Results, t: dict) -> str:
    """The student's training budget against the baseline's and the members': fixed, or each until dev stopped gaining."""
    baseline = res.net_training or {}
    baseline_epoch = baseline.get("frames_per_epoch")
    own_epoch = baseline_epoch is not None and t.get("frames_per_epoch") not in (None, baseline_epoch)
    if not own_epoch:
        epoch = f"epochs of {t['steps_per_epoch']} updates of {t['batch_size']} frames"
    else:
        whole = ", one pass over its transfer set" if t["frames_per_epoch"] == t.get("num_frames") else ""
        epoch = (f"epochs of {t['batch_size']}-frame updates, the student's {t['steps_per_epoch']} "
                 f"({t['frames_per_epoch']} frames{whole}), the baseline's and each member's "
                 f"{baseline.get('steps_per_epoch') or '–'} ({baseline_epoch} frames)")
    if t.get("lr_schedule") not in ("newbob", "plateau"):
        same = "" if own_epoch else ", the same number of updates as the baseline and each member"
        return f" Budget: {t['num_epochs']} {epoch}{same}."
    trained = {name: max((e for e, _ in res.curves.get(name, [])), default=None)
               for name in ("baseline", *(f"member{m}" for m in range(1, res.num_members + 1)), "student")}
    if res.baseline_in_ensemble:
        trained.pop("member1")
    counts = ", ".join(f"{name} {n if n is not None else '–'}" for name, n in trained.items())
    start, end = (100 * (t.get(k) or 0.0) for k in ("newbob_start_gain", "newbob_end_gain"))
    if t["lr_schedule"] == "newbob":
        rule = (f"newbob: the learning rate halved from the first epoch that gained less than {start:g} points of dev "
                f"accuracy, training stopped at the first halving epoch that gained less than {end:g}")
    else:
        rule = (f"plateau: the learning rate halved after each epoch that gained less than {start:g} points of dev "
                f"accuracy, training stopped at the first epoch at the lowest learning rate that gained less than {end:g}")
    return (f" Budget: each network trained until its dev accuracy stopped gaining ({rule}; at most {t['num_epochs']} "
            f"{epoch}); epochs trained: {counts}.")


def sizes_and_speed(res: Results) -> str:
    """Parameters per system and the real-time factor of decoding test at dev's LM weight."""
    rows = []
    gmm = res.gmm or {}
    rows.append(("GMM tri2", None, gmm.get("search_choice"), gmm.get("test_rtf")))
    for system in ("baseline", "ensemble", "student", "baseline_subset", "student_subset", "student_subset_ensemble"):
        dec = res.decode.get(system) or {}
        rtf = dec.get("test", {}).get("rtf")
        rows.append((system, res.params.get(system), search_choice(dec), rtf))
    return markdown_table(["system", "parameters", "LM weight (chosen on dev)", "test decode RTF"], rows, digits=4)


def _subset_note(res: Results) -> str:
    acc = res.accuracy.get("baseline_subset", {}).get("train")
    if acc is None:
        return ""
    return (f"The subset systems' train accuracy is on their own {100 * acc['subset_fraction']:g}% of the training "
            f"utterances ({acc['utterances']} utterances, {acc['num_frames']} frames; seed {acc['subset_seed']}); "
            "the paper's subset is 3%.\n")


def other_figures(res: Results) -> list[str]:
    """Bullet lines: LM perplexity, alignment quality, pdf count, data sizes."""
    lines = []
    lm = res.lm or {}
    # train-lm reports the full LM's and the pruned decoding LM's (G's) dev perplexity.
    for key, what in (("full_dev", "full LM"), ("g_dev", "pruned LM in G.fst"), ("dev", "LM")):
        dev = lm.get(key)
        if dev:
            source = (f"the given {lm['given_arpa']}" if lm.get("given_arpa")
                      else f"{lm.get('order', '?')}-gram on {lm.get('train_words', '?')} words")
            lines.append(f"- {what}: {source}; dev "
                         f"perplexity {dev['ppl']:.1f} over {dev['num_sentences']} sentences "
                         f"(`{res.commands.get('train_lm', 'asr-kd train-lm')}`)")
    if res.alignment:
        lines.append(f"- tri2: {res.alignment['num_pdfs']} pdfs (tied triphone states = network outputs; paper ~14,000)")
        for part, by_engine in (res.alignment.get("boundary_accuracy") or {}).items():
            total = by_engine.get("all")
            if total:
                lines.append(f"- tri2 alignment of {part}: {100 * total['within']:.1f}% of {total['boundaries']} phone "
                             f"starts within 20 ms of the synthesizer's true times ({total['utterances']} utterances)")
    for name in ("train", "train_copies", "dev", "test", *res.more_tests, "transfer"):
        if name in ("train", "dev", "test") or res.banks.get(name) is not None:
            lines.append(f"- {name} frame bank: {_bank_size(res, name)}")
    if res.input_norm is not None:
        lifter = (res.net_training or {}).get("input_lifter")
        liftered = f", then each frame's first {lifter} cepstral coefficients (`--input-lifter {lifter}`)" if lifter else ""
        lines.append(f"- network inputs: {res.input_norm} CMVN (bank/cmvn.json; the same file normalises decoding)"
                     f"{liftered}")
    return lines


def provenance(res: Results) -> str:
    """Which command made which number, and on what hardware."""
    commands = dict(res.commands)
    # A result file's own record of its command wins: run.sh logs a step even when it finds the output made.
    for system, record in res.decode.items():
        if record and "command" in record:
            commands[f"decode_{system}"] = record["command"]
    for system, by_part in res.accuracy.items():
        for part, record in by_part.items():
            if record and "command" in record:
                commands.pop(f"acc_{system}", None)
                commands[f"acc_{system}_{part}"] = record["command"]
    steps_by_command: dict[str, list[str]] = {}  # one command can make several outputs (frame-accuracy's banks)
    for name, command in commands.items():
        steps_by_command.setdefault(command, []).append(name)
    lines = ["| step | command |", "|---|---|"]
    for command, names in steps_by_command.items():
        escaped = command.replace("|", "\\|")  # a pipe would end the table cell
        lines.append(f"| {', '.join(names)} | `{escaped}` |")
    hardware = {hardware_line(r["hardware"]) for part in res.accuracy.values() for r in part.values()
                if r and "hardware" in r}
    hardware |= {hardware_line(r["hardware"]) for r in res.decode.values() if r and "hardware" in r}
    hw_lines = [f"- scoring and decoding ran on: {h}" for h in sorted(hardware)]
    hw_lines.append(f"- this report was made on: {hardware_line(describe_hardware())}")
    return "\n".join(lines) + "\n\n" + "\n".join(hw_lines) + "\n\n" + _fingerprint_part(res)


def _fingerprint_part(res: Results) -> str:
    """The stage outputs' digests and the tool versions that made the corpus and the GMM."""
    tools = (res.corpus or {}).get("tools")
    notes = [f"- corpus synthesized with: {versions_line(tools) if tools else 'not recorded'}",
             f"- features and GMM made with: {versions_line(res.gmm_libraries) if res.gmm_libraries else 'not recorded'}"]
    return ("Each stage output's digest (sha256 over its files' names and contents; `asr-kd fingerprint --exp-dir A "
            "--against B` names the first stage where two experiments part):\n\n"
            + fingerprint_table(res.fingerprint) + "\n" + "\n".join(notes) + "\n")


def render_results(res: Results, plots: list[Path], command: str, seed_runs: Sequence[Results] = (),
                   seeds: Sequence[int] = ()) -> str:
    """The whole RESULTS.md text; with `seed_runs` (other network seeds), Table 1 and 5 show means over all runs."""
    runs = [res, *seed_runs]
    view = SeedMeans(runs) if seed_runs else res
    t1 = {s: view.acc(s, "test") for s in ("baseline", "ensemble", "student")}
    if seed_runs:
        gain = mean_of(gains(runs, "test", gain_recovered))
        dev_gain = mean_of(gains(runs, "dev", gain_recovered))
        gain_what = f"mean over the {len(runs)} network seeds {', '.join(map(str, seeds))} of each seed's gain"
    else:
        gain = gain_recovered(t1["baseline"], t1["ensemble"], t1["student"])
        dev_gain = gain_recovered(res.acc("baseline", "dev"), res.acc("ensemble", "dev"), res.acc("student", "dev"))
        gain_what = "one network seed"
    means_note = (f"Network rows are means over {len(runs)} network seeds ({', '.join(map(str, seeds))}; the corpus, "
                  "GMM and frame banks are shared); each seed's numbers are in 'Spread over network seeds' below.\n\n"
                  if seed_runs else "")
    parts = [
        f"# Results of {res.exp_dir}\n",
        f"Made by `{command}` from the outputs of `recipes/run.sh`. Frame accuracies are against the tri2 "
        "forced alignments; WERs use the LM weight and word insertion penalty with the lowest dev WER, applied to "
        "test (Kaldi's score.sh). '–' marks a stage that has not run. Data: train "
        f"{_bank_size(res, 'train')}; dev {_bank_size(res, 'dev')}; test {_bank_size(res, 'test')}.{copies_note(res)}\n",
        "## Table 1: frame accuracy and WER (paper Table 1)\n",
        means_note + table1(view),  # type: ignore[arg-type]
        f"\nGain recovered by distillation, (distilled - baseline) / (ensemble - baseline) of test frame accuracy "
        f"({gain_what}): **{_percent(gain)}** (dev: {_percent(dev_gain)}; paper: more than {PAPER_GAIN_RECOVERED:.0f}%)."
        + ("" if gain is not None or None in t1.values() else
           " Undefined here: the ensemble is not better than the baseline.") + "\n",
        *(["The ensemble's first member is the baseline itself, trained once (its other members differ from it in "
           "their seed only).\n"] if res.baseline_in_ensemble else []),
        *([more_tests_title(view), more_tests_table(view)] if view.more_tests else []),
        teaching_note(res),
        "## Table 5: training on a subset of the data (paper Table 5)\n",
        table5(view),  # type: ignore[arg-type]
        "\n" + _subset_note(res),
    ]
    sure = significance_table(runs)
    if sure:
        parts += ["## How sure the WER differences are (paired bootstrap over the utterances)\n", sure]
    if seed_runs:
        parts += ["## Spread over network seeds\n",
                  f"Seeds {', '.join(map(str, seeds))}: `--net-seed N` gives the baseline, the student and the 3% models "
                  + ("seed N, the ensemble's member 1 is the baseline and member m > 1 has seed 100 N + m. "
                     if res.baseline_in_ensemble else "seed N and member m seed 100 N + m. ")
                  + "Mean ± sample standard deviation.\n",
                  spread_tables(runs, seeds, gain_recovered)]
    parts += [
        "## Model sizes and decoding speed\n",
        sizes_and_speed(res),
        "\nRTF = (network + search wall seconds) / audio seconds, decoding test at the chosen LM weight with the "
        "workers given in the command; GMM: search only.\n",
        "## Other figures\n",
        "\n".join(other_figures(res)) + "\n",
        "## Plots\n",
        "\n".join(f"![{p.stem}]({p.as_posix()})" for p in plots) + ("\n" if plots else "No curves yet.\n"),
        "## Provenance\n",
        provenance(res),
    ]
    return "\n".join(parts)
