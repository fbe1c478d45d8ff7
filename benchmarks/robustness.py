"""Robustness of distillation: every student route on every development set, at several labeled-set sizes.

One run = one data set x one or more labeled-set sizes (x one or more seeds). Results are MERGED into
``benchmarks/results/robustness_<set>.json`` (rows keyed by (n_labeled, row, seed); a rerun replaces its rows and
keeps the others), so runs of many hours add up across sessions.

Protocol, per (set, n_labeled, seed)
------------------------------------
- Data: ``../shared/data/<set>/`` (or ``$KDTEXT_DATA`` / ``--data``). From ``train.csv`` a stratified labeled
  sample of ``n_labeled`` texts (every class gets at least 2 texts where the class and ``n_labeled`` allow it, the
  rest in proportion to class sizes) and, disjoint from it, ``--n-unlabeled`` texts (default 4000; a plain random
  draw, labels hidden) as the transfer set. Both come from one seeded permutation of the train split, so a larger
  ``--n-unlabeled`` is a superset of a smaller one. Test: ``test.csv``, capped at ``--max-test`` (default 2000) by
  a stratified sample with a fixed seed (0), the same for every ``--seed``.
- Metric: accuracy (sst2, imdb, banking77), macro-F1 (goemotions_ekman), F1 of class 1 (ru_toxic, germeval2018).
  ``stderr`` is one bootstrap standard error of the test metric (200 resamples of the test set, seed 0, the same
  resamples for every row); ``gain_stderr`` is the paired bootstrap standard error of the gain over the twin
  (same resamples, both rows' test predictions), the number to judge "within noise" by.
- Teacher: ``TransformerClassifier`` fine-tuned on the labeled texts: all-MiniLM-L6-v2 (kdtext's default) for
  the English sets, the multilingual-e5-small folder of ``--e5`` / ``$KDTEXT_E5`` (fallback
  ``benchmarks/.cache/multilingual-e5-small``) for ru_toxic and germeval2018; without it those sets are skipped
  with a message (exit status 0), unless only teacher-free rows (``lr_twin``, ``bilstm_twin``) were asked for. Settings: ``--teacher-params JSON`` (default ``{}`` = kdtext's
  defaults; ``random_state`` defaults to the seed). Its logits on the labeled + transfer + test texts are cached
  in ``--cache`` (default ``benchmarks/.cache/``) as ``robustness-teacher-<set>-n<N>-s<seed>-<hash>.npz``, keyed by
  (set, n_labeled, seed, teacher model, teacher params), so student rows rerun without it. A teacher fit is
  checkpointed in the cache every epoch and resumes after a kill. The fitted teacher is saved beside its cache
  (``...-model``); a later run that needs logits of texts the cache lacks (another ``--max-test`` or a larger
  ``--n-unlabeled``) has that teacher label just those texts instead of fitting it again.
- Students never run the teacher: they get a ``CachedTeacher`` (a fitted scikit-learn classifier whose
  ``predict_logits`` looks texts up in the cached logits) as DistillationClassifier's teacher.

Rows (``--rows`` a comma-separated subset; default all)
-------------------------------------------------------
- ``teacher``: test metric, fit seconds, accuracy on its own training texts (the labeled set, its validation
  tenth included), mean top-class probability on the transfer texts.
- ``lr_twin``: TF-IDF (``make_union`` of word 1-2 grams and char_wb 2-5 grams, sublinear_tf, min_df=2,
  lower-cased) + LogisticRegressionCV (Cs 0.1..100, 5-fold CV on the labeled texts, stratified unless a class has
  fewer than 5 texts, scored with the set's metric, max_iter=2000, class_weight=None), gold labels only: the
  TUNED twin; its C is used below.
- ``lr_distilled_hard_weighted``: DistillationClassifier(teacher, TF-IDF + LogisticRegression(C=twin's C),
  target="hard", alpha=0.5) on labeled + transfer texts, y = gold or -1: kdtext's route (teacher labels weighted
  by the teacher's confidence; alpha=0.5 adds the gold rows). Since issue 9 the route scales the weights to mean 1 per text
  (``lr_distilled_hard_raw`` is the earlier rule).
- ``lr_distilled_hard_unweighted``: the same student fitted with plain scikit-learn on the teacher's argmax label
  of every distinct transfer text, gold where the text has one, no sample weights (the candidate fix).
- ``lr_distilled_hard_mean1``: the same, teacher-labeled rows weighted by the teacher's confidence normalised to
  mean 1 over those rows, gold rows weight 1; ``lr_distilled_hard_raw``: the same with the raw confidences as
  weights (the rule of kdtext's "hard" route before issue 9; the route now scales all weights to mean 1 per text).
- ``lr_distilled_proba``: DistillationClassifier(..., target="proba", temperature=2, alpha=0.5).
- ``lr_distilled_default``: DistillationClassifier(teacher, TF-IDF + LogisticRegression(C=twin's C)) with every
  distillation parameter at kdtext's default (the row a new user gets); ``lr_cv``: DistillationClassifierCV on the
  same student with its default grid, the twin among the candidates, cv=3, scored with the set's metric.
- ``ridge_distilled_logits``: DistillationClassifier(teacher, TF-IDF + RidgeCV(alphas 0.1..10)) (route
  "logits"; RidgeCV's efficient leave-one-out up to 10,000 transfer texts, 5-fold CV above, to bound memory).
- ``bilstm_twin``: BiLSTMClassifier() defaults on gold labels (random_state=seed);
  ``bilstm_twin_balanced_accuracy`` / ``bilstm_twin_f1_macro``: the same with ``scoring=`` for early stopping.
- ``bilstm_distilled_mse``: DistillationClassifier(teacher, BiLSTMClassifier(random_state=seed), loss="mse",
  alpha=0.0); ``bilstm_distilled_kl``: loss="kl", alpha=0.5, temperature=2.0; ``bilstm_distilled_mse_a05`` and
  ``bilstm_distilled_kl_a0``: the other two corners of loss x alpha; ``bilstm_distilled_default``:
  kdtext's distillation defaults before 2026-12-03 (since issue 9: kl, T=2, alpha=0, i.e. the settings of
  ``bilstm_distilled_kl_a0``; the student: see ``bilstm_distilled_pretrained`` below; ``augment=0``, the default until
  ``bilstm_distilled_aug_kl`` made ``augment="auto"`` the default); ``bilstm_distilled_aug``: the mse row with ``augment=4`` (Tang et al.'s masking,
  swaps and n-gram sampling; the real teacher, saved beside its logit cache by ``save_pretrained``, labels the new
  texts, cached in ``robustness-labels-*``).

- ``bilstm_pretrained_twin`` / ``bilstm_distilled_pretrained``: ``BiLSTMClassifier(pretrained=...)`` (the
  tokenizer and Model2Vec vectors of the teacher's starting checkpoint, MiniLM or the e5 folder) on gold labels /
  distilled with kdtext's defaults; the gain of the distilled row is over ``bilstm_twin`` (the default BiLSTM).
  ``bilstm_distilled_pretrained_d256``: the same with ``embedding_dim=256``; ``bilstm_distilled_pretrained_mse``:
  with ``loss="mse"``. Since ``BiLSTMClassifier(pretrained="auto")`` became the default, ``bilstm_distilled_default``
  is the ``bilstm_distilled_pretrained`` student (what "auto" resolves to with a TransformerClassifier teacher);
  ``bilstm_twin`` stays the BiLSTM alone, whose "auto" learns its own vocabulary.

- ``static_twin``: StaticEmbeddingClassifier (defaults, or ``--static-params JSON``) on gold labels, its
  vectors made from the teacher's starting checkpoint (MiniLM or the e5 folder); ``static_distilled_base``:
  the same student distilled with kdtext's defaults; ``static_distilled_teacher``: with the vectors made from the
  fine-tuned teacher's folder (saved beside its logit cache) instead. (A ``static_distilled_bigrams`` row, with
  fastText's hashed bigrams in the bag, ran once on sst2 on 2026-12-02: 0.740 against 0.753 for the base row; the
  option was not kept.)
- ``bilstm_distilled_aug_kl``: ``DistillationClassifier(teacher, BiLSTMClassifier(), augment=4)``, what every
  default gives on these transfer sets since ``augment="auto"`` became the default (the summary's "bilstm with
  defaults"); every other parameter at kdtext's default (KL at T=2, alpha 0; the student's "auto" vocabulary), the new texts labeled by
  the real teacher as for ``bilstm_distilled_aug``; ``bilstm_distilled_aug_kl_bacc``: the same with
  ``BiLSTMClassifier(scoring="balanced_accuracy")``; ``lr_distilled_aug``: ``lr_distilled_default`` with
  ``augment=4``.
- ``sgd_memory``: a student that can stream, ``HashingVectorizer(ngram_range=(1, 2), n_features=2**20,
  alternate_sign=False)`` + ``SGDClassifier(loss="log_loss")``, distilled with kdtext's defaults in memory (SGD's
  own ``fit``); ``sgd_stream_e1`` / ``_e3`` / ``_e5`` / ``_e10``: the same distilled from the transfer set written
  to a Parquet file and streamed (``TextFiles``, chunks of 2,048 texts, ``partial_fit``) with ``stream_epochs``
  1 / 3 / 5 / 10.

Every student row records ``metric``, ``stderr``, ``seconds`` (fit wall time) and ``fidelity`` (agreement with the
teacher's argmax on the distinct labeled + transfer texts; for the twins too, as a reference); distilled rows also
``gain_over_twin`` (LR and Ridge rows vs ``lr_twin``, BiLSTM rows vs ``bilstm_twin``, same n_labeled, seed and
test sample) with ``gain_stderr``, and ``share_of_teacher`` (metric / teacher's metric). A row that fails is
recorded with its ``error`` instead of losing the run; the JSON is rewritten (atomically, under a lock) after
every row.

Commands
--------
    python benchmarks/robustness.py --set banking77 --n-labeled 250,1000,4000          # one set, three sizes
    python benchmarks/robustness.py --set sst2 --n-labeled 1000 --seed 0,1,2 --rows lr_twin,lr_distilled_hard_unweighted
    python benchmarks/robustness.py --set ru_toxic --n-labeled 1000 --e5 /tmp/e5 --teacher-params '{"freeze_embeddings": true}'
    python benchmarks/robustness.py --table            # markdown table per set from every robustness_*.json
    python benchmarks/robustness.py --plot             # benchmarks/results/robustness.png (needs matplotlib)

Build the e5 folder once with ``python ../shared/tools/build_multilingual_e5.py /tmp/e5`` (see its header).
Cheap end-to-end check (a 1-epoch teacher on 250 texts, a few minutes; writes nothing into the repo):

    python benchmarks/robustness.py --set sst2 --n-labeled 250 --n-unlabeled 1000 --max-test 500 \\
        --rows lr_twin,lr_distilled_hard_weighted,lr_distilled_hard_unweighted,lr_distilled_hard_mean1,lr_distilled_proba,ridge_distilled_logits \\
        --teacher-params '{"epochs": 1}' --cache /tmp/robust_cache --out-dir /tmp/robust_out
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import datetime as _dt
import gc
import hashlib
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from _common import BENCH_DIR, RESULTS_DIR, data_dir, machine_info, print_table

# ----------------------------------------------------------------------------- sets, rows
SETS: dict[str, dict[str, str]] = {
    "sst2": {"metric": "accuracy", "teacher": "minilm"},
    "imdb": {"metric": "accuracy", "teacher": "minilm"},
    "banking77": {"metric": "accuracy", "teacher": "minilm"},
    "goemotions_ekman": {"metric": "macro_f1", "teacher": "minilm"},
    "ru_toxic": {"metric": "f1_pos", "teacher": "e5"},
    "germeval2018": {"metric": "f1_pos", "teacher": "e5"},
}
TEACHER_MODELS = {"minilm": "all-MiniLM-L6-v2", "e5": "multilingual-e5-small"}
ROWS = [
    "teacher",
    "lr_twin",
    "lr_distilled_hard_weighted",
    "lr_distilled_hard_unweighted",
    "lr_distilled_hard_mean1",
    "lr_distilled_hard_raw",
    "lr_distilled_proba",
    "lr_distilled_default",
    "lr_cv",
    "ridge_distilled_logits",
    "bilstm_twin",
    "bilstm_twin_balanced_accuracy",
    "bilstm_twin_f1_macro",
    "bilstm_distilled_mse",
    "bilstm_distilled_kl",
    "bilstm_distilled_mse_a05",
    "bilstm_distilled_kl_a0",
    "bilstm_distilled_default",
    "bilstm_distilled_aug",
    "bilstm_pretrained_twin",
    "bilstm_distilled_pretrained",
    "bilstm_distilled_pretrained_d256",
    "bilstm_distilled_pretrained_mse",
    "static_twin",
    "static_distilled_base",
    "static_distilled_teacher",
    "bilstm_distilled_aug_kl",
    "bilstm_distilled_aug_kl_bacc",
    "lr_distilled_aug",
    "sgd_memory",
    "sgd_stream_e1",
    "sgd_stream_e3",
    "sgd_stream_e5",
    "sgd_stream_e10",
]
TWIN_OF = {
    "lr_distilled_hard_weighted": "lr_twin",
    "lr_distilled_hard_unweighted": "lr_twin",
    "lr_distilled_hard_mean1": "lr_twin",
    "lr_distilled_hard_raw": "lr_twin",
    "lr_distilled_proba": "lr_twin",
    "lr_distilled_default": "lr_twin",
    "lr_cv": "lr_twin",
    "ridge_distilled_logits": "lr_twin",
    "bilstm_distilled_mse": "bilstm_twin",
    "bilstm_distilled_kl": "bilstm_twin",
    "bilstm_distilled_mse_a05": "bilstm_twin",
    "bilstm_distilled_kl_a0": "bilstm_twin",
    "bilstm_distilled_default": "bilstm_twin",
    "bilstm_distilled_aug": "bilstm_twin",
    "bilstm_distilled_pretrained": "bilstm_twin",
    "bilstm_distilled_pretrained_d256": "bilstm_twin",
    "bilstm_distilled_pretrained_mse": "bilstm_twin",
    "static_distilled_base": "static_twin",
    "static_distilled_teacher": "static_twin",
    "bilstm_distilled_aug_kl": "bilstm_twin",
    "bilstm_distilled_aug_kl_bacc": "bilstm_twin",
    "lr_distilled_aug": "lr_twin",
    "sgd_memory": "lr_twin",
    "sgd_stream_e1": "lr_twin",
    "sgd_stream_e3": "lr_twin",
    "sgd_stream_e5": "lr_twin",
    "sgd_stream_e10": "lr_twin",
}
NEEDS_TEACHER = {"teacher", *TWIN_OF}
# rows that need the teacher's starting checkpoint (MiniLM or the e5 folder) even without a teacher
NEEDS_BASE_MODEL = {"static_twin", "static_distilled_base", "bilstm_pretrained_twin", "bilstm_distilled_pretrained",
                    "bilstm_distilled_pretrained_d256", "bilstm_distilled_pretrained_mse", "bilstm_distilled_default"}
CS = [0.1, 0.3, 1, 3, 10, 30, 100]
RIDGE_ALPHAS = [0.1, 0.3, 1, 3, 10]
#: the rows in the summary plot: what a user gets (defaults, the CV variant, Ridge on logits, augmentation)
PLOT_ROWS = ["lr_distilled_default", "lr_cv", "ridge_distilled_logits", "bilstm_distilled_default",
             "bilstm_distilled_mse", "bilstm_distilled_aug", "bilstm_distilled_aug_kl", "bilstm_distilled_pretrained",
             "static_distilled_base", "static_distilled_teacher"]
AUGMENT = 4  # Tang et al. variants per transfer text in bilstm_distilled_aug, bilstm_distilled_aug_kl, lr_distilled_aug
RIDGE_GCV_MAX = 10_000  # RidgeCV's leave-one-out eigendecomposes an n x n Gram matrix: bound n
N_BOOT = 200
TEST_SEED = 0
# teacher parameters that do not change its outputs: left out of the cache key
KEY_EXCLUDED = {"verbose", "checkpoint_dir", "predict_batch_size", "device"}
DEFAULT_CACHE = BENCH_DIR / ".cache"
DEFAULT_E5 = DEFAULT_CACHE / "multilingual-e5-small"


def log(msg: str) -> None:
    """A progress line with a timestamp, on stderr."""
    print(f"[{_dt.datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- metrics
def metric_value(name: str, y: np.ndarray, p: np.ndarray, n_classes: int) -> float:
    """The set's test metric (scikit-learn), labels as class indices."""
    from sklearn.metrics import accuracy_score, f1_score

    if name == "accuracy":
        return float(accuracy_score(y, p))
    if name == "macro_f1":
        return float(f1_score(y, p, average="macro", labels=np.arange(n_classes), zero_division=0))
    return float(f1_score(y, p, pos_label=1, zero_division=0))


