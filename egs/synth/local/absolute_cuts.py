"""Copy lhotse cut manifests with their relative feature paths made absolute (prefixed by --root).

A finished recipe run stores feature paths relative to the directory it ran in; the egs scripts that
read its cuts from elsewhere use these copies. With --every N > 1, OUT_DIR/everyN/ also gets every
N-th cut of each manifest (a smaller training set with all speakers).

  python egs/synth/local/absolute_cuts.py --root /tmp/demo --cuts A.jsonl.gz B.jsonl.gz --out-dir DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lhotse import CutSet

from asr_kd.utils.io import atomic_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="directory the relative feature paths start from")
    p.add_argument("--cuts", type=Path, nargs="+", required=True, help="cut manifests to copy")
    p.add_argument("--out-dir", type=Path, required=True, help="where the copies go (same file names)")
    p.add_argument("--every", type=int, default=1, help="also write every N-th cut under OUT_DIR/everyN/")
    args = p.parse_args()
    root = args.root.resolve()
    for path in args.cuts:
        out = args.out_dir / path.name
        if not out.is_file():
            # Path(root) / an absolute path is that absolute path: only relative ones change.
            cuts = CutSet.from_file(path).map(lambda c: c.with_features_path_prefix(root) if c.has_features else c)
            with atomic_path(out) as tmp:
                cuts.to_file(tmp)
            print(f"{out}: {len(cuts)} cuts, feature paths under {root}")
        sub = args.out_dir / f"every{args.every}" / path.name
        if args.every > 1 and not sub.is_file():
            sub.parent.mkdir(parents=True, exist_ok=True)
            picked = CutSet.from_cuts(c for i, c in enumerate(CutSet.from_file(out)) if i % args.every == 0)
            with atomic_path(sub) as tmp:
                picked.to_file(tmp)
            print(f"{sub}: {len(picked)} cuts (every {args.every}-th)")


if __name__ == "__main__":
    main()
