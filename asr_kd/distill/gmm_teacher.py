"""A GMM-HMM system as a teacher: frame posteriors over its pdfs, alone or mixed with DNN members.

The GMM's posterior of pdf s at frame t is softmax_s(a * log p(x_t | s) + log P(s)): the
acoustic scale `a` flattens the likelihoods, which are far too peaky to be posteriors as they
stand (frames are not independent; Kaldi decodes GMMs at a = 0.1), and the prior P(s) is the pdf
occupancy of the system's own training alignment (`ali_train.npz`, add-one smoothed). These
"logits" a * loglike + log prior enter the ensemble mean like a network's logits, so at
temperature T the GMM member contributes softmax((a * loglike + log prior) / T).

The GMM sees its own features (spliced MFCC through LDA+MLLT for tri2, per-speaker CMVN), made
from the very fbank the frame bank holds, so each utterance has the bank's frame count; they are
computed once per bank (`attach`) and scored on demand by frame index. The likelihoods of all
Gaussians of all pdfs come from one matrix product per batch and a per-pdf log-sum-exp (scatter).

`MixedTeacher` combines GMM teachers and FrameClassifier members (any order, per-teacher weights)
with the interface `SoftTargetStore.write` needs; `make-soft-targets` builds one when a --teacher
is a GMM system directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from asr_kd.distill.ensemble import (EnsembleTeacher, MeanType, average_posteriors, file_sha256, load_member,
                                     normalise_weights)
from asr_kd.utils.errors import InputError

__all__ = ["DEFAULT_ACOUSTIC_SCALE", "is_gmm_system", "GmmScorer", "GmmTeacher", "MixedTeacher"]

log = logging.getLogger(__name__)

# Kaldi's decoding acoustic scale for GMM systems; also what align_si.sh uses.
DEFAULT_ACOUSTIC_SCALE = 0.1


def is_gmm_system(path: str | os.PathLike) -> bool:
    """True for a GMM system directory (it holds final.mdl), the way --teacher tells GMMs from checkpoints."""
    return Path(path).is_dir() and (Path(path) / "final.mdl").is_file()


class GmmScorer:
    """Log-likelihoods (frames, pdfs) of an AmDiagGmm, every Gaussian of every pdf in one matmul.

    Gaussians are ordered so that pdfs with the same number of components sit side by side: the
    per-pdf log-sum-exp is then a reshape and a max-shifted sum per such group (a few groups), with
    no padding in the matmul and no scatter over (frames, Gaussians).
    """

    def __init__(self, am: Any, device: str | torch.device = "cpu"):
        gmms = [am.get_pdf(p) for p in range(am.num_pdfs)]
        sizes = np.array([g.num_gauss for g in gmms])
        order = np.argsort(sizes, kind="stable")  # pdfs grouped by their number of Gaussians
        means_invvars = np.concatenate([np.asarray(gmms[p].means_invvars, np.float64) for p in order])
        inv_vars = np.concatenate([np.asarray(gmms[p].inv_vars, np.float64) for p in order])
        gconsts = np.concatenate([np.asarray(gmms[p].gconsts, np.float64) for p in order])
        # log w + log N(x) = gconst + x . (mu / var) - 0.5 x^2 . (1 / var): linear in [x, x^2].
        weights = np.concatenate([means_invvars, -0.5 * inv_vars], axis=1)
        self.num_pdfs, self.dim = am.num_pdfs, am.dim
        self.weights = torch.from_numpy(weights.T.astype(np.float32)).to(device)  # (2D, G)
        self.gconsts = torch.from_numpy(gconsts.astype(np.float32)).to(device)  # (G,)
        # (Gaussians per pdf, pdfs with that many): consecutive column blocks, in `order`.
        self.groups = [(int(n), int((sizes == n).sum())) for n in np.unique(sizes)]
        self.pdf_order = torch.from_numpy(order.astype(np.int64)).to(device)

    def to(self, device: str | torch.device) -> "GmmScorer":
        """Move the stacked parameters to `device`."""
        self.weights, self.gconsts, self.pdf_order = (t.to(device) for t in (self.weights, self.gconsts, self.pdf_order))
        return self

    @torch.no_grad()
    def loglikes(self, feats: Tensor, batch_size: int = 2048) -> Tensor:
        """(frames, num_pdfs) float32 log p(x | pdf) for features (frames, dim)."""
        if feats.dim() != 2 or feats.shape[1] != self.dim:
            raise InputError(f"GMM features must be (frames, {self.dim}), got {tuple(feats.shape)}")
        out = torch.empty(feats.shape[0], self.num_pdfs, device=self.weights.device)
        # Autocast would run the matmul in bf16: log-likelihoods of ~1e3 need fp32.
        with torch.autocast(self.weights.device.type, enabled=False):
            for start in range(0, feats.shape[0], batch_size):
                x = feats[start:start + batch_size].to(self.weights.device, torch.float32)
                comp = torch.addmm(self.gconsts, torch.cat([x, x * x], dim=1), self.weights)  # (B, G)
                sorted_ll, col = [], 0
                for n, count in self.groups:
                    block = comp[:, col:col + n * count].reshape(x.shape[0], count, n)
                    top = block.amax(dim=2, keepdim=True)  # exact per pdf; measured faster than torch.logsumexp
                    sorted_ll.append(block.sub_(top).exp_().sum(dim=2).log_().add_(top.squeeze(2)))
                    col += n * count
                out[start:start + x.shape[0]].index_copy_(1, self.pdf_order, torch.cat(sorted_ll, dim=1))
        return out


def _pdf_log_priors(sys_dir: Path, transition_model: Any, num_pdfs: int) -> tuple[np.ndarray, str]:
    """Add-one smoothed log pdf occupancy of the system's training alignment, and that file's sha256."""
    path = sys_dir / "ali_train.npz"
    if not path.is_file():
        raise InputError(f"{path}: missing; the GMM teacher's pdf priors come from its training alignment")
    tid_to_pdf = np.asarray(transition_model.transition_id_to_pdf_array(), dtype=np.int64)
    counts = np.ones(num_pdfs, dtype=np.float64)
    with np.load(path) as alis:
        for key in alis.files:
            counts += np.bincount(tid_to_pdf[alis[key]], minlength=num_pdfs)
    return np.log(counts / counts.sum()).astype(np.float32), file_sha256(path)


class GmmTeacher:
    """A GMM system's frame posteriors softmax(acoustic_scale * loglike + log prior) over its pdfs."""

    def __init__(self, sys_dir: str | os.PathLike, acoustic_scale: float = DEFAULT_ACOUSTIC_SCALE,
                 device: str | torch.device = "cpu"):
        # Not a cycle (gmm imports no distill): the trainer imports this module through soft_targets, and
        # asr_kd.gmm brings lhotse and the Kaldi bindings (~0.3 s) that only a GMM teacher needs.
        from asr_kd.gmm.stages import system_config
        from asr_kd.gmm.system import GmmSystem

        self.sys_dir = Path(sys_dir)
        if not is_gmm_system(self.sys_dir):
            raise InputError(f"{self.sys_dir}: not a GMM system directory (no final.mdl)")
        if not (acoustic_scale > 0 and np.isfinite(acoustic_scale)):
            raise InputError(f"GMM acoustic scale must be > 0, got {acoustic_scale}")
        self.acoustic_scale = float(acoustic_scale)
        system = GmmSystem.load(self.sys_dir)
        self.transform = system.transform
        self.cmvn = system_config(self.sys_dir).get("cmvn", "speaker")  # features as in its training
        self.scorer = GmmScorer(system.am, device)
        priors, ali_sha = _pdf_log_priors(self.sys_dir, system.transition_model, system.am.num_pdfs)
        self.log_priors = torch.from_numpy(priors).to(device)
        self.record = {"path": str(self.sys_dir), "sha256": file_sha256(self.sys_dir / "final.mdl"),
                       "transform_sha256": file_sha256(self.sys_dir / "final.mat") if self.transform is not None else None,
                       "priors_sha256": ali_sha, "acoustic_scale": self.acoustic_scale, "cmvn": self.cmvn}
        self.feats: Tensor | None = None  # (bank frames, dim), set by `attach`
        self.bank_dir: str | None = None

    @property
    def num_pdfs(self) -> int:
        """Classes of the posteriors."""
        return self.scorer.num_pdfs

    def to(self, device: str | torch.device) -> "GmmTeacher":
        """Move the GMM (and attached features) to `device`."""
        self.scorer.to(device)
        self.log_priors = self.log_priors.to(device)
        if self.feats is not None:
            self.feats = self.feats.to(device)
        return self

    def features(self, cuts: Iterable) -> Mapping[str, np.ndarray]:
        """GMM features {cut id: (frames, dim)} of `cuts` (speaker CMVN over these cuts, as in training)."""
        from asr_kd.gmm.features import compute_gmm_features  # deferred as in __init__

        return compute_gmm_features(cuts, cmvn=self.cmvn, transform=self.transform).feats

    def attach(self, frame_bank: Any, cuts: Iterable | Mapping[str, np.ndarray], source: str = "the GMM cuts") -> None:
        """Make the GMM features of every frame of `frame_bank`, in its order, from `cuts` (or ready features).

        Every bank cut must be among them with the bank's frame count, else an InputError names it.
        """
        feats = cuts if isinstance(cuts, Mapping) else self.features(cuts)
        offsets = frame_bank.utt_offsets.cpu().numpy()
        rows = []
        for u, cut_id in enumerate(frame_bank.cut_ids):
            if cut_id not in feats:
                raise InputError(f"cut {cut_id} of frame bank {frame_bank.directory}: not in {source}")
            expected = int(offsets[u + 1] - offsets[u])
            if feats[cut_id].shape[0] != expected:
                raise InputError(f"cut {cut_id}: GMM features have {feats[cut_id].shape[0]} frames, frame bank "
                                 f"{frame_bank.directory} has {expected} (the bank and {source} disagree)")
            rows.append(np.asarray(feats[cut_id], dtype=np.float32))
        dims = {r.shape[1] for r in rows}
        if dims != {self.scorer.dim}:
            raise InputError(f"{source}: GMM features of dim {sorted(dims)}, {self.sys_dir} takes {self.scorer.dim}")
        self.feats = torch.from_numpy(np.concatenate(rows)).to(self.log_priors.device)
        self.bank_dir = str(frame_bank.directory)
        log.info("GMM teacher %s: features of %d frames of %s (%d-dim)", self.sys_dir, self.feats.shape[0],
                 frame_bank.directory, self.scorer.dim)

    def logits_of_features(self, feats: Tensor) -> Tensor:
        """acoustic_scale * log p(x | pdf) + log P(pdf): (frames, num_pdfs); softmax gives the posteriors."""
        return self.scorer.loglikes(feats).mul_(self.acoustic_scale).add_(self.log_priors)

    def logits(self, frame_idx: Tensor) -> Tensor:
        """Logits (B, num_pdfs) of attached bank frames `frame_idx` (B,)."""
        if self.feats is None:
            raise InputError(f"GMM teacher {self.sys_dir}: no frame bank attached (call attach first)")
        return self.logits_of_features(self.feats[frame_idx.to(self.feats.device).long()])


