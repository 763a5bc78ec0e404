"""Shared CLI plumbing: run a `main` so that bad input ends with one line and exit code 2; options <-> configs."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Any, Callable, TypeVar

from asr_kd.utils.errors import InputError
from asr_kd.utils.safe_files import TRUST_PICKLE_ENV, trust_pickle

Config = TypeVar("Config")


def add_trust_pickle_option(parser: argparse.ArgumentParser) -> None:
    """The --trust-pickle option of every command that reads model files."""
    parser.add_argument("--trust-pickle", action="store_true",
                        help="also read model files in the old pickle formats (final.mdl, checkpoints written "
                             "before the safetensors / weights-only formats), which can run code when loaded: "
                             f"only for files you trust (the same as {TRUST_PICKLE_ENV}=1)")


def run_cli(body: Callable[[], object], prog: str, trust_pickle_files: bool = False) -> int:
    """Call `body` (trusting legacy pickle files if asked); an `InputError` prints `prog: error: message`, returns 2."""
    try:
        with trust_pickle(trust_pickle_files):
            body()
    except InputError as err:
        logging.getLogger(prog).debug("input error", exc_info=True)
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0


def config_defaults(config_type: type) -> dict[str, Any]:
    """The field defaults of the dataclass `config_type`, for `parser.set_defaults`: one source of defaults."""
    defaults = {}
    for f in dataclasses.fields(config_type):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


def config_from_args(config_type: type[Config], args: argparse.Namespace) -> Config:
    """The dataclass `config_type` from the parsed options named like its fields (the others keep their defaults)."""
    given = vars(args)
    return config_type(**{f.name: given[f.name] for f in dataclasses.fields(config_type) if f.name in given})


def add_search_options(parser: argparse.ArgumentParser, defaults: Any) -> None:
    """The decode CLIs' LM-weight sweep and search options: the fields of `defaults`, an asr_kd.decode.SearchConfig."""
    g = parser.add_argument_group("LM weights and search (Kaldi's decode.sh + score.sh)")
    g.add_argument("--lm-weights", nargs="+", default=[str(w) for w in defaults.lm_weights], metavar="W",
                   help="LM weights tried on dev, e.g. --lm-weights 9 11 13 (acoustic scale 1/W); the one with the "
                        "fewest dev errors (ties: the smaller) decodes the test parts")
    g.add_argument("--extend-lm-weights", type=int, default=defaults.extend_lm_weights, metavar="N",
                   help="when dev's best weight is at an edge of --lm-weights, try up to N more weights beyond it, "
                        "one spacing apart, until the best is inside the sweep")
    g.add_argument("--word-ins-penalties", nargs="+", default=[str(p) for p in defaults.word_ins_penalties],
                   metavar="P", help="word insertion penalties swept on dev with the LM weights, e.g. "
                   "--word-ins-penalties 0 0.5 1 (Kaldi score.sh's); the pair with the fewest dev errors decodes the test parts")
    g.add_argument("--extend-word-ins-penalties", type=int, default=defaults.extend_word_ins_penalties, metavar="N",
                   help="when dev's best penalty is the top of --word-ins-penalties, try up to N more above it, "
                        "one spacing apart, until the best is below the top")
    g.add_argument("--every-weight", action="store_true",
                   help="decode the test parts at every weight dev was decoded at (default: at dev's choice only)")
    g.add_argument("--beam", type=float, default=defaults.beam, help="search beam")
    g.add_argument("--max-active", type=int, default=defaults.max_active, help="most active states per frame")
    g.add_argument("--lattice-beam", type=float, default=defaults.lattice_beam,
                   help="lattice pruning beam (lattice-faster)")
    g.add_argument("--decoder", choices=("lattice-faster", "faster"), default=defaults.decoder, help="Kaldi decoder")
    g.add_argument("--num-workers", type=int, default=defaults.num_workers, help="decoding processes")
    g.add_argument("--overwrite", action="store_true", help="redo a decode whose results.json exists")


def add_alignment_options(parser: argparse.ArgumentParser, defaults: Any) -> None:
    """Forced alignment's search options (Kaldi's align_si.sh): `defaults` holds beam, retry_beam, num_workers."""
    parser.add_argument("--beam", type=float, default=defaults.beam, help="alignment beam")
    parser.add_argument("--retry-beam", type=float, default=defaults.retry_beam,
                        help="beam of the second try for an utterance the first beam failed")
    parser.add_argument("--num-workers", type=int, default=defaults.num_workers, help="alignment processes")