def _fast_metric(name: str, y: np.ndarray, p: np.ndarray, n_classes: int) -> np.ndarray:
    """The metric for many resamples at once: y, p of shape (n_resamples, n). Equals metric_value row by row."""
    if name == "accuracy":
        return (y == p).mean(axis=1)
    classes = [1] if name == "f1_pos" else range(n_classes)
    f1s = []
    for c in classes:
        tp = ((y == c) & (p == c)).sum(axis=1)
        denom = (y == c).sum(axis=1) + (p == c).sum(axis=1)
        f1s.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
    return np.mean(f1s, axis=0)


def bootstrap_indices(n: int) -> np.ndarray:
    return np.random.default_rng(TEST_SEED).integers(0, n, size=(N_BOOT, n))


def bootstrap_se(name: str, y: np.ndarray, p: np.ndarray, n_classes: int, other: np.ndarray | None = None) -> float:
    """Bootstrap standard error of the metric of ``p`` (or, with ``other``, of metric(p) - metric(other))."""
    idx = bootstrap_indices(len(y))
    vals = _fast_metric(name, y[idx], p[idx], n_classes)
    if other is not None:
        vals = vals - _fast_metric(name, y[idx], other[idx], n_classes)
    return float(np.std(vals, ddof=1))


def encode_pred(p: np.ndarray) -> str:
    dtype = np.uint8 if p.max(initial=0) < 256 else np.uint16
    return base64.b64encode(np.asarray(p, dtype=dtype).tobytes()).decode("ascii") + ("" if dtype == np.uint8 else ":u16")


def decode_pred(s: str) -> np.ndarray:
    dtype = np.uint8
    if s.endswith(":u16"):
        s, dtype = s[:-4], np.uint16
    return np.frombuffer(base64.b64decode(s), dtype=dtype).astype(np.int64)


