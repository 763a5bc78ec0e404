"""Small helpers shared by every stage: atomic writes, logging, errors, the hardware a number was measured on."""

from asr_kd.utils.errors import InputError
from asr_kd.utils.io import atomic_path, atomic_write_text, atomic_write_json, read_json
from asr_kd.utils.logging import setup_logging

__all__ = [
    "InputError",
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "read_json",
    "setup_logging",
]
