"""Triphone decision-tree state tying, built here because kaldi_hmm_gmm has no BuildTree.

1. `accumulate_tree_stats`: single-Gaussian statistics per (left, phone, right, pdf-class) from an
   alignment (Kaldi's acc-tree-stats).
2. `phone_questions`: phone sets to ask about, from bottom-up clustering of the phones' Gaussians
   (Kaldi's cluster-phones; every cluster of the hierarchy is a question).
3. `build_tree`: one root per (central phone, pdf-class); leaves are split greedily, always the split
   with the largest likelihood gain over all leaves, until `num_leaves` (Kaldi's build-tree
   without the final leaf merging).
4. `DecisionTree.to_context_dependency`: the tree as Kaldi's binary EventMap, which
   `ContextDependency` reads (keys: 0 left, 1 central, 2 right phone, -1 pdf-class; phone 0 is the
   utterance boundary, as in Kaldi's C transducer).
"""

from __future__ import annotations

import heapq
import logging
import struct
from dataclasses import dataclass, field

import kaldi_hmm_gmm as khg
import numpy as np

from asr_kd.gmm.model_io import tree_from_bytes
from asr_kd.gmm.system import TransitionArrays
from asr_kd.utils.errors import InputError

log = logging.getLogger(__name__)

LEFT, CENTER, RIGHT, PDF_CLASS = 0, 1, 2, -1
_LOG_2PI = float(np.log(2 * np.pi))


@dataclass
class TreeStats:
    """Gaussian statistics per context: `context` (K, 4) = left, phone, right, pdf-class."""

    context: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    sumsq: np.ndarray

    @property
    def dim(self) -> int:
        return self.sum.shape[1]


def phone_instances(tids: np.ndarray, arrays: TransitionArrays) -> np.ndarray:
    """Index of the phone instance each frame belongs to (0, 0, 0, 1, 1, ...).

    A new instance starts where the phone changes or the HMM re-enters state 0; every Kaldi
    topology enters state 0 only at the start of a phone, so repeated phones are split correctly.
    """
    phone = arrays.phone[tids]
    state = arrays.hmm_state[tids]
    start = np.ones(len(tids), dtype=bool)
    start[1:] = (phone[1:] != phone[:-1]) | ((state[1:] == 0) & (state[:-1] != 0))
    return np.cumsum(start) - 1


def frame_contexts(tids: np.ndarray, arrays: TransitionArrays) -> np.ndarray:
    """(frames, 4) left phone, phone, right phone, pdf-class of one utterance's alignment."""
    inst = phone_instances(tids, arrays)
    phone = arrays.phone[tids]
    starts = np.flatnonzero(np.diff(inst, prepend=-1))
    inst_phone = phone[starts]
    left = np.concatenate([[0], inst_phone[:-1]])
    right = np.concatenate([inst_phone[1:], [0]])
    return np.stack([left[inst], phone, right[inst], arrays.pdf_class[tids]], axis=1)


def accumulate_tree_stats(feats: dict[str, np.ndarray], alignments: dict[str, np.ndarray],
                          arrays: TransitionArrays) -> TreeStats:
    """Sum, sum of squares and count of the frames of every seen (left, phone, right, pdf-class)."""
    ids = sorted(alignments)
    ctx = np.concatenate([frame_contexts(alignments[i], arrays) for i in ids])
    x = np.concatenate([feats[i] for i in ids]).astype(np.float64)
    keys, inverse = np.unique(ctx, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order], prepend=-1))
    return TreeStats(keys.astype(np.int32), np.bincount(inverse).astype(np.float64),
                     np.add.reduceat(x[order], bounds, axis=0), np.add.reduceat((x * x)[order], bounds, axis=0))


def gauss_objf(count: np.ndarray, sums: np.ndarray, sumsq: np.ndarray, var_floor: float = 0.01) -> np.ndarray:
    """Log-likelihood of the data under its own ML Gaussian (Kaldi's GaussClusterable::Objf), batched."""
    count = np.asarray(count, dtype=np.float64)
    safe = np.maximum(count, 1e-10)[..., None]
    mean = sums / safe
    var = np.maximum(sumsq / safe - mean * mean, var_floor)
    dim = sums.shape[-1]
    objf = -0.5 * count * (np.log(var).sum(axis=-1) + dim * (1.0 + _LOG_2PI))
    return np.where(count > 0, objf, 0.0)