# ----------------------------------------------------------------------------- data
def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([int(r["label"]) for r in rows], dtype=np.int64)


def stratified_quota(counts: np.ndarray, n: int) -> np.ndarray:
    """Texts to draw per class: at least 2 (or 1) per class where possible, the rest in proportion."""
    if n > counts.sum():
        raise ValueError(f"n_labeled={n} is more than the {counts.sum()} train texts")
    base = np.minimum(counts, 2)
    if base.sum() > n:
        base = np.minimum(counts, 1)
    if base.sum() > n:
        base = np.zeros_like(counts)
    rest = n - int(base.sum())
    avail = counts - base
    share = avail / max(avail.sum(), 1) * rest
    extra = np.minimum(np.floor(share).astype(np.int64), avail)
    for c in np.argsort(-(share - extra), kind="stable"):  # largest remainders first
        if extra.sum() >= rest:
            break
        if extra[c] < avail[c]:
            extra[c] += 1
    while extra.sum() < rest:  # rounding left texts over and some classes are full: any class with room
        c = int(np.flatnonzero(extra < avail)[0])
        extra[c] += 1
    return base + extra


class Split:
    """The labeled sample, transfer texts and test sample of one (set, n_labeled, seed)."""

    def __init__(self, root: Path, set_name: str, n_labeled: int, n_unlabeled: int, seed: int, max_test: int):
        X_train, y_train = read_csv(root / set_name / "train.csv")
        X_test, y_test = read_csv(root / set_name / "test.csv")
        self.classes = np.unique(y_train)
        index = {c: i for i, c in enumerate(self.classes.tolist())}
        y_train = np.array([index[c] for c in y_train.tolist()], dtype=np.int64)
        y_test = np.array([index[c] for c in y_test.tolist()], dtype=np.int64)  # a test class unseen in train: KeyError
        self.n_classes = len(self.classes)

        perm = np.random.default_rng(seed).permutation(len(X_train))
        counts = np.bincount(y_train, minlength=self.n_classes)
        quota = stratified_quota(counts, n_labeled)
        taken = np.zeros(self.n_classes, dtype=np.int64)
        lab = []
        for i in perm:  # the first quota[c] texts of class c in the seeded order
            c = y_train[i]
            if taken[c] < quota[c]:
                lab.append(i)
                taken[c] += 1
        lab_set = set(lab)
        unl = [i for i in perm if i not in lab_set][:n_unlabeled]
        if len(unl) < n_unlabeled:
            log(f"note: only {len(unl)} train texts are left for the transfer set (asked for {n_unlabeled})")
        self.X_lab = [X_train[i] for i in lab]
        self.y_lab = y_train[lab]
        self.X_unl = [X_train[i] for i in unl]

        if len(X_test) > max_test:
            from sklearn.model_selection import train_test_split

            ids = np.arange(len(X_test))
            try:
                keep, _ = train_test_split(ids, train_size=max_test, stratify=y_test, random_state=TEST_SEED)
            except ValueError:  # a class with a single test text: plain random sample
                keep = np.random.default_rng(TEST_SEED).choice(ids, size=max_test, replace=False)
            keep = np.sort(keep)
        else:
            keep = np.arange(len(X_test))
        self.X_test = [X_test[i] for i in keep]
        self.y_test = y_test[keep]
        self.labeled_hash = _hash_texts(self.X_lab, self.y_lab)
        self.test_hash = _hash_texts(self.X_test, self.y_test)[:16]

        # the distinct transfer texts in DistillationClassifier's order, gold index (or -1) per text
        position: dict[str, int] = {}
        for t in self.X_lab + self.X_unl:
            position.setdefault(t, len(position))
        self.distinct = list(position)
        self.gold = np.full(len(self.distinct), -1, dtype=np.int64)
        for t, c in zip(self.X_lab, self.y_lab.tolist()):
            self.gold[position[t]] = c

    @property
    def X_all(self) -> list[str]:
        return self.X_lab + self.X_unl

    @property
    def y_all(self) -> np.ndarray:
        return np.concatenate([self.y_lab, np.full(len(self.X_unl), -1, dtype=np.int64)])


def _hash_texts(texts: list[str], labels: np.ndarray) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(text_key(t).encode())
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def text_key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


# ----------------------------------------------------------------------------- teacher
def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class CachedTeacher(ClassifierMixin, BaseEstimator):
    """A stand-in teacher: ``fit(texts, logits)`` stores cached teacher logits, ``predict_logits`` looks them up.

    ``classes`` are the labels the logit columns stand for. Passed to DistillationClassifier as its teacher, so
    the students of this benchmark never run the transformer.
    """

    def __init__(self, classes=None):
        self.classes = classes

    def fit(self, X, logits):
        logits = np.asarray(logits, dtype=np.float32)
        self.table_ = {text_key(t): row for t, row in zip(X, logits)}
        self.classes_ = np.asarray(self.classes)
        return self

    def predict_logits(self, X) -> np.ndarray:
        keys = [text_key(t) for t in X]
        missing = [t for t, k in zip(X, keys) if k not in self.table_]
        if missing:
            raise KeyError(f"{len(missing)} texts are not in the cached teacher logits, e.g. {missing[0][:60]!r}")
        return np.stack([self.table_[k] for k in keys]) if keys else np.empty((0, len(self.classes_)), np.float32)

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self.predict_logits(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_logits(X), axis=1)]

    def __repr__(self) -> str:  # the table would make BaseEstimator's repr huge
        return f"CachedTeacher({len(getattr(self, 'table_', {}))} texts)"


def resolve_e5(arg: str | None) -> str | None:
    for cand in (arg, os.environ.get("KDTEXT_E5"), str(DEFAULT_E5)):
        if cand and (Path(cand).expanduser() / "config.json").is_file():
            return str(Path(cand).expanduser())
    if arg or os.environ.get("KDTEXT_E5"):
        log(f"warning: {arg or os.environ.get('KDTEXT_E5')} holds no config.json (not a model folder)")
    return None


def teacher_cache_key(set_name: str, n_labeled: int, seed: int, model_label: str, params: dict) -> dict:
    return {
        "set": set_name,
        "n_labeled": n_labeled,
        "seed": seed,
        "model": model_label,
        "params": {k: v for k, v in sorted(params.items()) if k not in KEY_EXCLUDED},
    }


def teacher_id(key: dict) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def cache_path(cache: Path, key: dict) -> Path:
    return cache / f"robustness-teacher-{key['set']}-n{key['n_labeled']}-s{key['seed']}-{teacher_id(key)}.npz"


def teacher_folder(path: Path) -> Path:
    """Where the fitted teacher of a logit cache file is saved (``save_pretrained``)."""
    return path.with_name(path.stem + "-model")


def load_teacher_cache(path: Path, key: dict, split: Split) -> tuple[dict, dict] | None:
    """(table text-key -> logits, meta) if the cache file fits this key, labeled sample and texts; else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = data["keys"].tolist()
            logits = np.asarray(data["logits"], dtype=np.float32)
            meta = json.loads(str(data["meta"]))
    except Exception as exc:  # a damaged file: refit
        log(f"teacher cache {path} is unreadable ({type(exc).__name__}: {exc}); fitting the teacher again")
        return None
    if meta.get("key") != key or meta.get("labeled_hash") != split.labeled_hash:
        log(f"teacher cache {path} was made for another key or labeled sample; fitting the teacher again")
        return None
    table = dict(zip(keys, logits))
    texts = list(dict.fromkeys(split.distinct + split.X_test))
    missing = [t for t in texts if text_key(t) not in table]
    if missing and teacher_folder(path).is_dir():
        # the fitted teacher was saved beside the cache: label only the new texts, keep the old ones
        from kdtext import TransformerClassifier

        log(f"teacher cache {path} lacks logits for {len(missing)} texts; labeling them with the saved teacher")
        teacher = TransformerClassifier.from_pretrained(teacher_folder(path), device="cpu")
        new = np.asarray(teacher.predict_logits(missing), dtype=np.float32)
        table.update({text_key(t): row for t, row in zip(missing, new)})
        _write_cache(path, list(table), np.stack(list(table.values())), meta)
        del teacher
        gc.collect()
    elif missing:
        log(f"teacher cache {path} lacks logits for {len(missing)} texts (a larger --n-unlabeled or --max-test?) "
            "and no saved teacher is beside it; fitting the teacher again")
        return None
    return table, meta


def _write_cache(path: Path, keys: list[str], logits: np.ndarray, meta: dict) -> None:
    """Write the logit cache atomically (text keys, float32 logits, JSON meta)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    with open(tmp, "wb") as fh:
        np.savez(fh, keys=np.array(keys), logits=np.asarray(logits, np.float32),
                 meta=np.array(json.dumps(meta, default=str)))
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    os.replace(tmp, path)


