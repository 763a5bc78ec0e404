"""Write every N-th cut of lhotse cut manifests (a smaller set that keeps all speakers).

  python egs/synth/local/every_nth_cuts.py --every 10 --out-dir DIR --cuts A.jsonl.gz B.jsonl.gz
writes DIR/A.jsonl.gz and DIR/B.jsonl.gz; an output that exists is kept.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lhotse import CutSet

from asr_kd.utils.io import atomic_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--every", type=int, required=True, help="keep cuts 0, N, 2N, ... of each manifest")
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="cut manifests to thin out")
    p.add_argument("--out-dir", type=Path, required=True, help="where the thinned copies go (same file names)")
    args = p.parse_args()
    if args.every < 1:
        p.error(f"--every must be >= 1, got {args.every}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in args.cuts:
        out = args.out_dir / path.name
        if out.is_file():
            continue
        picked = CutSet.from_cuts(c for i, c in enumerate(CutSet.from_file(path)) if i % args.every == 0)
        with atomic_path(out) as tmp:
            picked.to_file(tmp)
        print(f"{out}: {len(picked)} cuts (every {args.every}-th of {path})")


if __name__ == "__main__":
    main()
