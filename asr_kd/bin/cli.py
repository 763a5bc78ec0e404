"""`asr-kd <verb> [options]`: dispatch to `asr_kd.bin.<verb>` (dashes become underscores)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import re
import sys
import textwrap
from typing import Sequence

import asr_kd.bin
from asr_kd.report.status import RECIPE_STAGES


def available_verbs() -> list[str]:
    """Verbs with a module under `asr_kd.bin` that defines `main`."""
    names = [m.name for m in pkgutil.iter_modules(asr_kd.bin.__path__) if m.name not in {"cli", "common"}]
    return sorted(n.replace("_", "-") for n in names)


def verb_purpose(verb: str) -> str:
    """The first line of the verb's module docstring, without its "`asr-kd verb`:" prefix (read, not imported)."""
    spec = importlib.util.find_spec(f"asr_kd.bin.{verb.replace('-', '_')}")
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    purpose = re.sub(r"^`asr-kd [\w-]+`:\s*", "", first)
    return purpose[:1].upper() + purpose[1:]


def help_text() -> str:
    """`asr-kd --help`: the verbs with their purposes, grouped by the recipe stages that run them, in stage order."""
    verbs = available_verbs()
    width = max(map(len, verbs)) + 2
    lines = ["usage: asr-kd <verb> [options]      (asr-kd <verb> --help: the verb's options)", "",
             "recipes/run.sh (egs/synth/run.sh on the embedded corpus) runs these verbs stage by stage, from a",
             "corpus to RESULTS.md; `asr-kd status --exp-dir DIR` tells how far an experiment has got.", ""]
    # A verb that several stages run (train) is listed once, under the first of them; a stage that runs no
    # verb of its own joins the heading of the stage that first ran its verbs.
    first_stage: dict[str, int] = {}
    for stage in RECIPE_STAGES:
        for verb in stage.verbs:
            first_stage.setdefault(verb, stage.number)
    groups: dict[int, list[int]] = {}
    for stage in RECIPE_STAGES:
        home = stage.number if any(first_stage[v] == stage.number for v in stage.verbs) else first_stage[stage.verbs[0]]
        groups.setdefault(home, []).append(stage.number)
    stages = {stage.number: stage for stage in RECIPE_STAGES}
    for home, numbers in groups.items():
        label = f"stage {numbers[0]}" if len(numbers) == 1 else "stages " + ", ".join(map(str, numbers))
        own = [v for v in stages[home].verbs if first_stage[v] == home]
        earlier = [v for v in stages[home].verbs if first_stage[v] != home]
        also = f" (also runs {', '.join(earlier)})" if earlier else ""
        lines.append(textwrap.fill(f"{label}: " + "; ".join(stages[n].summary for n in numbers) + also, 100,
                                   subsequent_indent="    "))
        lines += [f"  {verb:<{width}}{verb_purpose(verb)}" for verb in own]
    others = [v for v in verbs if all(v not in stage.verbs for stage in RECIPE_STAGES)]
    lines.append("other verbs (egs/synth/run_*.sh, egs/mnist/run.sh, and tools):")
    lines += [f"  {verb:<{width}}{verb_purpose(verb)}" for verb in others]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run `asr-kd <verb> [options]`; --help lists the verbs; an unknown verb exits with 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(help_text(), end="")
        return 0
    verb = argv[0]
    if verb.replace("_", "-") not in available_verbs():
        print(f"asr-kd: unknown verb {verb!r}; try one of: {', '.join(available_verbs())}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"asr_kd.bin.{verb.replace('-', '_')}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