def fit_teacher(split: Split, key: dict, model_path: str | None, params: dict, cache: Path) -> tuple[dict, dict]:
    """Fine-tune the teacher on the labeled texts, label every text once, store the logits; (table, meta)."""
    from kdtext import TransformerClassifier

    path = cache_path(cache, key)
    kw = dict(params)
    kw.setdefault("random_state", key["seed"])
    ckpt = cache / (path.stem + "-checkpoint")
    kw.setdefault("checkpoint_dir", str(ckpt))
    model = kw.pop("model", model_path)
    log(f"fitting the teacher ({key['model']}, {kw}) on {len(split.X_lab)} labeled texts")
    t0 = time.perf_counter()
    teacher = TransformerClassifier(model, **kw).fit(split.X_lab, split.classes[split.y_lab])
    fit_s = time.perf_counter() - t0
    texts = list(dict.fromkeys(split.distinct + split.X_test))
    log(f"teacher fitted in {fit_s:.0f} s; labeling {len(texts)} distinct texts")
    t0 = time.perf_counter()
    logits = teacher.predict_logits(texts)
    predict_s = time.perf_counter() - t0
    if not np.array_equal(np.asarray(teacher.classes_), split.classes):
        raise RuntimeError(f"teacher classes {teacher.classes_} differ from the data's {split.classes}")
    meta = {
        "key": key,
        "labeled_hash": split.labeled_hash,
        "fit_seconds": fit_s,
        "predict_seconds": predict_s,
        "n_texts": len(texts),
        "history": getattr(teacher, "history_", None),
        "best_epoch": getattr(teacher, "best_epoch_", None),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    _write_cache(path, [text_key(t) for t in texts], np.asarray(logits, np.float32), meta)
    log(f"teacher logits cached in {path}")
    folder = teacher_folder(path)
    tmp_folder = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp_folder, ignore_errors=True)
    teacher.save_pretrained(tmp_folder)  # for rows that need the real teacher (augmentation labels new texts)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp_folder, folder)
    shutil.rmtree(ckpt, ignore_errors=True)
    del teacher
    gc.collect()
    return {text_key(t): row for t, row in zip(texts, np.asarray(logits, np.float32))}, meta


# ----------------------------------------------------------------------------- students
def tfidf():
    """Word 1-2 grams + char_wb 2-5 grams, sublinear tf, min_df=2, lower-cased: one make_union."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union

    return make_union(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, lowercase=True),
    )


SCORING = {"accuracy": "accuracy", "macro_f1": "f1_macro", "f1_pos": "f1"}


class Context:
    """What the row functions share: the split, the cached teacher, the twin's C."""

    def __init__(self, split: Split, metric: str, seed: int, teacher: CachedTeacher | None,
                 teacher_path: Path | None = None, cache: Path | None = None):
        self.split = split
        self.metric = metric
        self.seed = seed
        self.teacher = teacher
        self.teacher_path = teacher_path  # the logit cache file; its saved model beside it (teacher_folder)
        self.cache = cache
        self.base_model: str | None = None  # the teacher's starting checkpoint (None: kdtext's default MiniLM)
        self.static_params: dict = {}
        self._twin = None
        self.twin_cv = None

    def teacher_logits(self, texts: list[str]) -> np.ndarray:
        return self.teacher.predict_logits(texts)

    def twin(self):
        """The tuned TF-IDF + LogisticRegressionCV twin (fitted once, on first use)."""
        if self._twin is None:
            from sklearn.linear_model import LogisticRegressionCV
            from sklearn.model_selection import KFold, StratifiedKFold
            from sklearn.pipeline import make_pipeline

            s = self.split
            if np.bincount(s.y_lab).min() >= 5:
                cv = StratifiedKFold(5, shuffle=True, random_state=self.seed)
                self.twin_cv = "5-fold stratified"
            else:  # a class with fewer than 5 labeled texts (banking77 at small n): stratified 5-fold is impossible
                cv = KFold(5, shuffle=True, random_state=self.seed)
                self.twin_cv = "5-fold (not stratified: a class has < 5 texts)"
            est = make_pipeline(
                tfidf(),
                LogisticRegressionCV(Cs=CS, cv=cv, max_iter=2000, class_weight=None, l1_ratios=(0.0,),
                                     scoring=SCORING[self.metric], use_legacy_attributes=False),
            )
            t0 = time.perf_counter()
            est.fit(s.X_lab, s.y_lab)
            self._twin = (est, time.perf_counter() - t0)
        return self._twin

    def twin_C(self) -> float:
        return float(np.ravel(self.twin()[0][-1].C_)[0])


def _lr(C: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(tfidf(), LogisticRegression(C=C, max_iter=2000))


def _kd(ctx: Context, student, **kw):
    """The distiller over the cached stand-in teacher, which labels no new texts: ``augment=0`` unless ``kw`` says.

    ``augment=0`` was kdtext's default until 2026-12-03, when the measurement of ``bilstm_distilled_aug_kl`` made
    ``augment="auto"`` the default; the rows built here keep what they measured."""
    from kdtext import DistillationClassifier

    return DistillationClassifier(ctx.teacher, student, random_state=ctx.seed, **{"augment": 0, **kw})


def _fit_kd(ctx: Context, est) -> dict:
    s = ctx.split
    t0 = time.perf_counter()
    est.fit(s.X_all, s.y_all)
    return {"est": est, "seconds": time.perf_counter() - t0, "fidelity": float(est.fidelity_)}


def _fit_manual(ctx: Context, weights: str) -> dict:
    """TF-IDF + LR(C = twin's) on teacher argmax labels of all distinct transfer texts, gold where present."""
    s = ctx.split
    C = ctx.twin_C()
    logits = ctx.teacher_logits(s.distinct)
    labels = np.where(s.gold >= 0, s.gold, np.argmax(logits, axis=1))
    est = _lr(C)
    fit_kw = {}
    if weights in ("mean1", "raw"):
        conf = softmax(logits).max(axis=1)
        teacher_rows = s.gold < 0
        w = np.ones(len(labels))
        if teacher_rows.any():
            w[teacher_rows] = conf[teacher_rows] / (conf[teacher_rows].mean() if weights == "mean1" else 1.0)
        fit_kw["logisticregression__sample_weight"] = w
    t0 = time.perf_counter()
    est.fit(s.distinct, labels, **fit_kw)
    return {"est": est, "seconds": time.perf_counter() - t0, "params": {"C": C}}


def row_teacher(ctx: Context) -> dict:
    raise RuntimeError("handled by the runner")  # pragma: no cover


def row_lr_twin(ctx: Context) -> dict:
    est, seconds = ctx.twin()
    return {"est": est, "seconds": seconds, "params": {"C": ctx.twin_C(), "Cs": CS, "cv": ctx.twin_cv,
                                                       "scoring": SCORING[ctx.metric]}}


def row_lr_distilled_hard_weighted(ctx: Context) -> dict:
    C = ctx.twin_C()
    out = _fit_kd(ctx, _kd(ctx, _lr(C), target="hard", alpha=0.5))
    out["params"] = {"C": C, "alpha": out["est"].alpha}
    return out


def row_lr_distilled_hard_unweighted(ctx: Context) -> dict:
    return _fit_manual(ctx, "none")


def row_lr_distilled_hard_mean1(ctx: Context) -> dict:
    return _fit_manual(ctx, "mean1")


def row_lr_distilled_hard_raw(ctx: Context) -> dict:
    return _fit_manual(ctx, "raw")


def row_lr_distilled_proba(ctx: Context) -> dict:
    C = ctx.twin_C()
    out = _fit_kd(ctx, _kd(ctx, _lr(C), target="proba", alpha=0.5, temperature=2.0))
    out["params"] = {"C": C, "alpha": out["est"].alpha, "temperature": out["est"].temperature}
    return out


def _distiller_params(est) -> dict:
    return {k: v for k, v in est.get_params(deep=False).items()
            if k in ("target", "loss", "alpha", "temperature") and v is not None} | {"route": est.target_}


def row_lr_distilled_default(ctx: Context) -> dict:
    """DistillationClassifier(teacher, TF-IDF + LR(C = twin's)) with every distillation default."""
    C = ctx.twin_C()
    out = _fit_kd(ctx, _kd(ctx, _lr(C)))
    out["params"] = {"C": C, **_distiller_params(out["est"])}
    return out


def row_lr_cv(ctx: Context) -> dict:
    """DistillationClassifierCV(teacher, TF-IDF + LR(C = twin's)): its default grid and twin, cv=3, the set's metric."""
    from kdtext import DistillationClassifierCV

    C = ctx.twin_C()
    est = DistillationClassifierCV(ctx.teacher, _lr(C), scoring=SCORING[ctx.metric], random_state=ctx.seed)
    s = ctx.split
    t0 = time.perf_counter()
    est.fit(s.X_all, s.y_all)
    return {"est": est, "seconds": time.perf_counter() - t0,
            "params": {"C": C, "best": {k: v for k, v in est.best_params_.items()},
                       "best_score": float(est.best_score_), "twin_score": float(est.twin_score_)}}


def row_ridge_distilled_logits(ctx: Context) -> dict:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline

    gcv = len(ctx.split.distinct) <= RIDGE_GCV_MAX
    student = make_pipeline(tfidf(), RidgeCV(alphas=RIDGE_ALPHAS, cv=None if gcv else 5))
    out = _fit_kd(ctx, _kd(ctx, student))
    out["params"] = {"alpha": float(out["est"].student_[-1].alpha_), "alphas": RIDGE_ALPHAS,
                     "cv": "leave-one-out (GCV)" if gcv else "5-fold", "route": out["est"].target_}
    return out


def row_bilstm_twin(ctx: Context, **params) -> dict:
    from kdtext import BiLSTMClassifier

    s = ctx.split
    est = BiLSTMClassifier(random_state=ctx.seed, **params)
    t0 = time.perf_counter()
    est.fit(s.X_lab, s.y_lab)
    return {"est": est, "seconds": time.perf_counter() - t0, "params": {"best_epoch": int(est.best_epoch_), **params}}


def row_bilstm_twin_balanced_accuracy(ctx: Context) -> dict:
    """``bilstm_twin`` whose early stopping and best epoch go by balanced accuracy (``scoring``)."""
    return row_bilstm_twin(ctx, scoring="balanced_accuracy")


def row_bilstm_twin_f1_macro(ctx: Context) -> dict:
    """``bilstm_twin`` whose early stopping and best epoch go by macro-F1 (``scoring``)."""
    return row_bilstm_twin(ctx, scoring="f1_macro")


def _bilstm_kd(ctx: Context, loss: str, alpha: float) -> dict:
    from kdtext import BiLSTMClassifier

    out = _fit_kd(ctx, _kd(ctx, BiLSTMClassifier(random_state=ctx.seed), loss=loss, alpha=alpha, temperature=2.0))
    out["params"] = {"loss": loss, "alpha": alpha, "temperature": 2.0,
                     "best_epoch": int(out["est"].student_.best_epoch_)}
    return out


def row_bilstm_distilled_mse(ctx: Context) -> dict:
    return _bilstm_kd(ctx, "mse", 0.0)


def row_bilstm_distilled_kl(ctx: Context) -> dict:
    return _bilstm_kd(ctx, "kl", 0.5)


def row_bilstm_distilled_mse_a05(ctx: Context) -> dict:
    return _bilstm_kd(ctx, "mse", 0.5)


def row_bilstm_distilled_kl_a0(ctx: Context) -> dict:
    return _bilstm_kd(ctx, "kl", 0.0)


def _bilstm_pretrained(ctx: Context, **params):
    """BiLSTMClassifier() with its tokenizer and embeddings from the teacher's starting checkpoint."""
    from kdtext import BiLSTMClassifier
    from kdtext.teachers import resolve_model_path

    return BiLSTMClassifier(pretrained=resolve_model_path(ctx.base_model), random_state=ctx.seed, **params)


def _bilstm_pretrained_kd(ctx: Context, pretrained: str = "base", student: dict | None = None, **kd) -> dict:
    """The pretrained BiLSTM (``student`` parameters on top) distilled with kdtext's defaults (``kd`` on top)."""
    student = student or {}
    out = _fit_kd(ctx, _kd(ctx, _bilstm_pretrained(ctx, **student), **kd))
    out["params"] = {**_distiller_params(out["est"]), "best_epoch": int(out["est"].student_.best_epoch_),
                     "pretrained": pretrained, **student}
    return out


def row_bilstm_distilled_default(ctx: Context) -> dict:
    """What ``DistillationClassifier(teacher, BiLSTMClassifier())`` gives with a TransformerClassifier teacher.

    The student's ``pretrained="auto"`` resolves to the teacher's starting checkpoint; the cached stand-in
    teacher is not a TransformerClassifier, so the checkpoint is passed explicitly (the same student).
    """
    return _bilstm_pretrained_kd(ctx, pretrained="auto (the teacher's checkpoint)")


def row_bilstm_pretrained_twin(ctx: Context) -> dict:
    """BiLSTMClassifier(pretrained=starting checkpoint) on gold labels only."""
    s = ctx.split
    est = _bilstm_pretrained(ctx)
    t0 = time.perf_counter()
    est.fit(s.X_lab, s.y_lab)
    return {"est": est, "seconds": time.perf_counter() - t0, "params": {"best_epoch": int(est.best_epoch_)}}


def row_bilstm_distilled_pretrained(ctx: Context) -> dict:
    """kdtext's distillation defaults; the BiLSTM starts from the teacher checkpoint's tokenizer and vectors."""
    return _bilstm_pretrained_kd(ctx)


def row_bilstm_distilled_pretrained_d256(ctx: Context) -> dict:
    """The same with 256-wide embeddings (PCA to 256 instead of 128)."""
    return _bilstm_pretrained_kd(ctx, student={"embedding_dim": 256})


def row_bilstm_distilled_pretrained_mse(ctx: Context) -> dict:
    """The pretrained BiLSTM with loss="mse" (alpha 0) instead of the default KL at T=2."""
    return _bilstm_pretrained_kd(ctx, loss="mse")


def real_teacher(ctx: Context):
    """The fitted teacher saved beside the logit cache (fitted teachers before that was saved: refit with --refit)."""
    from kdtext import TransformerClassifier

    folder = teacher_folder(ctx.teacher_path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} not found: this row needs the saved teacher; delete "
                                f"{ctx.teacher_path} to fit it again")
    teacher = TransformerClassifier.from_pretrained(folder, device="cpu")
    if not np.array_equal(np.asarray(teacher.classes_), np.arange(len(ctx.split.classes))):
        raise RuntimeError(f"this row needs class labels 0..K-1, the teacher has {teacher.classes_[:5]}...")
    return teacher


