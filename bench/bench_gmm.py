"""GMM E-step speed: row-blocked matrix products (asr_kd.gmm.blas) against plain numpy products.

Synthetic frames assigned to pdfs, Gaussian statistics as `asr_kd.gmm.estimate.accumulate`
gathers them; both variants run interleaved in the same process (best of --repeats), so load
from other processes on the machine hits both alike. Prints frames/s and the ratio.

    python bench/bench_gmm.py [--frames 300000 --pdfs 120 --gauss 8 --repeats 3]   (monophone-like sizes)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from asr_kd.gmm.blas import rows_matmul, rows_tmatmul


def estep(x: np.ndarray, pdf: np.ndarray, params: list[tuple[np.ndarray, np.ndarray]], blocked: bool) -> float:
    """Posterior-weighted x and x^2 sums of every pdf's Gaussians; returns a checksum."""
    order = np.argsort(pdf, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(pdf, minlength=len(params)))])
    total = 0.0
    for p, (weights, bias) in enumerate(params):
        xp = x[order[bounds[p]:bounds[p + 1]]]
        feats = np.concatenate([xp, xp * xp], axis=1)
        ll = (rows_matmul(feats, weights) if blocked else feats @ weights) + bias
        post = np.exp(ll - ll.max(axis=1, keepdims=True))
        post /= post.sum(axis=1, keepdims=True)
        stats = rows_tmatmul(post, feats) if blocked else post.T @ feats
        total += float(stats[0, 0])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--pdfs", type=int, default=120)
    parser.add_argument("--gauss", type=int, default=8, help="Gaussians per pdf")
    parser.add_argument("--dim", type=int, default=39)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.frames, args.dim))
    pdf = rng.integers(0, args.pdfs, size=args.frames)
    params = [(rng.normal(size=(2 * args.dim, args.gauss)) * 0.1, rng.normal(size=args.gauss))
              for _ in range(args.pdfs)]
    best = {"numpy": float("inf"), "blocked": float("inf")}
    for _ in range(args.repeats):
        for name in best:
            start = time.perf_counter()
            estep(x, pdf, params, blocked=name == "blocked")
            best[name] = min(best[name], time.perf_counter() - start)
    for name, seconds in best.items():
        print(f"{name:8s} {seconds:7.3f} s  {args.frames / seconds / 1e6:6.2f} M frames/s")
    print(f"blocked / numpy speed: {best['numpy'] / best['blocked']:.2f}x "
          f"({args.frames} frames, {args.pdfs} pdfs x {args.gauss} Gaussians, dim {args.dim})")


if __name__ == "__main__":
    main()
