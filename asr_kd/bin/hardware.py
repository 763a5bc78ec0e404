"""`asr-kd hardware`: this machine's CPU, cores, bf16 units and GPU, and where and in which precision networks run.

What `--device auto` and `--amp auto` choose here, with a warning when the networks would train in fp32
on a CPU without bf16 units (several times slower than the README's times). recipes/run.sh logs it
before its first stage.

Example:
  asr-kd hardware
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from asr_kd.bin.common import run_cli
from asr_kd.utils.device import AMP_CHOICES


def get_parser() -> argparse.ArgumentParser:
    """Command-line options of `asr-kd hardware`."""
    p = argparse.ArgumentParser(prog="asr-kd hardware", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="the --device the networks would be given (default auto)")
    p.add_argument("--amp", default="auto", choices=AMP_CHOICES, help="the --amp they would be given (default auto)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Print the hardware line and the device and precision the networks get."""
    args = get_parser().parse_args(argv)

    def body() -> None:
        from asr_kd.utils.device import resolve_device, slow_precision_note, use_bf16
        from asr_kd.utils.hardware import describe_hardware, hardware_line

        device = resolve_device(args.device)
        print(f"hardware: {hardware_line(describe_hardware())}")
        print(f"networks: --device {args.device} -> {device}, --amp {args.amp} -> "
              f"{'bf16 autocast' if use_bf16(args.amp, device) else 'fp32'}")
        note = slow_precision_note(args.amp, device)
        if note:
            print(f"warning: {note}")

    return run_cli(body, "asr-kd hardware")


if __name__ == "__main__":
    sys.exit(main())