def row_bilstm_distilled_aug(ctx: Context) -> dict:
    """The mse / alpha=0 BiLSTM with AUGMENT Tang et al. variants per text, labeled by the real teacher."""
    from kdtext import BiLSTMClassifier, DistillationClassifier

    teacher = real_teacher(ctx)
    memory = ctx.cache / f"robustness-labels-{ctx.teacher_path.stem}"
    est = DistillationClassifier(teacher, BiLSTMClassifier(random_state=ctx.seed), loss="mse", alpha=0.0,
                                 augment=AUGMENT, memory=memory, random_state=ctx.seed)
    out = _fit_kd(ctx, est)
    out["params"] = {"loss": "mse", "alpha": 0.0, "augment": AUGMENT, "n_transfer": int(est.n_transfer_),
                     "best_epoch": int(est.student_.best_epoch_)}
    return out


def row_bilstm_distilled_aug_kl(ctx: Context, **student_params) -> dict:
    """DistillationClassifier(teacher, BiLSTMClassifier(**student_params), augment=AUGMENT): every default (KL at
    T=2) plus Tang et al.'s augmentation, the new texts labeled by the real teacher."""
    from kdtext import BiLSTMClassifier, DistillationClassifier

    teacher = real_teacher(ctx)
    memory = ctx.cache / f"robustness-labels-{ctx.teacher_path.stem}"
    est = DistillationClassifier(teacher, BiLSTMClassifier(random_state=ctx.seed, **student_params), augment=AUGMENT,
                                 memory=memory, random_state=ctx.seed)
    out = _fit_kd(ctx, est)
    out["params"] = {**_distiller_params(est), "augment": AUGMENT, "n_transfer": int(est.n_transfer_),
                     "best_epoch": int(est.student_.best_epoch_), **student_params}
    return out


def row_bilstm_distilled_aug_kl_bacc(ctx: Context) -> dict:
    """``bilstm_distilled_aug_kl`` with the student's early stopping by balanced accuracy (``scoring``)."""
    return row_bilstm_distilled_aug_kl(ctx, scoring="balanced_accuracy")


def row_lr_distilled_aug(ctx: Context) -> dict:
    """TF-IDF + LR(C = twin's) distilled with every default plus augment=AUGMENT (the real teacher labels)."""
    from kdtext import DistillationClassifier

    C = ctx.twin_C()
    teacher = real_teacher(ctx)
    memory = ctx.cache / f"robustness-labels-{ctx.teacher_path.stem}"
    est = DistillationClassifier(teacher, _lr(C), augment=AUGMENT, memory=memory, random_state=ctx.seed)
    out = _fit_kd(ctx, est)
    out["params"] = {"C": C, **_distiller_params(est), "augment": AUGMENT, "n_transfer": int(est.n_transfer_)}
    return out


