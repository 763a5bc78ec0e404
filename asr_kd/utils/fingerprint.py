"""What an experiment's stages made, as content digests, and the tool versions that made them.

Two experiments (two sessions, two machines) that should agree can be compared stage by stage: the
first artifact whose digest differs is where they parted (the synthesizers' audio, the features, the
GMM's estimation, ...). Digests cover file contents and names relative to the artifact's directory,
never absolute paths, so copies of one experiment in two places give the same digests.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

# The Debian packages whose programs synthesize and resample the embedded corpus (asr_kd.data.synth).
SYNTH_PACKAGES = ("espeak-ng", "festival", "flite", "sox")
# The Python packages whose numerics the features (lhotse's fbank on torch) and the GMM stages run on.
GMM_LIBRARIES = ("kaldi-hmm-gmm", "kaldifst", "numpy", "lhotse", "torch")


@dataclass(frozen=True)
class Artifact:
    """One stage output: the files matching `patterns` under `<exp>/<where>`."""

    name: str
    where: str
    patterns: tuple[str, ...]


# In pipeline order, so the first that differs between two experiments names the stage where they part.
EXPERIMENT_ARTIFACTS = (
    Artifact("corpus audio", "corpus", ("LibriSpeech/**/*.flac",)),
    Artifact("corpus transcripts and phone times", "corpus", ("LibriSpeech/**/*.txt", "LibriSpeech/**/*.ctm")),
    Artifact("features", "data/fbank", ("feats_*/*",)),
    Artifact("lexicon and L", "lang", ("words.txt", "phones.txt", "L.fst")),
    Artifact("LM (G.fst)", "lang_test", ("G.fst",)),
    Artifact("GMM mono", "gmm/mono", ("final.mdl", "tree")),
    Artifact("GMM tri1", "gmm/tri1", ("final.mdl", "tree")),
    Artifact("GMM tri2", "gmm/tri2", ("final.mdl", "final.mat", "tree")),
    Artifact("decoding graph (HCLG)", "gmm/tri2/graph", ("HCLG.fst",)),
    Artifact("train frame bank (inputs, labels)", "bank/train", ("feats.npy", "labels.npy")),
)


@dataclass(frozen=True)
class Digest:
    """The sha256 of an artifact's files (names and contents), how many files and bytes it covers."""

    files: int
    bytes: int
    sha256: str


def files_digest(root: str | Path, patterns: Sequence[str]) -> Digest | None:
    """Digest of the files under `root` matching any glob in `patterns`; None when none match."""
    root = Path(root)
    paths = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    if not paths:
        return None
    outer = hashlib.sha256()
    total = 0
    for path in paths:
        inner = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                inner.update(block)
                total += len(block)
        outer.update(path.relative_to(root).as_posix().encode() + b"\0" + inner.digest())
    return Digest(len(paths), total, outer.hexdigest())


def experiment_fingerprint(exp_dir: str | Path, corpus_dir: str | Path | None = None) -> dict[str, Digest | None]:
    """Each of `EXPERIMENT_ARTIFACTS` under `exp_dir` by name, None where that stage left nothing; the corpus
    artifacts are read from `corpus_dir` when the experiment was prepared from one outside it."""
    exp = Path(exp_dir)

    def root(artifact: Artifact) -> Path:
        return Path(corpus_dir) if corpus_dir is not None and artifact.where == "corpus" else exp / artifact.where

    return {a.name: files_digest(root(a), a.patterns) for a in EXPERIMENT_ARTIFACTS}


def first_difference(a: dict[str, Digest | None], b: dict[str, Digest | None]) -> str | None:
    """The first artifact (pipeline order) that both fingerprints hold and whose digests differ."""
    for name, digest in a.items():
        other = b.get(name)
        if digest is not None and other is not None and digest.sha256 != other.sha256:
            return name
    return None


def debian_package_versions(names: Sequence[str] = SYNTH_PACKAGES) -> dict[str, str | None]:
    """Installed version of each Debian package (dpkg's record); None where not installed or no dpkg."""
    if shutil.which("dpkg-query") is None:
        return {name: None for name in names}
    versions: dict[str, str | None] = {}
    for name in names:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Status}\t${Version}", name], capture_output=True,
                             text=True, check=False)
        status, _, version = out.stdout.partition("\t")
        versions[name] = version if out.returncode == 0 and status.endswith(" installed") else None
    return versions


def python_package_versions(names: Sequence[str] = GMM_LIBRARIES) -> dict[str, str | None]:
    """Installed version of each Python distribution; None where it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def versions_line(versions: dict[str, str | None]) -> str:
    """`{"sox": "14.4", "flite": None}` as "sox 14.4, flite (not installed)"."""
    return ", ".join(f"{name} {version}" if version else f"{name} (not installed)"
                     for name, version in versions.items())