class MixedTeacher:
    """GMM teachers and FrameClassifier members averaged at temperature T, with per-teacher weights.

    Members keep the order given (that is the order of `weights`); the FrameClassifiers run
    together as one `EnsembleTeacher`. A `FrameTeacher` (asr_kd.distill.teacher): GMM members need the
    frames' bank indices in `member_logits(x, frame_idx)`.
    """

    def __init__(self, members: Sequence[GmmTeacher | Any], mean: MeanType = "arithmetic",
                 weights: Sequence[float] | None = None, checkpoints: Sequence[dict[str, str]] = ()):
        if not members:
            raise InputError("a teacher needs at least one member")
        self.members = list(members)
        self.mean: MeanType = mean
        self.weights = normalise_weights(weights, len(self.members))
        self.gmm_positions = [i for i, m in enumerate(self.members) if isinstance(m, GmmTeacher)]
        self.dnn_positions = [i for i, m in enumerate(self.members) if not isinstance(m, GmmTeacher)]
        self.dnn = EnsembleTeacher([self.members[i] for i in self.dnn_positions], mean=mean) if self.dnn_positions else None
        if self.dnn is not None:
            self.dnn.checkpoints = list(checkpoints)
        classes = {m.num_pdfs for m in self.members if isinstance(m, GmmTeacher)}
        classes |= {m.config.num_outputs for m in self.members if not isinstance(m, GmmTeacher)}
        if len(classes) != 1:
            raise InputError(f"the teachers disagree on their number of classes: {sorted(classes)}")

    @classmethod
    def load(cls, paths: Sequence[str | os.PathLike], device: str | torch.device = "cpu",
             mean: MeanType = "arithmetic", weights: Sequence[float] | None = None,
             acoustic_scale: float = DEFAULT_ACOUSTIC_SCALE) -> "MixedTeacher":
        """GMM system directories and FrameClassifier checkpoints, in the order given."""
        members, checkpoints = [], []
        for path in paths:
            if is_gmm_system(path):
                members.append(GmmTeacher(path, acoustic_scale, device))
            elif Path(path).is_file():
                model, record = load_member(path, device)
                members.append(model)
                checkpoints.append(record)
            else:
                raise InputError(f"{path}: neither a teacher checkpoint nor a GMM system directory (with final.mdl)")
        teacher = cls(members, mean, weights, checkpoints)
        log.info("mixed teacher: %d GMM + %d DNN members, %s mean%s", len(teacher.gmm_positions),
                 len(teacher.dnn_positions), mean, f" weighted {teacher.weights}" if teacher.weights else "")
        return teacher

    @property
    def num_members(self) -> int:
        """Members, GMMs included."""
        return len(self.members)

    @property
    def context(self) -> tuple[int, int]:
        """(left, right) frames of the DNN members' windows; (0, 0) for GMMs alone (they splice their own)."""
        return self.dnn.context if self.dnn is not None else (0, 0)

    def attach(self, frame_bank: Any, cuts: Iterable | Mapping[str, np.ndarray], source: str = "the GMM cuts") -> None:
        """Give every GMM member the features of `frame_bank`'s frames (see `GmmTeacher.attach`)."""
        if isinstance(cuts, Iterable) and not isinstance(cuts, Mapping):
            cuts = list(cuts)  # read once per GMM member otherwise
        for i in self.gmm_positions:
            self.members[i].attach(frame_bank, cuts, source)

    def to(self, device: str | torch.device) -> "MixedTeacher":
        """Move every member to `device`."""
        for i in self.gmm_positions:
            self.members[i].to(device)
        if self.dnn is not None:
            self.dnn.to(device)
        return self

    def eval(self) -> "MixedTeacher":
        """Members in eval mode (GMMs have none)."""
        if self.dnn is not None:
            self.dnn.eval()
        return self

    @torch.no_grad()
    def member_logits(self, x: Tensor, frame_idx: Tensor | None = None) -> Tensor:
        """(M, B, C) logits of every member in order: DNNs from windows `x`, GMMs from bank frames `frame_idx`."""
        if self.gmm_positions and frame_idx is None:
            raise InputError("a teacher with GMM members needs the frames' bank indices")
        out: list[Tensor | None] = [None] * self.num_members
        if self.dnn is not None:
            for i, z in zip(self.dnn_positions, self.dnn.member_logits(x).float()):
                out[i] = z
        for i in self.gmm_positions:
            out[i] = self.members[i].logits(frame_idx).to(x.device)
        return torch.stack(out)  # type: ignore[arg-type]

    @torch.no_grad()
    def soft_targets(self, x: Tensor, frame_idx: Tensor, temperature: float = 1.0) -> Tensor:
        """The mixture's distribution (B, C) at `temperature` for windows `x` of bank frames `frame_idx`."""
        return average_posteriors(self.member_logits(x, frame_idx), temperature, self.mean, weights=self.weights)

    def manifest_record(self) -> dict[str, Any]:
        """What a soft-target store's manifest keeps of this teacher (a changed GMM or scale is a mismatch)."""
        record: dict[str, Any] = {"mean": self.mean, "num_members": self.num_members}
        if self.weights is not None:
            record["weights"] = list(self.weights)
        if self.dnn is not None:
            record["checkpoints"] = list(self.dnn.checkpoints) if self.dnn.checkpoints else []
            if not self.dnn.checkpoints:
                record["weights_sha256"] = self.dnn.weights_sha256()
        record["gmm_teachers"] = [self.members[i].record | {"position": i} for i in self.gmm_positions]
        return record