def _hashing_sgd(ctx: Context):
    """HashingVectorizer (word 1-2 grams, 2**20 features) + SGDClassifier(log_loss): a student that streams."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline

    return make_pipeline(HashingVectorizer(ngram_range=(1, 2), n_features=1 << 20, alternate_sign=False),
                         SGDClassifier(loss="log_loss", random_state=ctx.seed))


def row_sgd_memory(ctx: Context) -> dict:
    """The hashing + SGD student distilled in memory (SGD's own fit: up to 1,000 epochs until tol)."""
    out = _fit_kd(ctx, _kd(ctx, _hashing_sgd(ctx), stream=False))
    out["params"] = {**_distiller_params(out["est"]), "sgd_epochs": int(out["est"].student_[-1].n_iter_)}
    return out


def _sgd_stream(ctx: Context, epochs: int) -> dict:
    """The hashing + SGD student distilled from the transfer set written to Parquet files and streamed
    (``partial_fit``, ``stream_epochs=epochs``, chunks of 2,048 texts)."""
    import tempfile

    import pandas as pd

    from kdtext import TextFiles

    s = ctx.split
    with tempfile.TemporaryDirectory(prefix="kdtext-robustness-") as tmp:
        pd.DataFrame({"text": s.X_all}).to_parquet(Path(tmp) / "transfer.parquet")
        files = TextFiles(str(Path(tmp) / "transfer.parquet"), chunk_size=2048)
        est = _kd(ctx, _hashing_sgd(ctx), stream=True, stream_epochs=epochs)
        t0 = time.perf_counter()
        est.fit(files, s.y_all)
        out = {"est": est, "seconds": time.perf_counter() - t0, "fidelity": float(est.fidelity_)}
    out["params"] = {**_distiller_params(est), "stream_epochs": epochs, "streamed": bool(est.streamed_)}
    return out


def row_sgd_stream_e1(ctx: Context) -> dict:
    return _sgd_stream(ctx, 1)


def row_sgd_stream_e3(ctx: Context) -> dict:
    return _sgd_stream(ctx, 3)


def row_sgd_stream_e5(ctx: Context) -> dict:
    return _sgd_stream(ctx, 5)


def row_sgd_stream_e10(ctx: Context) -> dict:
    return _sgd_stream(ctx, 10)


def _static(ctx: Context, model: str | None):
    from kdtext import StaticEmbeddingClassifier

    return StaticEmbeddingClassifier(model, **{"random_state": ctx.seed, **ctx.static_params})


def _static_params(est) -> dict:
    return {**{k: v for k, v in est.get_params(deep=False).items() if k in STATIC_REPORTED},
            "n_pieces": int(est.n_pieces_), "best_epoch": int(est.best_epoch_), "n_iter": int(est.n_iter_)}


def row_static_twin(ctx: Context) -> dict:
    """StaticEmbeddingClassifier on gold labels, vectors from the teacher's starting checkpoint."""
    s = ctx.split
    est = _static(ctx, ctx.base_model)
    t0 = time.perf_counter()
    est.fit(s.X_lab, s.y_lab)
    return {"est": est, "seconds": time.perf_counter() - t0, "params": _static_params(est)}


def row_static_distilled_base(ctx: Context) -> dict:
    """Distilled with kdtext's defaults; vectors from the teacher's starting checkpoint."""
    out = _fit_kd(ctx, _kd(ctx, _static(ctx, ctx.base_model)))
    out["params"] = {**_distiller_params(out["est"]), **_static_params(out["est"].student_), "vectors": "base"}
    return out


def row_static_distilled_teacher(ctx: Context) -> dict:
    """Distilled with kdtext's defaults; vectors from the fine-tuned teacher's folder (saved beside its cache)."""
    folder = teacher_folder(ctx.teacher_path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} not found: this row needs the saved teacher; delete "
                                f"{ctx.teacher_path} to fit it again")
    out = _fit_kd(ctx, _kd(ctx, _static(ctx, str(folder))))
    out["params"] = {**_distiller_params(out["est"]), **_static_params(out["est"].student_), "vectors": "teacher"}
    return out


STATIC_REPORTED = ("vocabulary", "pca_dims", "sif_coefficient", "normalize", "hidden_dim", "dropout",
                   "learning_rate", "epochs", "freeze_embeddings")

ROW_FUNCS: dict[str, Callable[[Context], dict]] = {name: globals()[f"row_{name}"] for name in ROWS}


# ----------------------------------------------------------------------------- results file
@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock for ``path`` (runs of the same set in parallel merge safely); the lock file lives in the
    temp folder, so nothing is left beside the results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"kdtext-robustness-{digest}.lock", "w") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        yield


def read_results(path: Path) -> dict:
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            backup = path.with_suffix(f".broken-{int(time.time())}.json")
            shutil.copy(path, backup)
            log(f"warning: {path} is not valid JSON ({exc}); kept as {backup}, starting a new file")
    return {}


def row_key(r: dict) -> tuple:
    return (int(r["n_labeled"]), r["row"], int(r["seed"]))


def derive(rows: list[dict], metric: str, n_classes: int, y_test_by_hash: dict[str, np.ndarray]) -> None:
    """Fill gain_over_twin, gain_stderr and share_of_teacher from the matching twin and teacher rows."""
    index = {row_key(r): r for r in rows}
    for r in rows:
        ok = r.get("metric") is not None
        twin = TWIN_OF.get(r["row"])
        r.pop("gain_note", None)
        if twin:
            r["twin"] = twin
            t = index.get((int(r["n_labeled"]), twin, int(r["seed"])))
            r["gain_over_twin"] = r["gain_stderr"] = None
            if ok and t is not None and t.get("metric") is not None:
                if t.get("test_hash") == r.get("test_hash"):
                    r["gain_over_twin"] = r["metric"] - t["metric"]
                    y = y_test_by_hash.get(r.get("test_hash"))
                    if y is not None and r.get("test_pred") and t.get("test_pred"):
                        r["gain_stderr"] = bootstrap_se(metric, y, decode_pred(r["test_pred"]), n_classes,
                                                        other=decode_pred(t["test_pred"]))
                else:
                    r["gain_note"] = "twin row has another test sample"
        if r["row"] != "teacher":
            te = index.get((int(r["n_labeled"]), "teacher", int(r["seed"])))
            r["share_of_teacher"] = None
            if ok and te is not None and te.get("metric"):
                same_test = te.get("test_hash") == r.get("test_hash")
                same_teacher = r["row"] not in TWIN_OF or te.get("teacher_id") == r.get("teacher_id")
                if same_test and same_teacher:
                    r["share_of_teacher"] = r["metric"] / te["metric"]