def phone_questions(stats: TreeStats, phones: list[int], silence: list[int],
                    extra: list[list[int]] | None = None) -> list[frozenset[int]]:
    """Phone sets from agglomerative clustering of per-phone Gaussians (each merge is a question).

    The context value 0 (utterance boundary) is asked about together with the silence phones,
    and alone; the silence and non-silence sets and `extra` (Kaldi's extra_questions) are too.
    """
    clusters: list[tuple[frozenset[int], float, np.ndarray, np.ndarray]] = []
    for p in phones:
        rows = stats.context[:, CENTER] == p
        clusters.append((frozenset([p]), stats.count[rows].sum(), stats.sum[rows].sum(0), stats.sumsq[rows].sum(0)))
    seen = [c for c in clusters if c[1] > 0]
    questions: set[frozenset[int]] = set()
    while len(seen) > 1:
        best, pair = None, None
        for i in range(len(seen)):
            for j in range(i + 1, len(seen)):
                a, b = seen[i], seen[j]
                loss = (gauss_objf(a[1], a[2], a[3]) + gauss_objf(b[1], b[2], b[3])
                        - gauss_objf(a[1] + b[1], a[2] + b[2], a[3] + b[3]))
                if best is None or loss < best:
                    best, pair = loss, (i, j)
        i, j = pair
        a, b = seen[i], seen[j]
        merged = (a[0] | b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])
        seen = [c for k, c in enumerate(seen) if k not in (i, j)] + [merged]
        if len(seen) > 1:
            questions.add(merged[0])
    sil = set(silence)
    boundary_questions = set()
    for q in questions:
        boundary_questions.add(q | {0} if q & sil else q)
    boundary_questions.add(frozenset({0}))
    boundary_questions.add(frozenset(sil | {0}))
    boundary_questions.add(frozenset(set(phones) - sil))
    for q in extra or []:
        boundary_questions.add(frozenset(q) | ({0} if set(q) & sil else set()))
    for p in phones:  # single phones, as Kaldi's leaves of the phone-cluster tree are questions too
        boundary_questions.add(frozenset({p}))
    return sorted(boundary_questions, key=lambda q: (len(q), sorted(q)))


@dataclass
class _Node:
    rows: np.ndarray  # indices into TreeStats rows reaching this node
    keys: tuple[int, ...] = (LEFT, RIGHT)  # context positions this node's root may ask about
    key: int | None = None
    yes_set: frozenset[int] = frozenset()
    yes: "_Node | None" = None
    no: "_Node | None" = None
    leaf_id: int = -1


@dataclass
class DecisionTree:
    """Per (root, pdf-class) binary trees over context questions; a root is a set of central phones."""

    roots: dict[tuple[int, int], _Node]
    num_pdf_classes: dict[int, int]
    phone_root: dict[int, int]
    leaves: list[_Node] = field(default_factory=list)

    @property
    def num_leaves(self) -> int:
        return len(self.leaves)

    def _event_map_bytes(self, node: _Node) -> bytes:
        if node.key is None:
            return _token("CE") + _int32(node.leaf_id)
        yes = sorted(node.yes_set)
        return (_token("SE") + _int32(node.key) + b"\x04" + struct.pack(f"<i{len(yes)}i", len(yes), *yes)
                + _token("{") + self._event_map_bytes(node.yes) + self._event_map_bytes(node.no) + _token("}"))

    def kaldi_bytes(self) -> bytes:
        """Kaldi binary ContextDependency (N=3, P=1) without the "\\0B" header."""
        max_phone = max(self.num_pdf_classes)
        table = []
        for phone in range(max_phone + 1):
            if phone not in self.num_pdf_classes:
                table.append(_token("NULL"))
                continue
            n = self.num_pdf_classes[phone]
            # Phones sharing a root get identical copies of its subtree (same leaf ids).
            sub = [self._event_map_bytes(self.roots[(self.phone_root[phone], c)]) for c in range(n)]
            table.append(_token("TE") + _int32(PDF_CLASS) + _uint32(n) + _token("(") + b"".join(sub) + _token(")"))
        event_map = _token("TE") + _int32(CENTER) + _uint32(len(table)) + _token("(") + b"".join(table) + _token(")")
        return (_token("ContextDependency") + _int32(3) + _int32(1) + _token("ToPdf") + event_map
                + _token("EndContextDependency"))

    def to_context_dependency(self) -> khg.ContextDependency:
        """The tree as the bindings' ContextDependency (what TransitionModel and graphs need)."""
        ctx = tree_from_bytes(self.kaldi_bytes())
        if ctx.num_pdfs != self.num_leaves:
            raise RuntimeError(f"tree serialisation error: {ctx.num_pdfs} pdfs read back, {self.num_leaves} leaves")
        return ctx


def _token(s: str) -> bytes:
    return s.encode() + b" "


def _int32(v: int) -> bytes:
    return b"\x04" + struct.pack("<i", v)


def _uint32(v: int) -> bytes:
    return b"\xfc" + struct.pack("<I", v)  # Kaldi writes -sizeof(T) for unsigned types


