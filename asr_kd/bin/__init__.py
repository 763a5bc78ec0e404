"""Command-line entry points: `python -m asr_kd.bin.<verb>` or `asr-kd <verb>`."""