def write_results(path: Path, set_name: str, metric: str, new_rows: list[dict], n_classes: int,
                  y_test_by_hash: dict[str, np.ndarray], command: str) -> dict:
    """Merge ``new_rows`` into the JSON file (replace same keys, keep others) and write it atomically."""
    with locked(path):
        old = read_results(path)
        labels = dict(old.get("test_labels", {}))
        labels.update({h: encode_pred(y) for h, y in y_test_by_hash.items()})
        rows = {row_key(r): r for r in old.get("rows", [])}
        for r in new_rows:
            rows[row_key(r)] = r
        order = {name: i for i, name in enumerate(ROWS)}
        merged = sorted(rows.values(), key=lambda r: (int(r["n_labeled"]), int(r["seed"]), order.get(r["row"], 99)))
        n_classes = max(int(old.get("n_classes", 0)), n_classes)
        derive(merged, metric, n_classes, {h: decode_pred(v) for h, v in labels.items()})
        info = machine_info()
        runs = old.get("runs", [])
        if not runs or runs[-1].get("command") != command or runs[-1].get("pid") != os.getpid():
            runs.append({"command": command, "date": info["date"], "pid": os.getpid(),
                         "load_avg_1m": info.get("load_avg_1m")})
        payload = {
            "benchmark": "robustness",
            "set": set_name,
            "metric": metric,
            "command": command,
            "machine": info,
            "n_classes": n_classes,
            "runs": runs,
            "rows": merged,
            "test_labels": labels,
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(payload, indent=1, ensure_ascii=False, default=str) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    return payload


# ----------------------------------------------------------------------------- one run
def run_one(args, set_name: str, n_labeled: int, seed: int, rows: list[str], root: Path, command: str,
            e5: str | None) -> list[dict]:
    spec = SETS[set_name]
    metric = spec["metric"]
    out_path = args.out_dir / f"robustness_{set_name}.json"
    log(f"{set_name}: n_labeled={n_labeled}, n_unlabeled={args.n_unlabeled}, seed={seed}: drawing the split")
    split = Split(root, set_name, n_labeled, args.n_unlabeled, seed, args.max_test)
    K = split.n_classes
    y_by_hash = {split.test_hash: split.y_test}
    log(f"{set_name}: {len(split.X_lab)} labeled ({np.bincount(split.y_lab, minlength=K).min()} in the smallest "
        f"class), {len(split.X_unl)} transfer, {len(split.X_test)} test texts, {K} classes")
    params = json.loads(args.teacher_params)
    model_label = TEACHER_MODELS[spec["teacher"]] if "model" not in params else str(params["model"])
    key = teacher_cache_key(set_name, n_labeled, seed, model_label, params)
    tid = teacher_id(key)
    common = {
        "n_labeled": n_labeled,
        "seed": seed,
        "n_labeled_actual": len(split.X_lab),
        "n_unlabeled": len(split.X_unl),
        "n_transfer_distinct": len(split.distinct),
        "n_test": len(split.X_test),
        "max_test": args.max_test,
        "test_hash": split.test_hash,
    }
    done: list[dict] = []

    def record(r: dict) -> None:
        r = {**common, **r, "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        done.append(r)
        write_results(out_path, set_name, metric, [r], K, y_by_hash, command)
        msg = r.get("error") or f"{metric} {r['metric']:.4f} +- {r['stderr']:.4f}, {r.get('seconds') or 0:.1f} s"
        log(f"{set_name} n={n_labeled} seed={seed} {r['row']}: {msg}")

    # the teacher (from the cache, or fitted now) if any selected row needs it
    teacher = None
    teacher_error = None
    if NEEDS_TEACHER & set(rows):
        model_path = None if spec["teacher"] == "minilm" else e5
        if spec["teacher"] == "e5" and model_path is None and "model" not in params:
            teacher_error = "skipped: no multilingual-e5-small folder"
            log(f"{set_name}: no multilingual-e5-small folder (pass --e5 PATH or set $KDTEXT_E5; build it with "
                f"`python ../shared/tools/build_multilingual_e5.py PATH`): skipping the teacher and every distilled "
                f"row of {set_name}")
        else:
            path = cache_path(args.cache, key)
            try:
                got = load_teacher_cache(path, key, split)
                from_cache = got is not None
                if got is None:
                    got = fit_teacher(split, key, model_path, params, args.cache)
                else:
                    log(f"teacher logits loaded from {path}")
                table, meta = got
                texts = list(dict.fromkeys(split.distinct + split.X_test))
                # columns of the logits are the sorted classes, i.e. class indices 0..K-1 here
                teacher = CachedTeacher(np.arange(K)).fit(texts, np.stack([table[text_key(t)] for t in texts]))
                z_test = teacher.predict_logits(split.X_test)
                p_test = np.argmax(z_test, axis=1)
                z_lab = teacher.predict_logits(split.X_lab)
                z_unl = teacher.predict_logits(split.X_unl) if split.X_unl else np.empty((0, K))
                trow = {
                    "row": "teacher",
                    "metric": metric_value(metric, split.y_test, p_test, K),
                    "stderr": bootstrap_se(metric, split.y_test, p_test, K),
                    "seconds": meta["fit_seconds"],
                    "teacher_fit_seconds": meta["fit_seconds"],
                    "teacher_predict_seconds": meta.get("predict_seconds"),
                    "teacher_train_accuracy": float(np.mean(np.argmax(z_lab, axis=1) == split.y_lab)),
                    "teacher_mean_top_prob": float(softmax(z_unl).max(axis=1).mean()) if len(z_unl) else None,
                    "teacher_mean_top_prob_test": float(softmax(z_test).max(axis=1).mean()),
                    "teacher_best_epoch": meta.get("best_epoch"),
                    "teacher_from_cache": from_cache,
                    "teacher_model": model_label,
                    "teacher_params": key["params"],
                    "teacher_id": tid,
                    "test_pred": encode_pred(p_test),
                }
                record(trow)
            except Exception as exc:
                teacher_error = f"teacher failed: {type(exc).__name__}: {exc}"
                log(traceback.format_exc())
                record({"row": "teacher", "metric": None, "stderr": None, "error": teacher_error,
                        "teacher_id": tid, "traceback": traceback.format_exc()[-2000:]})

    ctx = Context(split, metric, seed, teacher, cache_path(args.cache, key) if teacher is not None else None,
                  args.cache)
    ctx.base_model = None if spec["teacher"] == "minilm" else e5
    ctx.static_params = json.loads(args.static_params)
    for name in rows:
        if name == "teacher":
            continue
        if name in TWIN_OF and teacher is None:
            if teacher_error and teacher_error.startswith("skipped"):
                continue  # no e5 folder: nothing recorded, old rows stay
            record({"row": name, "metric": None, "stderr": None, "error": teacher_error, "teacher_id": tid})
            continue
        log(f"{set_name} n={n_labeled} seed={seed} {name}: fitting")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out = ROW_FUNCS[name](ctx)
                est = out["est"]
                p = np.asarray(est.predict(split.X_test), dtype=np.int64)  # every row learns class indices
                r = {
                    "row": name,
                    "metric": metric_value(metric, split.y_test, p, K),
                    "stderr": bootstrap_se(metric, split.y_test, p, K),
                    "seconds": out["seconds"],
                    "params": out.get("params", {}),
                    "test_pred": encode_pred(p),
                }
                if teacher is not None:
                    if "fidelity" in out:
                        r["fidelity"] = out["fidelity"]
                    else:
                        agree = np.asarray(est.predict(split.distinct)) == np.argmax(
                            ctx.teacher_logits(split.distinct), axis=1)
                        r["fidelity"] = float(np.mean(agree))
                if name in TWIN_OF:
                    r["teacher_id"] = tid
            except Exception as exc:
                log(traceback.format_exc())
                r = {"row": name, "metric": None, "stderr": None, "error": f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc()[-2000:], "teacher_id": tid}
        msgs = list(dict.fromkeys(f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught))
        if msgs:
            r["warnings"] = msgs[:5] + ([f"... {len(msgs) - 5} more kinds"] if len(msgs) > 5 else [])
        record(r)
        gc.collect()
    return done


# ----------------------------------------------------------------------------- reports
def fmt(v: Any, spec: str = "{:.3f}", signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return ("{:+.3f}" if signed else spec).format(v)


def print_run_table(payload: dict, keys: set[tuple]) -> None:
    rows = [r for r in payload["rows"] if row_key(r) in keys]
    table = []
    for r in rows:
        table.append({
            "n_labeled": r["n_labeled"],
            "seed": r["seed"],
            "row": r["row"],
            payload["metric"]: fmt(r.get("metric")),
            "stderr": fmt(r.get("stderr")),
            "gain": fmt(r.get("gain_over_twin"), signed=True),
            "gain se": fmt(r.get("gain_stderr")),
            "share": fmt(r.get("share_of_teacher")),
            "fidelity": fmt(r.get("fidelity")),
            "seconds": fmt(r.get("seconds"), "{:.1f}"),
            "note": _note(r),
        })
    print(f"\n{payload['set']}: {payload['metric']} on the test sample")
    print_table(table)


def _note(r: dict) -> str:
    if r.get("error"):
        return "ERROR " + r["error"][:100]
    if r["row"] == "teacher":
        return (f"train acc {r.get('teacher_train_accuracy', 0):.3f}, mean top prob {fmt(r.get('teacher_mean_top_prob'))}"
                + (", cached" if r.get("teacher_from_cache") else ""))
    p = r.get("params") or {}
    parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items() if k in ("C", "alpha")]
    return ", ".join(parts)


def result_files(out_dir: Path) -> list[Path]:
    return sorted(p for p in out_dir.glob("robustness_*.json"))


def summarise(payload: dict) -> tuple[list[int], dict]:
    """{(row, n_labeled): dict(metric mean, stderr, gain mean, gain se, seeds)} averaged over seeds."""
    cells: dict[tuple[str, int], list[dict]] = {}
    for r in payload.get("rows", []):
        cells.setdefault((r["row"], int(r["n_labeled"])), []).append(r)
    out = {}
    for k, rs in cells.items():
        good = [r for r in rs if r.get("metric") is not None]
        if not good:
            out[k] = {"error": rs[0].get("error", "error")}
            continue
        m = np.array([r["metric"] for r in good])
        se = np.array([r.get("stderr") or 0.0 for r in good])
        gains = [r["gain_over_twin"] for r in good if r.get("gain_over_twin") is not None]
        gses = [r["gain_stderr"] for r in good if r.get("gain_stderr") is not None]
        shares = [r["share_of_teacher"] for r in good if r.get("share_of_teacher") is not None]
        out[k] = {
            "metric": float(m.mean()),
            # every seed is scored on the same test sample, so its noise does not average out over seeds:
            # the mean of the per-seed SEs, and the spread over seeds beside it
            "stderr": float(np.mean(se)),
            "seed_sd": float(np.std(m, ddof=1)) if len(good) > 1 else None,
            "gain": float(np.mean(gains)) if gains else None,
            "gain_se": float(np.mean(gses)) if gses else None,
            "share": float(np.mean(shares)) if shares else None,
            "seeds": len(good),
            "errors": len(rs) - len(good),
        }
    sizes = sorted({k[1] for k in out})
    return sizes, out


#: the summary's columns: what a user gets, beside the teacher and the twins
SUMMARY_ROWS = ["teacher", "lr_twin", "lr_distilled_default", "lr_cv", "ridge_distilled_logits", "bilstm_twin",
                "bilstm_distilled_default", "bilstm_distilled_aug", "bilstm_distilled_aug_kl", "lr_distilled_aug",
                "bilstm_pretrained_twin", "bilstm_distilled_pretrained", "static_twin", "static_distilled_base",
                "static_distilled_teacher"]
#: (candidate, the default it would replace): compared on the sets and sizes where both ran
SUMMARY_PAIRS = (("bilstm_distilled_aug_kl", "bilstm_distilled_default"), ("lr_distilled_aug", "lr_distilled_default"))
BINARY_METRICS = {"f1_pos"}


def summary_table(out_dir: Path) -> str:
    """One row per (set, n_labeled): the headline rows, then the issue's targets checked on them."""
    header = ("| set (metric) | n | " + " | ".join(SUMMARY_ROWS)
              + " | default / twin (LR, BiLSTM, static) | share of teacher (LR, BiLSTM, static) |")
    lines = [header, "|---" * (len(SUMMARY_ROWS) + 4) + "|"]
    # the BiLSTM's every-default row is bilstm_distilled_aug_kl since augment="auto" became the default: at these
    # sizes (4,250-5,000 transfer texts) "auto" gives the 4 variants per text that row passes
    kinds = (("lr", "lr_distilled_default"), ("bilstm", "bilstm_distilled_aug_kl"),
             ("static", "static_distilled_base"))
    gains, shares = {k: [] for k, _ in kinds}, {k: [] for k, _ in kinds}
    paired = {pair: [] for pair in SUMMARY_PAIRS}  # (share of the candidate, share of the default)
    for path in result_files(out_dir):
        payload = read_results(path)
        if not payload.get("rows"):
            continue
        sizes, cells = summarise(payload)
        for n in sizes:
            vals = []
            for row in SUMMARY_ROWS:
                c = cells.get((row, n))
                vals.append("" if not c or c.get("metric") is None else f"{c['metric']:.3f}")
            g, sh = [], []
            for kind, row in kinds:
                c = cells.get((row, n))
                if c and c.get("gain") is not None:
                    g.append(f"{c['gain']:+.3f} ± {c['gain_se']:.3f}")
                    gains[kind].append(c["gain"])
                else:
                    g.append("–")
                if c and c.get("share") is not None:
                    sh.append(f"{c['share']:.0%}")
                    shares[kind].append(c["share"])
                else:
                    sh.append("–")
            for cand, base in SUMMARY_PAIRS:
                a, b = cells.get((cand, n)), cells.get((base, n))
                if a and b and a.get("share") is not None and b.get("share") is not None:
                    paired[(cand, base)].append((a["share"], b["share"], f"{payload['set']} n={n}"))
            lines.append(f"| {payload['set']} ({payload['metric']}) | {n} | " + " | ".join(vals)
                         + f" | {', '.join(g)} | {', '.join(sh)} |")
    lines.append("")
    for kind, _ in kinds:
        if gains[kind]:
            lines.append(f"- {kind} with defaults: mean gain over its twin {np.mean(gains[kind]):+.3f} "
                         f"(min {min(gains[kind]):+.3f}); mean share of the teacher {np.mean(shares[kind]):.1%}")
    for (cand, base), got in paired.items():
        if got:
            lines.append(f"- {cand} vs {base} on the {len(got)} set/size pairs where both ran "
                         f"({', '.join(g[2] for g in got)}): mean share of the teacher "
                         f"{np.mean([g[0] for g in got]):.1%} vs {np.mean([g[1] for g in got]):.1%}")
    text = "\n".join(lines)
    print(text)
    return text


def markdown_tables(out_dir: Path) -> str:
    parts = []
    for path in result_files(out_dir):
        payload = read_results(path)
        if not payload.get("rows"):
            continue
        sizes, cells = summarise(payload)
        n_unl = sorted({r.get("n_unlabeled") for r in payload["rows"] if r.get("n_unlabeled") is not None})
        n_test = sorted({r.get("n_test") for r in payload["rows"] if r.get("n_test") is not None})
        seeds = sorted({int(r["seed"]) for r in payload["rows"]})
        parts.append(
            f"### {payload['set']}\n\n{payload['metric']} on {'/'.join(map(str, n_test))} test texts; transfer set "
            f"{'/'.join(map(str, n_unl))} texts; seeds {','.join(map(str, seeds))}. Cell: metric +- bootstrap SE "
            f"(gain over the twin +- paired SE); with several seeds the means, the mean SE and the sd over seeds.\n"
        )
        header = "| row | " + " | ".join(f"n={n}" for n in sizes) + " |"
        lines = [header, "|---|" + "---|" * len(sizes)]
        for row in ROWS:
            if not any((row, n) in cells for n in sizes):
                continue
            vals = []
            for n in sizes:
                c = cells.get((row, n))
                if c is None:
                    vals.append("")
                elif "error" in c:
                    vals.append("error")
                else:
                    v = f"{c['metric']:.3f} +- {c['stderr']:.3f}"
                    if c["gain"] is not None:
                        v += f" ({c['gain']:+.3f}" + (f" +- {c['gain_se']:.3f}" if c["gain_se"] is not None else "") + ")"
                    if c["seeds"] > 1:
                        v += f" [{c['seeds']} seeds, sd {c['seed_sd']:.3f}]"
                    if c["errors"]:
                        v += f" [{c['errors']} failed]"
                    vals.append(v)
            lines.append(f"| {row} | " + " | ".join(vals) + " |")
        teach = [r for r in payload["rows"] if r["row"] == "teacher" and r.get("metric") is not None]
        if teach:
            bits = [f"n={r['n_labeled']} s{r['seed']}: fit {r.get('teacher_fit_seconds', 0):.0f} s, train acc "
                    f"{r.get('teacher_train_accuracy', 0):.3f}, mean top prob {fmt(r.get('teacher_mean_top_prob'))}"
                    for r in teach]
            lines.append("\nTeacher: " + "; ".join(bits) + ".")
        parts.append("\n".join(lines) + "\n")
    text = "\n".join(parts) if parts else f"no robustness_*.json in {out_dir}"
    print(text)
    return text


def plot(out_dir: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    data = []
    for path in result_files(out_dir):
        payload = read_results(path)
        if payload.get("rows"):
            data.append((payload["set"], payload["metric"], *summarise(payload)))
    if not data:
        log(f"no robustness_*.json with rows in {out_dir}: nothing to plot")
        return None
    rows = [r for r in PLOT_ROWS if any((r, n) in cells for _, _, _, cells in data for n in _)]
    sizes = sorted({n for _, _, ns, _ in data for n in ns})
    fig, axes = plt.subplots(len(sizes), 1, figsize=(max(7.0, 1.6 * len(data)), 3.6 * len(sizes)), squeeze=False)
    colors = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(rows))
    for ax, n in zip(axes.flat, sizes):
        ax.axhline(0.0, color="black", lw=0.8)
        for j, row in enumerate(rows):
            xs, ys, es = [], [], []
            for i, (set_name, metric, _, cells) in enumerate(data):
                c = cells.get((row, n))
                if c and c.get("gain") is not None:
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(c["gain"])
                    es.append(c.get("gain_se") or 0.0)
            if xs:
                ax.bar(xs, ys, width=width * 0.95, yerr=es, capsize=2, color=colors(j), label=row)
        ax.set_xticks(range(len(data)))
        ax.set_xticklabels([f"{name}\n({metric})" for name, metric, _, _ in data], fontsize=8)
        ax.set_ylabel("gain over the twin")
        ax.set_title(f"{n:,} labeled texts", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)) or 1, fontsize=8)
    fig.suptitle("Distilled students: gain over their gold-label twin (error bars: paired bootstrap SE)", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    out = out_dir / "robustness.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"wrote {out}")
    return out


# ----------------------------------------------------------------------------- main
def int_list(values: list[str] | None) -> list[int]:
    out: list[int] = []
    for v in values or []:
        out += [int(x) for x in str(v).split(",") if x.strip()]
    return list(dict.fromkeys(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=sorted(SETS), help="the data set to run")
    parser.add_argument("--n-labeled", action="append", help="labeled-set size(s): repeatable and/or comma-separated")
    parser.add_argument("--n-unlabeled", type=int, default=4000, help="transfer texts (default: %(default)s)")
    parser.add_argument("--seed", action="append", help="seed(s), repeatable and/or comma-separated (default: 0)")
    parser.add_argument("--max-test", type=int, default=2000, help="cap on test texts (default: %(default)s)")
    parser.add_argument("--rows", default="all", help=f"comma-separated subset of {','.join(ROWS)} (default: all)")
    parser.add_argument("--teacher-params", default="{}", help="JSON of TransformerClassifier parameters")
    parser.add_argument("--static-params", default="{}", help="JSON of StaticEmbeddingClassifier parameters "
                        "for the static_* rows (default: its defaults)")
    parser.add_argument("--e5", default=None, help="multilingual-e5-small folder (default: $KDTEXT_E5)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="teacher-logit cache (default: %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="JSON / PNG folder (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=None, help="data root (default: $KDTEXT_DATA or ../shared/data)")
    parser.add_argument("--plot", action="store_true", help="draw robustness.png from every robustness_*.json")
    parser.add_argument("--table", action="store_true", help="print a markdown table per set from the JSON files")
    parser.add_argument("--summary", action="store_true", help="print one markdown row per set and size, targets checked")
    args = parser.parse_args()

    if args.set is None and not (args.plot or args.table or args.summary):
        parser.error("pass --set (to run), or --plot / --table / --summary (to report)")
    if args.set is not None:
        sizes = int_list(args.n_labeled)
        if not sizes:
            parser.error("--n-labeled is required with --set")
        seeds = int_list(args.seed) or [0]
        rows = ROWS if args.rows == "all" else [r.strip() for r in args.rows.split(",") if r.strip()]
        unknown = [r for r in rows if r not in ROWS]
        if unknown:
            parser.error(f"unknown rows {unknown}; choose from {ROWS}")
        try:
            params = json.loads(args.teacher_params)
            assert isinstance(params, dict)
        except (ValueError, AssertionError):
            parser.error(f"--teacher-params must be a JSON object, got {args.teacher_params!r}")
        root = data_dir(args.data)
        e5 = resolve_e5(args.e5) if SETS[args.set]["teacher"] == "e5" else None
        if SETS[args.set]["teacher"] == "e5" and e5 is None and "model" not in params and (NEEDS_TEACHER | NEEDS_BASE_MODEL) & set(rows):
            print(f"skipping {args.set}: its teacher needs a multilingual-e5-small folder and none was found (pass "
                  f"--e5 PATH or set $KDTEXT_E5; build one with `python ../shared/tools/build_multilingual_e5.py "
                  f"PATH`, see its header). The teacher-free rows run alone with --rows lr_twin,bilstm_twin.",
                  file=sys.stderr, flush=True)
            run_set = False
        else:
            run_set = True
        command = "python " + shlex.join(sys.argv)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        keys = set()
        for n in sizes if run_set else []:
            for seed in seeds:
                try:
                    done = run_one(args, args.set, n, seed, rows, root, command, e5)
                except Exception as exc:  # the split itself failed (e.g. n_labeled too large)
                    log(f"{args.set} n={n} seed={seed}: {type(exc).__name__}: {exc}; nothing recorded")
                    continue
                keys |= {row_key(r) for r in done}
        out_path = args.out_dir / f"robustness_{args.set}.json"
        if keys:
            print_run_table(read_results(out_path), keys)
            print(f"wrote {out_path}")
    if args.table:
        markdown_tables(args.out_dir)
    if args.summary:
        summary_table(args.out_dir)
    if args.plot:
        plot(args.out_dir)


if __name__ == "__main__":
    main()