class _Splitter:
    """Best question for a node: all questions scored at once with matrix products."""

    def __init__(self, stats: TreeStats, questions: list[frozenset[int]], min_count: float):
        self.stats = stats
        self.min_count = min_count
        self.num_values = int(max(stats.context[:, :3].max(), max(max(q) for q in questions))) + 1
        self.questions = questions
        self.masks = np.zeros((len(questions), self.num_values))
        for i, q in enumerate(questions):
            self.masks[i, sorted(q)] = 1.0

    def best_split(self, node: _Node) -> tuple[float, int, int]:
        """(gain, key, question index) of the best split of `node`, gain -inf if none is allowed."""
        s = self.stats
        rows = node.rows
        cnt, sm, sq = s.count[rows], s.sum[rows], s.sumsq[rows]
        total = gauss_objf(cnt.sum(), sm.sum(0), sq.sum(0))
        best = (-np.inf, -1, -1)
        for key in node.keys:
            values = s.context[rows, key]
            v_cnt = np.bincount(values, weights=cnt, minlength=self.num_values)
            v_sum = np.zeros((self.num_values, s.dim))
            v_sq = np.zeros((self.num_values, s.dim))
            np.add.at(v_sum, values, sm)
            np.add.at(v_sq, values, sq)
            y_cnt, y_sum, y_sq = self.masks @ v_cnt, self.masks @ v_sum, self.masks @ v_sq
            n_cnt, n_sum, n_sq = cnt.sum() - y_cnt, sm.sum(0) - y_sum, sq.sum(0) - y_sq
            gain = gauss_objf(y_cnt, y_sum, y_sq) + gauss_objf(n_cnt, n_sum, n_sq) - total
            gain[(y_cnt < self.min_count) | (n_cnt < self.min_count)] = -np.inf
            q = int(np.argmax(gain))
            if gain[q] > best[0]:
                best = (float(gain[q]), key, q)
        return best


def build_tree(stats: TreeStats, num_pdf_classes: dict[int, int], questions: list[frozenset[int]],
               num_leaves: int, root_sets: list[list[int]] | None = None, min_count: float = 100.0,
               min_gain: float = 0.0) -> DecisionTree:
    """Greedy likelihood splitting until `num_leaves` leaves (or no split gains `min_gain`).

    `root_sets` (Kaldi's roots.txt) groups central phones that share a root, whose tree may then
    also ask about the central phone; by default every phone is its own root.
    """
    root_sets = [list(r) for r in (root_sets or [])]
    covered = {p for r in root_sets for p in r}
    root_sets += [[p] for p in sorted(num_pdf_classes) if p not in covered]
    phone_root = {}
    for i, members in enumerate(root_sets):
        for p in members:
            if p not in num_pdf_classes:
                raise InputError(f"roots: phone {p} has no HMM topology")
            if p in phone_root:
                raise InputError(f"roots: phone {p} is in more than one root")
            if num_pdf_classes[p] != num_pdf_classes[members[0]]:
                raise InputError(f"roots: phones {members[0]} and {p} share a root but not their number of pdf-classes")
            phone_root[p] = i
    roots = {}
    for i, members in enumerate(root_sets):
        keys = (LEFT, RIGHT, CENTER) if len(members) > 1 else (LEFT, RIGHT)
        in_root = np.isin(stats.context[:, CENTER], members)
        for c in range(num_pdf_classes[members[0]]):
            roots[(i, c)] = _Node(np.flatnonzero(in_root & (stats.context[:, 3] == c)), keys)
    if num_leaves < len(roots):
        raise InputError(f"--num-leaves {num_leaves} is below the {len(roots)} (phone, HMM state) roots "
                         "the tree needs at least")
    splitter = _Splitter(stats, questions, min_count)
    heap: list[tuple[float, int, _Node, int, int]] = []
    counter = 0

    def push(node: _Node) -> None:
        nonlocal counter
        if len(node.rows):
            gain, key, q = splitter.best_split(node)
            if gain > min_gain:
                heapq.heappush(heap, (-gain, counter, node, key, q))
                counter += 1

    for node in roots.values():
        push(node)
    num = len(roots)
    tot_gain = 0.0
    while num < num_leaves and heap:
        neg_gain, _, node, key, q = heapq.heappop(heap)
        values = stats.context[node.rows, key]
        is_yes = np.isin(values, sorted(questions[q]))
        node.key, node.yes_set = key, questions[q]
        node.yes, node.no = _Node(node.rows[is_yes], node.keys), _Node(node.rows[~is_yes], node.keys)
        node.rows = node.rows[:0]
        push(node.yes)
        push(node.no)
        num += 1
        tot_gain += -neg_gain
    tree = DecisionTree(roots, dict(num_pdf_classes), phone_root)
    for key in sorted(roots):
        _number_leaves(roots[key], tree.leaves)
    frames = stats.count.sum()
    log.info("tree: %d leaves from %d roots, likelihood gain %.3f per frame over %d frames", tree.num_leaves,
             len(roots), tot_gain / max(frames, 1), int(frames))
    return tree


def _number_leaves(node: _Node, leaves: list[_Node]) -> None:
    if node.key is None:
        node.leaf_id = len(leaves)
        leaves.append(node)
    else:
        _number_leaves(node.yes, leaves)
        _number_leaves(node.no, leaves)


def leaf_stats(tree: DecisionTree, stats: TreeStats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled (count, sum, sumsq) of every leaf, for initialising one Gaussian per leaf."""
    n = tree.num_leaves
    count, sums, sumsq = np.zeros(n), np.zeros((n, stats.dim)), np.zeros((n, stats.dim))
    for leaf in tree.leaves:
        r = leaf.rows
        count[leaf.leaf_id] = stats.count[r].sum()
        sums[leaf.leaf_id] = stats.sum[r].sum(0)
        sumsq[leaf.leaf_id] = stats.sumsq[r].sum(0)
    return count, sums, sumsq
