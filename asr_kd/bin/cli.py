"""`asr-kd <verb> [options]`: dispatch to `asr_kd.bin.<verb>` (dashes become underscores)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Sequence

import asr_kd.bin


def available_verbs() -> list[str]:
    """Verbs with a module under `asr_kd.bin` that defines `main`."""
    names = [m.name for m in pkgutil.iter_modules(asr_kd.bin.__path__) if m.name not in {"cli", "common"}]
    return sorted(n.replace("_", "-") for n in names)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: asr-kd <verb> [options]\n\nverbs:\n  " + "\n  ".join(available_verbs()))
        return 0
    verb = argv[0]
    if verb.replace("_", "-") not in available_verbs():
        print(f"asr-kd: unknown verb {verb!r}; try one of: {', '.join(available_verbs())}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"asr_kd.bin.{verb.replace('-', '_')}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
