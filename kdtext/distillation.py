"""DistillationClassifier: a fitted teacher and (unlabeled) text in, a trained student out."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import time
import warnings
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, has_fit_parameter

from .base import (
    TextInputMixin,
    check_sample_weight,
    check_score_labels,
    check_texts,
    is_missing,
    is_soft_target_student,
    seed_from_random_state,
)
from ._stream import (
    _BLOCK,
    SCRATCH_MIN_BYTES,
    StreamedTexts,
    argsort_keys,
    distinct_keys,
    flatnonzero_blocks,
    scratch_array,
    scratch_range,
    stream_keys,
    take_rows,
    take_texts,
    text_keys,
)
from .exceptions import NotFittedTeacherError, TrainingInterruptedWarning, WeakTeacherWarning

logger = logging.getLogger(__name__)

__all__ = ["DistillationClassifier", "teacher_logits"]

#: At most this many gold labels go into the teacher report's TF-IDF + LR baseline.
_REPORT_MAX_GOLD = 10_000

#: Teacher outputs above this size (bytes) are kept in a memory-mapped file.
MEMMAP_THRESHOLD = 256 * 2**20
#: augment="auto": grow a small transfer set with Tang et al.'s variants to about this many texts ...
AUGMENT_TARGET = 25_000
#: ... with at most this many variants per text (the setting measured in benchmarks/robustness.py)
AUGMENT_MAX = 4


def teacher_logits(teacher: Any, texts: list[str]) -> np.ndarray:
    """Logit-like scores of any fitted classifier, shape (n_texts, n_classes).

    Uses, in this order: ``predict_logits`` (kdtext's neural classifiers),
    ``predict_proba`` (as log-probabilities, centred per row), or
    ``decision_function`` (a binary margin ``d`` becomes ``[-d/2, d/2]``).
    Softmax of the result gives the teacher's probabilities in each case.
    """
    if hasattr(teacher, "predict_logits"):
        out = np.asarray(teacher.predict_logits(texts), dtype=np.float32)
    elif hasattr(teacher, "predict_proba"):
        logp = np.log(np.clip(np.asarray(teacher.predict_proba(texts), dtype=np.float64), 1e-12, None))
        out = (logp - logp.mean(axis=1, keepdims=True)).astype(np.float32)
    else:
        d = np.asarray(teacher.decision_function(texts), dtype=np.float32)
        out = np.stack([-d / 2, d / 2], axis=1) if d.ndim == 1 else d
    return out


def _softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def _text_key(text: str) -> bytes:
    # surrogatepass: a str with lone surrogates (e.g. decoded with errors="surrogateescape") still has a key
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _key_prefix(keys: np.ndarray) -> np.ndarray:
    """The first 8 bytes of ``S16`` keys as integers, ordered as the keys' bytes (big-endian)."""
    raw = np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), 16)
    return np.ascontiguousarray(raw[:, :8]).view(">u8").reshape(len(keys)).astype(np.uint64)


class _TeacherCache:
    """Teacher outputs cached on disk by text content, per teacher fingerprint.

    Each fit that labels new texts appends one shard (``.npz`` with 16-byte
    text hashes and float32 logits), written atomically, so concurrent fits
    (``GridSearchCV(n_jobs=...)``) never see half a file.
    """

    def __init__(self, location: str | os.PathLike, fingerprint: str):
        self.folder = Path(location) / "kdtext_teacher_cache" / fingerprint
        self.folder.mkdir(parents=True, exist_ok=True)

    def _shards(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(keys, logits)`` of each readable shard, in file-name order: ``S16`` keys, float32 logits.

        A damaged shard is skipped with a warning (its texts are labeled again)."""
        for shard in sorted(self.folder.glob("*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, values = data["keys"], np.asarray(data["logits"], dtype=np.float32)
                # raw 16-byte rows: reading "S16" items one by one would strip trailing NUL bytes
                raw = np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), 16)
                if values.ndim != 2 or len(values) != len(raw):
                    raise ValueError(f"{len(raw)} keys but logits of shape {values.shape}")
            except Exception as exc:
                warnings.warn(
                    f"The teacher cache shard {shard} is damaged ({type(exc).__name__}: {exc}) and was skipped: "
                    "its texts are labeled again. Delete the file to silence this warning.",
                    UserWarning,
                    stacklevel=5,
                )
                continue
            yield raw.view("S16").reshape(len(raw)), values

    def load(self) -> dict[bytes, np.ndarray]:
        """Every cached ``key -> logits`` as a dict (one Python object per text: small caches and tests only;
        fitting uses :meth:`lookup`)."""
        table: dict[bytes, np.ndarray] = {}
        for keys, values in self._shards():
            for k, v in zip(keys.view(np.uint8).reshape(len(keys), 16), values):
                table[k.tobytes()] = v
        return table

    def lookup(self, keys: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fill ``out[i]`` with the cached logits of ``keys[i]`` (distinct ``S16`` keys); return the hit mask.

        Arrays only, never a table of all entries: the wanted keys are sorted
        once (:func:`~kdtext._stream.argsort_keys`; for many keys the sorted
        copy lives in memory-mapped scratch files), then each shard's keys are found among them with
        ``searchsorted`` (on their first 8 bytes as an integer, exact 16-byte
        equality checked), one shard in memory at a time. Where several shards
        hold a key, the last in file-name order wins, as in :meth:`load`.
        """
        n = len(keys)
        hit = scratch_array(n, bool, fill=False)
        if n == 0:
            return hit
        order = argsort_keys(keys)  # bounded memory: sorted by buckets, in scratch files when large
        ordered = take_rows(keys, order)
        prefix = scratch_array(n, np.uint64)  # non-decreasing, as the keys' byte order
        for s in range(0, n, _BLOCK):
            prefix[s : s + _BLOCK] = _key_prefix(ordered[s : s + _BLOCK])
        for shard_keys, values in self._shards():
            if len(shard_keys) == 0:
                continue
            pos = np.minimum(np.searchsorted(prefix, _key_prefix(shard_keys)), n - 1)
            found = ordered[pos] == shard_keys
            retry = ~found & (prefix[pos] == _key_prefix(shard_keys))  # two wanted keys share 8 bytes: exact search
            if retry.any():
                exact = np.minimum(np.searchsorted(ordered, shard_keys[retry]), n - 1)
                pos[retry] = exact
                found[retry] = ordered[exact] == shard_keys[retry]
            rows = order[pos[found]]
            out[rows] = values[found]
            hit[rows] = True
        return hit

    def store(self, keys: list[bytes] | np.ndarray, logits: np.ndarray, name: str | None = None) -> None:
        """Write one shard atomically; ``name`` (e.g. kdtext.labeling's shard id) makes its file name deterministic.

        ``keys``: 16-byte ``bytes`` or an ``S16`` array."""
        if len(keys) == 0:
            return
        if isinstance(keys, np.ndarray):
            arr = np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), 16)
        else:
            arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        os.close(fd)
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=arr, logits=np.asarray(logits, dtype=np.float32))
        os.replace(tmp, self.folder / f"{name or f'{time.time_ns()}-{os.getpid()}'}.npz")


def teacher_fingerprint(teacher: Any) -> str:
    """A hash of a fitted teacher that names its outputs in the ``memory`` cache.

    The same for a teacher and its pickled copies, in any process: kdtext's
    neural estimators hash their weights, tokenizer, classes and parameters;
    other estimators are hashed with ``joblib.hash`` after one pickle round
    trip (``joblib.hash`` alone sees array memory layout, and e.g. a fitted
    LogisticRegression's ``coef_`` is a view that becomes a plain array once
    pickled, so copies sent to ``GridSearchCV(n_jobs=...)`` workers missed the
    cache). A :class:`sklearn.frozen.FrozenEstimator` is looked through.
    """
    import pickle

    import joblib

    inner = getattr(teacher, "estimator", None)
    if type(teacher).__name__ == "FrozenEstimator" and inner is not None:
        teacher = inner
    own = getattr(teacher, "_fingerprint", None)
    if callable(own):
        return own()
    copy = pickle.loads(pickle.dumps(teacher))
    _drop_volatile(copy, set())
    return joblib.hash(copy)


#: Fitted attributes that differ between processes for the same model: ``TfidfVectorizer`` & co. keep
#: ``id(stop_words)``, an address, so the same fit in another process would miss the ``memory`` cache.
_VOLATILE_ATTRIBUTES = ("_stop_words_id",)


def _drop_volatile(obj: Any, seen: set) -> None:
    """Reset :data:`_VOLATILE_ATTRIBUTES` in an estimator and the estimators it holds (a throwaway copy)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _drop_volatile(item, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            _drop_volatile(item, seen)
    elif isinstance(obj, BaseEstimator):
        for name in _VOLATILE_ATTRIBUTES:
            if name in vars(obj):
                setattr(obj, name, None)
        for item in vars(obj).values():
            if isinstance(item, (BaseEstimator, list, tuple, dict)):
                _drop_volatile(item, seen)


def _memory_location(memory: Any) -> str | None:
    if memory is None:
        return None
    if isinstance(memory, (str, os.PathLike)):
        return os.fspath(memory)
    location = getattr(memory, "location", None)
    if location is None:
        raise ValueError(
            "memory has no location (joblib.Memory(None) caches nothing); pass a folder or joblib.Memory('folder')."
        )
    return os.fspath(location)


def _teacher_checkpoint(teacher) -> str | None:
    """The model folder or hub id a fitted ``TransformerClassifier`` teacher was fine-tuned from; else None."""
    from .teachers import TransformerClassifier, resolve_model_path

    if not isinstance(teacher, TransformerClassifier):
        return None
    try:
        return resolve_model_path(teacher.model)
    except Exception as exc:  # e.g. a folder of another machine, for a teacher loaded with from_pretrained
        logger.warning("the teacher's checkpoint %r cannot be used here (%s)", teacher.model, exc)
        return None


def _bind_pretrained(student, teacher):
    """Resolve a student's ``pretrained="auto"`` to the teacher's checkpoint (or None); the student is a clone.

    A student with a ``pretrained`` parameter (:class:`~kdtext.BiLSTMClassifier`)
    set to ``"auto"`` starts from the tokenizer and static vectors of the
    checkpoint the teacher was fine-tuned from, when the teacher is a
    :class:`~kdtext.TransformerClassifier` and ``model2vec`` is
    installed (a kdtext dependency); otherwise it learns its own vocabulary
    (with a warning when only ``model2vec`` is missing).
    """
    params = student.get_params(deep=False) if hasattr(student, "get_params") else {}
    if not isinstance(params.get("pretrained"), str) or params["pretrained"] != "auto":
        return student
    checkpoint = _teacher_checkpoint(teacher)
    if checkpoint is not None:
        from .static import _require_model2vec

        try:
            _require_model2vec(type(student).__name__)
        except ImportError as exc:
            warnings.warn(
                f"{type(student).__name__}(pretrained='auto') would start from the teacher's vocabulary and "
                f"vectors: {exc} It learns its own vocabulary instead (set pretrained=None to silence this).",
                UserWarning,
                stacklevel=3,
            )
            checkpoint = None
    logger.info("%s: pretrained='auto' -> %r", type(student).__name__, checkpoint)
    return student.set_params(pretrained=checkpoint)


def _student_gives(kind: str):
    """available_if check: whether the fitted student route offers ``kind``."""

    def check(self) -> bool:
        if not hasattr(self, "student_"):
            student = self.student
            return hasattr(student, kind) or is_regressor(student)
        return self.target_ == "logits" or hasattr(self.student_, kind)

    return check


class _SharesTeacherMixin(TextInputMixin):
    """Clone keeps the fitted teacher object; text input tags. For the distillers."""

    def __sklearn_clone__(self):
        # The teacher is fitted and possibly huge: a clone shares it, never
        # refits or copies it (as sklearn.frozen.FrozenEstimator does).
        params = {k: clone(v, safe=False) for k, v in self.get_params(deep=False).items() if k != "teacher"}
        return type(self)(self.teacher, **params)


class DistillationClassifier(_SharesTeacherMixin, MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Distil a fitted teacher into any student, on labeled and unlabeled text.

    The teacher (any fitted classifier with ``predict_proba`` or
    ``decision_function``; a :class:`~kdtext.TransformerClassifier` above all)
    soft-labels each distinct transfer text once; the student then learns from
    those outputs by the route that suits it:

    - ``"soft"``: kdtext students (and any estimator with ``fit_soft``) learn
      the teacher's logits with ``loss`` ("kl" at ``temperature`` scaled by
      T^2, or "mse" on logits), mixed with cross-entropy on gold labels:
      ``alpha * CE(gold) + (1 - alpha) * soft``.
    - ``"logits"``: a regressor (or Pipeline ending in one, e.g. TF-IDF +
      Ridge) learns the teacher's logits; the prediction is their argmax.
      ``alpha`` is not used.
    - ``"hard"``: a classifier learns the teacher's labels, each weighted by the
      teacher's confidence when the classifier accepts ``sample_weight``;
      texts with gold labels add a row with the gold label weighted ``alpha``
      (teacher rows are then weighted ``1 - alpha``). The weights are then
      scaled to a total of one per distinct text, so the student's own
      regularisation (e.g. LogisticRegression's ``C``) means what it means
      on unweighted data, however unsure the teacher (raw confidences
      average 0.37 for a flat teacher). Raw, scaled and no weights measured
      level on five development sets (``benchmarks/robustness.py``).
    - ``"proba"``: a classifier that accepts ``sample_weight`` learns the
      teacher's full distribution: each text becomes one row per class,
      weighted by the teacher's probability at ``temperature`` (soft-label
      cross-entropy, exactly), plus gold rows as in "hard".

    ``target="auto"`` picks "soft" when the student has ``fit_soft``,
    "logits" for a regressor and "hard" for a classifier. "hard" is the
    classifier default because it measured best of the classifier routes on
    both benchmarks: TF-IDF + LogisticRegression on the teacher's labels
    against its full distribution ("proba") scored 0.808 vs 0.805 accuracy on
    SST-2 and F1 0.841 vs 0.817 on the Russian toxic comments, where TF-IDF +
    Ridge on logits reached 0.810 (``benchmarks/README.md``). On smaller
    sets "proba" can win (SST-2 with 5,000 texts: 0.759 against 0.736 for
    "hard" with the defaults);
    :class:`~kdtext.DistillationClassifierCV` tries both.

    Parameters
    ----------
    teacher : fitted classifier
        Used as is: never refitted, never copied (``clone`` of this estimator
        keeps the same teacher object). May be wrapped in
        :class:`sklearn.frozen.FrozenEstimator`.
    student : estimator
        Cloned and trained in ``fit``; the trained copy is ``student_``.
    target : {"auto", "soft", "logits", "proba", "hard"}, default="auto"
        How the student learns from the teacher (see above).
    loss : {"kl", "mse"}, default="kl"
        Soft loss of the "soft" route: "kl" is Hinton et al.'s KL divergence
        at ``temperature``, scaled by T^2; "mse" is Tang et al.'s squared error
        on logits (``temperature`` unused). The defaults (``"kl"``, T=2,
        ``alpha=0``) were chosen by ``benchmarks/robustness.py`` (issue 9):
        the default BiLSTM distilled from the default teacher on 1,000
        labeled + 4,000 unlabeled texts of five development sets, seed 0:

        ==========================  ======  =======  ======  =======
        set (metric)                kl, 0   mse, 0   kl, .5  mse, .5
        ==========================  ======  =======  ======  =======
        SST-2 (accuracy)            0.721   0.709    0.706   0.698
        Banking77 (accuracy)        0.736   0.623    0.603   0.487
        GoEmotions (macro-F1)       0.320   0.321    0.311   0.322
        ru_toxic (F1)               0.762   0.746    0.750   0.747
        GermEval 2018 (F1)          0.481   0.469    0.423   0.443
        ==========================  ======  =======  ======  =======

        (columns: loss, alpha; T=2). On 77 classes squared error over every
        logit wastes the student on the many irrelevant ones. Earlier, on
        the full SST-2 benchmark, kl at alpha=0 (0.827, ``alpha_sweep``) and
        mse (0.828) were level. :class:`~kdtext.DistillationClassifierCV`
        searches losses, alphas and temperatures on held-out gold labels.
    temperature : float, default=2.0
        Softmax temperature of the "kl" loss and of the "proba" route.
    alpha : float, default=0.0
        Weight of gold labels, where ``y`` has them: 0 learns from the
        teacher alone (on labeled texts too: a teacher fitted on them
        mostly repeats their labels), 1 from the gold labels alone (the
        hard-label twin on the labeled texts, plus the teacher's labels
        on the others for the "hard" and "proba" routes).
    hidden_loss : {"cosine", "mse"} or None, default=None
        Transformer students only (a :class:`~kdtext.TransformerClassifier`
        teacher and student sharing the teacher's tokenizer, e.g. a
        :func:`~kdtext.shrink_transformer` copy; a reduced vocabulary is
        fine): also match the student's hidden states to the teacher's at
        the mapped layers, position by position with padding left out:
        DistilBERT's cosine loss or TinyBERT's squared error. When the widths
        differ, a learned linear projection maps the student's states to the
        teacher's width (starting as the dims ``shrink_transformer`` sliced,
        when it narrowed the student), trained with the student and then
        dropped. The teacher then runs beside the student on every training
        batch (no gradients, the student's tokens, the teacher's device):
        each epoch costs one teacher forward pass over the training texts on
        top of the student's step, while the soft targets still come from the
        once-per-text cache. Validation scores the soft loss only.
    hidden_weight : float, default=1.0
        Weight of the hidden-state term (the mean over the mapped layers).
    hidden_layers : "auto", "last" or dict, default="auto"
        Which hidden states are compared (0 = embeddings, i = after layer
        i): "auto" maps the embeddings and every student layer to the teacher
        layer ``shrink_transformer`` copied it from (TinyBERT-style, uniform
        when unknown); "last" compares the last states only (DistilBERT); a
        dict ``{student_index: teacher_index}`` names the pairs.
    pooled_weight : float, default=0.0
        Weight of a squared distance between the L2-normalised sentence
        vectors (the [CLS] state or the masked mean, as each model's head
        reads) of student and teacher, as the Russian tutorial aligned them.
        Works with or without ``hidden_loss``; also runs the teacher beside
        the student.
    unlabeled_label : int, str or None, default=-1
        The value of ``y`` that marks a text without a gold label (as in
        :class:`sklearn.semi_supervised.SelfTrainingClassifier`). With string
        labels, pass e.g. ``unlabeled_label=None`` or ``""``.
    augment : int or "auto", default="auto"
        Number of augmented variants per text added to the transfer set
        (Tang et al. 2019: word masking, swapping words for others of the
        corpus, n-gram sampling). The teacher labels them as unlabeled text,
        so labeling costs ``1 + augment`` times as much. ``"auto"`` (the
        default): for a neural student (the "soft" route) on a transfer set of
        fewer than 25,000 texts in memory, as many variants per text as bring
        it to about 25,000, at most 4; otherwise none (a stream, a large
        transfer set, a scikit-learn student; ``augment_`` says how many).
        Chosen by ``benchmarks/robustness.py`` (six development sets, 250
        and 1,000 labeled texts + 4,000 unlabeled, the default BiLSTM student,
        4 variants per text against none): the student kept on average 97.8%
        of the teacher's metric instead of 93.8% over the eleven set/size
        pairs measured, and gained on all six sets at 1,000 labeled texts
        (SST-2 0.797 -> 0.802, IMDB 0.791 -> 0.800, Banking77 0.787 -> 0.822,
        GoEmotions macro-F1 0.414 -> 0.536, ru_toxic F1 0.812 -> 0.837,
        GermEval F1 0.551 -> 0.558) and on SST-2, GoEmotions and Banking77 at
        250 (0.755 -> 0.766, 0.207 -> 0.226, 0.545 -> 0.590). It lost at 250
        on the two imbalanced binary sets taught by a weak multilingual-e5
        teacher (ru_toxic F1 0.794 -> 0.788, GermEval 0.347 -> 0.315, one to
        1.3 standard errors); IMDB at 250 is not measured. The price: about
        4x the student's training time and 5x the teacher's labeling on a
        5,000-text transfer set; pass ``augment=0`` to skip it. For TF-IDF +
        LogisticRegression augmentation was mixed (SST-2 0.736 -> 0.755,
        GoEmotions 0.399 -> 0.451, GermEval 0.539 -> 0.581, Banking77 0.828
        -> 0.805, ru_toxic 0.787 -> 0.780), which is why "auto" leaves
        scikit-learn students alone.
    p_mask, p_swap, p_ngram : float, default=0.1, 0.1, 0.25
        Probabilities of the augmentation operations.
    memory : str, path-like, joblib.Memory or None, default=None
        Folder where teacher outputs are cached by text content across fits,
        so a grid search over student parameters runs the teacher once per
        distinct text in total.
    chunk_size : int, default=8192
        Texts per call to the teacher.
    stream : {"auto", True, False}, default="auto"
        Whether ``fit`` streams a transfer set of files, so that the texts
        are never held in memory (measured with a BiLSTM student: about 200
        MB more per million texts, against 550 in memory; not yet flat, see
        ``docs/scaling.rst``): the
        :class:`~kdtext.TextFiles` are read several times, chunk by chunk
        (hashing and de-duplicating by 16-byte keys with numpy, looking the
        keys up in ``memory`` shard by shard, labeling what is missing,
        training the student on a disk-backed token store, predicting for
        ``fidelity_``), and never held at once; per text only numpy arrays
        remain (a key, indices, labels, and the float32 teacher outputs,
        memory-mapped when large). Needs a student that streams, and
        ``augment`` 0 or "auto" (which adds nothing to a stream): kdtext's :class:`~kdtext.BiLSTMClassifier` and
        :class:`~kdtext.TransformerClassifier` on the "soft" route (the same
        student as in memory, bit for bit on a CPU; ``docs/scaling.rst``),
        or a scikit-learn Pipeline of stateless steps and a final estimator
        with ``partial_fit`` on the other routes, e.g.
        ``make_pipeline(HashingVectorizer(), SGDClassifier(loss="log_loss"))``:
        its steps transform each chunk and the final estimator learns it by
        ``partial_fit``, ``stream_epochs`` passes, with the rows and weights
        of the in-memory route, shuffled within each chunk (not across: shuffle
        files that are sorted by label). In memory the same student learns by
        its own ``fit`` instead. A TfidfVectorizer, which learns its
        vocabulary from all texts, does not stream. "auto": stream when ``X``
        is a ``TextFiles`` and those hold; otherwise read ``X`` into memory as
        a list (a log line at INFO says why). True: stream or raise an error
        saying why not. False: always in memory. Do not change the files
        during ``fit``.
    stream_epochs : int, default=5
        Passes of ``partial_fit`` over a streamed transfer set, for a
        scikit-learn student that streams (see ``stream``); unused otherwise.
        Five: ``benchmarks/robustness.py`` (rows ``sgd_stream_e*``,
        ``HashingVectorizer`` + ``SGDClassifier(loss="log_loss")`` on 5,000
        texts, 1,000 of them labeled) found the streamed student within one
        standard error of the same student fitted in memory from 3 passes on
        SST-2, IMDB, GoEmotions, ru_toxic and GermEval, and on Banking77 (77
        classes) 1.0 point under it at 5 passes and level at 10 (0.747,
        0.757; SE 0.013).
        Larger transfer sets need fewer passes; each costs one read of the
        files.
    random_state : int, RandomState instance or None, default=None
        Seeds augmentation; passed to nothing else (students have their own).
    report : bool, default=True
        After fitting, compare the teacher with a quick baseline on the gold
        labels of ``y`` and store ``teacher_report_``; warn
        (:class:`~kdtext.exceptions.WeakTeacherWarning`) when the teacher is
        no better than TF-IDF + LogisticRegression there. Needs at least 20
        gold labels and 3 of every class; costs a 3-fold TF-IDF + LR fit on
        at most 10,000 of them. A baseline that cannot be fitted (e.g. an
        empty vocabulary) is noted in the report, never an error.
    verbose : int, default=0
        Progress bars while the teacher labels text.

    Attributes
    ----------
    student_ : estimator
        The trained student, usable on its own.
    teacher_ : estimator
        The teacher (the object that was given).
    classes_ : ndarray of shape (n_classes,)
        The teacher's classes.
    target_ : str
        The route used.
    teacher_logits_ : ndarray of shape (n_transfer, n_classes)
        Teacher outputs on the distinct transfer texts (memory-mapped when large).
    n_transfer_ : int
        Distinct texts in the transfer set.
    n_teacher_calls_ : int
        Texts the teacher labeled during this fit (0 when all came from ``memory``).
    fidelity_ : float
        Share of transfer texts on which student and teacher agree.
    history_ : list of dict
        The student's ``history_`` where it has one.
    teacher_report_ : dict
        How the teacher did: ``teacher_mean_confidence`` (mean top-class
        probability on the transfer set), ``fidelity``, ``n_gold``; where
        ``y`` has gold labels, ``teacher_gold_accuracy`` and
        ``student_gold_accuracy`` on them (optimistic for the teacher when it
        was trained on them) and, with ``report=True``,
        ``baseline_cv_accuracy`` of a quick TF-IDF + LogisticRegression.
    interrupted_ : bool
        Whether the student's training was stopped by ``KeyboardInterrupt``
        after at least one epoch (its best weights so far were kept). Earlier
        interrupts re-raise and leave this estimator as it was.
    streamed_ : bool
        Whether ``fit`` streamed the transfer set (see ``stream``).
    augment_ : int
        Augmented variants per text that ``fit`` added (``augment``, or what
        "auto" resolved to).

    Examples
    --------
    >>> from sklearn.feature_extraction.text import TfidfVectorizer
    >>> from sklearn.linear_model import LogisticRegression, Ridge
    >>> from sklearn.pipeline import make_pipeline
    >>> from kdtext import DistillationClassifier
    >>> X = ["good film", "bad film", "great plot", "awful plot", "good plot", "bad acting"] * 5
    >>> y = [1, 0, 1, 0, 1, 0] * 5
    >>> teacher = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, y)
    >>> kd = DistillationClassifier(teacher, make_pipeline(TfidfVectorizer(), Ridge()))
    >>> kd.fit(X + ["great acting", "awful film"]).predict(["good acting"])
    array([1])
    >>> kd.target_
    'logits'

    Labeling with an int8 teacher: a large transfer set is labeled faster on a
    CPU by an int8 copy of a fitted :class:`~kdtext.TransformerClassifier`
    (or BiLSTM) teacher, at a small cost in agreement with it: for a MiniLM
    teacher fine-tuned on SST-2, 1.61x the texts/s of torch fp32 on an idle
    2-vCPU machine (1.47x on one thread), 98.3% argmax agreement, accuracy
    level (``benchmarks/int8_sensitivity.py``; see "int8 inference for a
    teacher" in the ONNX docs and ``benchmarks/teacher_throughput.py`` for
    students distilled from its labels). ``int8_teacher`` uses onnxruntime's
    dynamic quantization of the ONNX export where onnxruntime is installed,
    torch's otherwise; the teacher itself is left as it was.
    ``int8_teacher(teacher_model, rescore_margin=0.3)`` re-labels with the
    fp32 teacher the texts the int8 model is unsure of (99.3% agreement on
    that SST-2 teacher, 3.6% of texts re-labeled; see
    :class:`~kdtext.quantization.MarginFallbackClassifier`); on an idle
    2-vCPU machine with AVX-512 VNNI that ran 2.05x torch fp32 (int8 alone
    2.41x), accuracy level. On a CPU without VNNI (AVX2 only) int8 measured
    no faster than fp32.

    >>> from kdtext.quantization import int8_teacher
    >>> fast = int8_teacher(teacher_model)  # doctest: +SKIP
    >>> kd = DistillationClassifier(fast, student).fit(unlabeled_texts)  # doctest: +SKIP

    The same with a kept folder:
    ``OnnxClassifier.from_pretrained(teacher_model.export_onnx("teacher-int8", quantize="int8"))``.
    """

    _parameter_constraints: dict = {
        "teacher": [HasMethods(["predict"])],
        "student": [HasMethods(["fit", "predict"])],
        "target": [StrOptions({"auto", "soft", "logits", "proba", "hard"})],
        "loss": [StrOptions({"kl", "mse"})],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, 1, closed="both")],
        "hidden_loss": [None, StrOptions({"cosine", "mse"})],
        "hidden_weight": [Interval(Real, 0, None, closed="left")],
        "hidden_layers": [StrOptions({"auto", "last"}), dict],
        "pooled_weight": [Interval(Real, 0, None, closed="left")],
        "unlabeled_label": "no_validation",
        "augment": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "p_mask": [Interval(Real, 0, 1, closed="both")],
        "p_swap": [Interval(Real, 0, 1, closed="both")],
        "p_ngram": [Interval(Real, 0, 1, closed="both")],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "stream": ["boolean", StrOptions({"auto"})],
        "stream_epochs": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "report": ["boolean"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        teacher: Any,
        student: Any,
        *,
        target: str = "auto",
        loss: str = "kl",
        temperature: float = 2.0,
        alpha: float = 0.0,
        hidden_loss: str | None = None,
        hidden_weight: float = 1.0,
        hidden_layers: Any = "auto",
        pooled_weight: float = 0.0,
        unlabeled_label: Any = -1,
        augment: int | str = "auto",
        p_mask: float = 0.1,
        p_swap: float = 0.1,
        p_ngram: float = 0.25,
        memory: Any = None,
        chunk_size: int = 8192,
        stream: bool | str = "auto",
        stream_epochs: int = 5,
        random_state: Any = None,
        report: bool = True,
        verbose: int = 0,
    ):
        self.teacher = teacher
        self.student = student
        self.target = target
        self.loss = loss
        self.temperature = temperature
        self.alpha = alpha
        self.hidden_loss = hidden_loss
        self.hidden_weight = hidden_weight
        self.hidden_layers = hidden_layers
        self.pooled_weight = pooled_weight
        self.unlabeled_label = unlabeled_label
        self.augment = augment
        self.p_mask = p_mask
        self.p_swap = p_swap
        self.p_ngram = p_ngram
        self.memory = memory
        self.chunk_size = chunk_size
        self.stream = stream
        self.stream_epochs = stream_epochs
        self.random_state = random_state
        self.report = report
        self.verbose = verbose

    # ------------------------------------------------------------ checks
    def _check_teacher(self):
        teacher = self.teacher
        if not any(hasattr(teacher, m) for m in ("predict_logits", "predict_proba", "decision_function")):
            raise TypeError(
                f"The teacher {type(teacher).__name__} has neither predict_proba nor decision_function, so it "
                "gives no soft labels. Use a probabilistic classifier (e.g. TransformerClassifier, "
                "LogisticRegression) or wrap it in sklearn.calibration.CalibratedClassifierCV."
            )
        try:
            check_is_fitted(teacher)
        except NotFittedError as exc:
            raise NotFittedTeacherError(
                f"The teacher {type(teacher).__name__} is not fitted. DistillationClassifier uses a fitted "
                "teacher as is: call teacher.fit(X_labeled, y_labeled) first (or load one, e.g. "
                "TransformerClassifier.from_pretrained(folder))."
            ) from exc
        classes = getattr(teacher, "classes_", None)
        if classes is None:
            raise TypeError(f"The teacher {type(teacher).__name__} has no classes_; it must be a fitted classifier.")
        return teacher, np.asarray(classes)

    def _split_labels(self, y, n: int, classes: np.ndarray) -> np.ndarray:
        """Gold class index per text, -1 where unlabeled."""
        if y is None:
            return np.full(n, -1, dtype=np.int64)
        if isinstance(y, (str, bytes)):
            raise TypeError(f"y must be a list-like of labels, got a single string {y!r}.")
        y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y, dtype=None)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y.shape}.")
        if len(y) != n:
            raise ValueError(f"X and y have different lengths: {n} texts but {len(y)} labels. Pass one label per text.")
        marker = self.unlabeled_label
        if marker in set(classes.tolist()):
            raise ValueError(
                f"unlabeled_label={marker!r} is also one of the teacher's classes {classes.tolist()}; "
                "choose a marker that is not a class, e.g. unlabeled_label=None."
            )
        if y.dtype.kind in "US" and isinstance(marker, (int, np.integer)) and str(marker) in set(y.tolist()):
            raise ValueError(
                f"y holds the string {str(marker)!r} but unlabeled_label is the integer {marker!r}: it is ambiguous "
                f"whether those texts are unlabeled. Pass unlabeled_label={str(marker)!r} if they are."
            )
        if marker is not None and y.dtype == object and any(v is None for v in y):
            raise ValueError(
                f"y holds None, but unlabeled_label={marker!r}. If None marks unlabeled texts, pass unlabeled_label=None."
            )
        labeled = ~self._unlabeled_mask(y)
        if labeled.any():
            from sklearn.utils.multiclass import type_of_target

            gold = y[labeled]
            if gold.dtype == object:
                kinds = {"str" if isinstance(v, str) else type(v).__name__ for v in gold}
                if "str" in kinds and len(kinds) > 1:
                    raise TypeError(
                        f"y mixes label types among its labeled texts: {sorted(kinds)}. Use the teacher's label "
                        f"type for all of them (classes {classes.tolist()[:5]}) and unlabeled_label={marker!r} "
                        "for texts without a label."
                    )
            elif gold.dtype.kind == "f" and type_of_target(gold) == "continuous":
                raise ValueError(
                    "Unknown label type: continuous. y holds non-integer numbers, but a classifier needs class "
                    f"labels (the teacher's classes are {classes.tolist()[:5]}); for a regression target use a "
                    "regressor."
                )
        if labeled.any() and y.dtype.kind in "iuf" and classes.dtype.kind in "US":
            raise ValueError(f"y holds numbers but the teacher's classes are strings {classes.tolist()}.")
        index = {c: i for i, c in enumerate(classes.tolist())}
        y_idx = np.full(n, -1, dtype=np.int64)
        unknown = []
        for i in np.flatnonzero(labeled):
            v = y[i].item() if hasattr(y[i], "item") else y[i]
            k = index.get(v)
            if k is None:
                unknown.append(v)
            else:
                y_idx[i] = k
        if unknown:
            raise ValueError(
                f"y holds labels the teacher does not know: {sorted(set(map(str, unknown)))[:5]}; the teacher's "
                f"classes are {classes.tolist()}. Mark unlabeled texts with unlabeled_label={marker!r} and "
                "use the teacher's label values."
            )
        return y_idx

    def _unlabeled_mask(self, y: np.ndarray) -> np.ndarray:
        """Where ``y`` holds ``unlabeled_label`` (None also matches NaN)."""
        marker = self.unlabeled_label
        if marker is None:
            return np.array([is_missing(v) for v in y], dtype=bool)
        if y.dtype.kind in "US" and not isinstance(marker, str):
            return np.zeros(len(y), dtype=bool)  # an int marker never equals a string label
        return np.asarray(y == marker, dtype=bool)

    def _resolve_target(self, student) -> str:
        if self.target != "auto":
            route = self.target
        elif is_soft_target_student(student):
            route = "soft"
        elif is_regressor(student):
            route = "logits"
        elif is_classifier(student):
            route = "hard"
        else:
            raise TypeError(
                f"Cannot tell how to train the student {type(student).__name__}: it is neither a classifier, a "
                "regressor, nor has fit_soft. Pass target='logits' or target='hard' explicitly."
            )
        if route == "soft" and not is_soft_target_student(student):
            raise TypeError(f"target='soft' needs a student with fit_soft; {type(student).__name__} has none.")
        if route == "proba" and _sample_weight_key(student) is None:
            raise TypeError(
                f"target='proba' needs a student whose fit accepts sample_weight; {type(student).__name__} does not."
            )
        return route

    # ------------------------------------------------------------ teacher
    def _label(self, teacher, texts, n_classes: int, keys: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Teacher logits for distinct texts (from the cache where possible, else in chunks) and how
        many texts the teacher labeled. Each finished chunk is stored in ``memory`` at once, so a fit
        killed while labeling keeps the chunks it finished.

        ``texts``: a list, or a :class:`~kdtext._stream.StreamedTexts` read chunk by chunk (then pass its
        ``keys``, the ``S16`` text keys, computed while de-duplicating)."""
        n = len(texts)
        streamed = isinstance(texts, StreamedTexts)  # a stream keeps every per-text array out of memory
        min_bytes = SCRATCH_MIN_BYTES if streamed else MEMMAP_THRESHOLD + 1
        out = scratch_array((n, n_classes), np.float32, min_bytes=min_bytes)
        if isinstance(out, np.memmap):
            logger.info("teacher outputs for %d texts memory-mapped in a temporary file", n)
        cache = None
        location = _memory_location(self.memory)
        if location is None:
            todo = scratch_range(n, min_bytes=min_bytes)  # no cache: the teacher labels every text
        else:
            cache = _TeacherCache(location, teacher_fingerprint(teacher))
            if keys is None:
                keys = text_keys(texts)
            hit = cache.lookup(keys, out)
            n_hits = 0
            for start in range(0, n, _BLOCK):  # older shards too; in blocks, no copy of all hits
                rows = np.flatnonzero(hit[start : start + _BLOCK]) + start
                _check_finite_outputs(teacher, out[rows], _Rows(texts, rows))
                n_hits += len(rows)
            todo = flatnonzero_blocks(hit, invert=True)
            logger.info("teacher cache: %d of %d texts cached", n_hits, n)
        pbar = None
        if self.verbose and len(todo):
            from tqdm.auto import tqdm

            pbar = tqdm(total=len(todo), desc="teacher", unit="text", leave=False)
        for idx, chunk in _runs_of(texts, todo, self.chunk_size):
            with np.errstate(over="ignore", invalid="ignore"):
                logits = teacher_logits(teacher, chunk)
            if logits.shape != (len(idx), n_classes):
                raise ValueError(
                    f"The teacher {type(teacher).__name__} returned outputs of shape {logits.shape} for "
                    f"{len(idx)} texts and {n_classes} classes."
                )
            _check_finite_outputs(teacher, logits, chunk)
            out[idx] = logits
            if cache is not None:
                cache.store(keys[idx], logits)
            if pbar is not None:
                pbar.update(len(idx))
        if pbar is not None:
            pbar.close()
        return out, int(len(todo))

    def _n_variants(self, n_texts: int, route: str) -> int:
        """Augmented variants per text: ``augment``, or what "auto" gives for this transfer set and route."""
        if self.augment != "auto":
            return int(self.augment)
        if route != "soft" or n_texts >= AUGMENT_TARGET:
            return 0
        return min(AUGMENT_MAX, math.ceil(AUGMENT_TARGET / max(n_texts, 1)) - 1)

    # ------------------------------------------------------------- streaming
    def _streaming(self, X, student, route: str) -> bool:
        """Whether ``fit`` streams ``X``; with ``stream=True`` a reason it cannot is an error saying what to do."""
        from .labeling import TextFiles

        if self.stream is False:
            return False
        is_files = isinstance(X, TextFiles)
        if not is_files and self.stream == "auto":
            return False
        blocker = None
        if not is_files:
            blocker = (
                f"X is a {type(X).__name__}: a streaming fit reads its transfer set several times, chunk by chunk, "
                "and only a kdtext.TextFiles can be read again in a fixed order. Pass TextFiles(paths) (write the "
                "texts to Parquet, CSV or text files first), or stream='auto' to fit on X in memory."
            )
        elif (route != "soft" and _partial_fit_blocker(student) is not None) or (
                route == "soft" and not getattr(student, "_streams_transfer_set", False)):
            # streams: kdtext's neural students on "soft"; on the other routes a scikit-learn student of stateless
            # steps and a final partial_fit, which learns chunk by chunk
            if route != "soft" and not hasattr(student, "fit_soft"):
                why = (f"the student {type(student).__name__} on the {route!r} route cannot learn chunk by chunk: "
                       f"{_partial_fit_blocker(student)}")
            else:
                why = f"the student {type(student).__name__} on the {route!r} route takes all its texts in memory at once"
            blocker = (
                f"{why}, so it cannot learn from a stream of texts. Either read the corpus into memory, "
                "fit(list(TextFiles(...))) or stream=False, if its texts fit in memory, or use a student that "
                "streams: BiLSTMClassifier or TransformerClassifier (target='soft'), or a scikit-learn Pipeline of "
                "stateless steps and a final estimator with partial_fit, e.g. make_pipeline(HashingVectorizer(), "
                "SGDClassifier(loss='log_loss'))."
            )
        elif self.augment not in (0, "auto"):  # "auto" augments nothing on a stream
            blocker = (
                f"augment={self.augment} draws replacement words from the whole transfer set held in memory, so it "
                "does not stream. Augment a sample in memory (kdtext.augment.augment_texts on a list) and add the "
                "variants to the TextFiles as one more file, or pass augment=0."
            )
        if blocker is None:
            return True
        if self.stream is True:
            raise TypeError(f"DistillationClassifier(stream=True) cannot stream this fit: {blocker}")
        logger.info("DistillationClassifier: TextFiles read into memory (stream='auto'): %s", blocker)
        return False

    def _stream_transfer(self, X, y, classes: np.ndarray):
        """Hash, de-duplicate and check labels of a streamed transfer set: ``(distinct, keys, gold)``.

        One pass over ``X``: per text only numpy bytes (a 16-byte key; the
        positions of the distinct texts, their keys and labels), in
        memory-mapped scratch files when large (``kdtext._stream``), never a
        Python object; de-duplicated by a bucket sort in bounded memory. ``y``
        (the caller's array, one label per text) is the only per-text array
        held in memory."""
        keys = stream_keys(X.iter_chunks())
        n = len(keys)
        if n == 0:
            raise ValueError(f"X is empty: {X!r} holds no texts; at least one text is required.")
        y_idx = None if y is None else self._split_labels(y, n, classes)
        first, gold = distinct_keys(keys, y_idx)
        keys = take_rows(keys, first)
        logger.info("streamed transfer set: %d texts, %d distinct", n, len(first))
        return StreamedTexts(X, first), keys, gold

    # ---------------------------------------------------------------- fit
    def fit(self, X: Iterable[str], y=None):
        """Soft-label the transfer set with the teacher and train the student.

        Parameters
        ----------
        X : iterable of str or TextFiles
            The transfer set: labeled and unlabeled texts (a generator works).
            A :class:`~kdtext.TextFiles` is streamed (see ``stream``).
        y : array-like of shape (n_samples,), default=None
            Gold labels, ``unlabeled_label`` (default -1) where a text has none.
            None: every text is unlabeled.

        Returns
        -------
        self : object
        """
        self._validate_params()
        teacher, classes = self._check_teacher()
        student = target = hidden = None
        streaming = False
        if self.stream is True or (self.stream == "auto" and _is_text_files(X)):
            student = _bind_pretrained(clone(self.student), teacher)
            target = self._resolve_target(student)
            hidden = self._hidden_target(teacher, student, target)
            streaming = self._streaming(X, student, target)
        # everything below builds the new state in locals; ``self`` changes only at the end
        n_variants = 0
        if streaming:
            distinct, keys, gold = self._stream_transfer(X, y, classes)
            t0 = time.perf_counter()
            logits, n_calls = self._label(teacher, distinct, len(classes), keys)
            del keys
        else:
            texts = check_texts(X)  # any iterable of str, generators included
            y_idx = self._split_labels(y, len(texts), classes)
            if student is None:
                student = _bind_pretrained(clone(self.student), teacher)
                target = self._resolve_target(student)
                hidden = self._hidden_target(teacher, student, target)

            n_variants = self._n_variants(len(texts), target)
            if n_variants:
                from .augment import augment_texts

                variants = augment_texts(
                    texts, n_variants, p_mask=self.p_mask, p_swap=self.p_swap, p_ngram=self.p_ngram,
                    random_state=seed_from_random_state(self.random_state),
                )
                texts = texts + variants
                y_idx = np.concatenate([y_idx, np.full(len(variants), -1, dtype=np.int64)])

            # the teacher sees each distinct text once
            position = {}
            for t in texts:
                position.setdefault(t, len(position))
            distinct = list(position)
            inverse = np.fromiter((position[t] for t in texts), dtype=np.int64, count=len(texts))
            t0 = time.perf_counter()
            logits, n_calls = self._label(teacher, distinct, len(classes))

            # one row per distinct text; a gold label (if any occurrence has one) is kept
            gold = np.full(len(distinct), -1, dtype=np.int64)
            has_gold = y_idx >= 0
            gold[inverse[has_gold]] = y_idx[has_gold]
        logger.info("teacher labeled %d texts in %.1fs", n_calls, time.perf_counter() - t0)
        with warnings.catch_warnings():
            # the student's own interrupt warning becomes this estimator's (below), once; others pass live
            warnings.filterwarnings("ignore", category=TrainingInterruptedWarning)
            fitted = self._fit_student(student, target, distinct, np.asarray(logits), gold, classes, hidden)
        interrupted = bool(getattr(fitted, "interrupted_", False))
        if interrupted:
            warnings.warn(
                "DistillationClassifier: the student's training was interrupted after "
                f"{getattr(fitted, 'n_iter_', '?')} epoch(s) and kept its best weights so far (epoch "
                f"{getattr(fitted, 'best_epoch_', '?')}). Fit again to train it fully (with the student's "
                "checkpoint_dir to resume).",
                TrainingInterruptedWarning,
                stacklevel=2,
            )

        fidelity, gold_pred = _agreement(fitted, target, classes, distinct, logits, gold)
        report = self._teacher_report(teacher, distinct, logits, gold, classes, gold_pred, fidelity)

        # success: assign the new state
        self.teacher_ = teacher
        self.classes_ = classes
        self.target_ = target
        self.teacher_logits_ = logits
        self.n_transfer_ = len(distinct)
        self.n_teacher_calls_ = n_calls
        self.student_ = fitted
        self.fidelity_ = fidelity
        self.teacher_report_ = report
        self.interrupted_ = interrupted
        self.streamed_ = streaming
        self.augment_ = n_variants
        if hasattr(fitted, "history_"):
            self.history_ = fitted.history_
        elif hasattr(self, "history_"):  # a refit with a student that keeps none: no stale history
            del self.history_
        return self

    def _teacher_report(self, teacher, texts, logits, gold, classes, gold_pred, fidelity) -> dict:
        """How the teacher did: confidence, agreement with the gold labels, against a quick baseline.

        ``gold_pred``: the student's class indices for the gold-labeled texts, in order (:func:`_agreement`).
        Block by block over the texts: nothing per text is kept but the labeled ones' indices."""
        blocks = range(0, len(logits), 65536)
        top_sum = sum(float(_softmax(np.asarray(logits[i : i + 65536])).max(axis=1).sum(dtype=np.float64))
                      for i in blocks)
        labeled = np.concatenate([np.flatnonzero(np.asarray(gold[i : i + 65536]) >= 0) + i for i in blocks])
        report = {
            "n_transfer": len(texts),
            "teacher_mean_confidence": top_sum / max(len(logits), 1),
            "fidelity": fidelity,
            "n_gold": len(labeled),
        }
        if not self.report or len(labeled) == 0:
            return report
        g = np.asarray(gold[labeled])
        report["teacher_gold_accuracy"] = float(np.mean(np.argmax(logits[labeled], axis=1) == g))
        report["student_gold_accuracy"] = float(np.mean(gold_pred == g))
        counts = np.bincount(g)
        if len(labeled) < 20 or len(np.unique(g)) < 2 or counts[counts > 0].min() < 3:
            return report
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_predict
        from sklearn.pipeline import make_pipeline

        if len(labeled) > _REPORT_MAX_GOLD:  # a fixed random subset keeps the check to seconds
            keep = np.sort(np.random.default_rng(0).choice(len(labeled), _REPORT_MAX_GOLD, replace=False))
            labeled, g = labeled[keep], g[keep]
            report["teacher_gold_accuracy_subset"] = float(np.mean(np.argmax(logits[labeled], axis=1) == g))
        baseline = make_pipeline(TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1),
                                 LogisticRegression(C=10.0, max_iter=1000))
        gold_texts = list(take_texts(texts, labeled))  # at most _REPORT_MAX_GOLD, also from a stream
        try:
            pred = cross_val_predict(baseline, gold_texts, g, cv=3)
        except ValueError as exc:  # e.g. an empty vocabulary (emoji-only texts): no baseline, never a failed fit
            report["baseline_error"] = f"{type(exc).__name__}: {exc}"
            return report
        report["baseline_cv_accuracy"] = float(np.mean(pred == g))
        teacher_acc = report.get("teacher_gold_accuracy_subset", report["teacher_gold_accuracy"])
        report["baseline"] = "TF-IDF (1-2 grams) + LogisticRegression(C=10), 3-fold cross-validated on the gold labels"
        if teacher_acc <= report["baseline_cv_accuracy"]:
            warnings.warn(
                f"The teacher {type(teacher).__name__} agrees with {teacher_acc:.1%} of the "
                f"{len(labeled)} gold labels, no better than a quick TF-IDF + LogisticRegression cross-validated "
                f"on them ({report['baseline_cv_accuracy']:.1%}), although the teacher has probably seen them in "
                f"training; its mean confidence is {report['teacher_mean_confidence']:.2f}. The student can only be as "
                "good as its teacher: train the teacher longer (epochs='auto'), with pooling='mean' for sentence "
                "encoders, or use a stronger model. See teacher_report_.",
                WeakTeacherWarning,
                stacklevel=3,
            )
        return report

    def _hidden_target(self, teacher, student, route):
        """The hidden-state settings for the student's ``fit_soft``, checked before any labeling; None when off."""
        if self.hidden_loss is None and self.pooled_weight == 0:
            return None
        from .teachers import TransformerClassifier

        wanted = f"hidden_loss={self.hidden_loss!r}, pooled_weight={self.pooled_weight!r}"
        inner = teacher.estimator if type(teacher).__name__ == "FrozenEstimator" else teacher
        if not isinstance(inner, TransformerClassifier):
            raise TypeError(
                f"{wanted} matches a transformer student's hidden states to its teacher's, so the teacher must be "
                f"a fitted TransformerClassifier, not {type(inner).__name__}. Use hidden_loss=None, pooled_weight=0."
            )
        if not isinstance(student, TransformerClassifier) or route != "soft":
            raise TypeError(
                f"{wanted} needs a TransformerClassifier student on the 'soft' route; got "
                f"{type(student).__name__} on the {route!r} route. Use hidden_loss=None, pooled_weight=0 for other "
                "students."
            )
        from ._hidden import HiddenTarget

        return HiddenTarget(inner, loss=self.hidden_loss, weight=self.hidden_weight, layers=self.hidden_layers,
                            pooled_weight=self.pooled_weight)

    def _fit_student(self, student, route, texts, logits, gold, classes, hidden=None):
        if route == "soft":
            kw = {} if hidden is None else {"hidden": hidden}  # students of other libraries need not know it
            return student.fit_soft(
                texts, logits, gold, classes=classes, loss=self.loss, temperature=self.temperature, alpha=self.alpha,
                **kw,
            )
        if isinstance(texts, StreamedTexts):  # _streaming checked that the student learns by partial_fit
            return self._partial_fit_stream(student, route, texts, logits, gold, classes)
        if route == "logits":
            return student.fit(texts, logits)
        key = _sample_weight_key(student)
        rows, rows_y, rows_w = _route_rows(route, logits, gold, self.alpha, self.temperature)
        # Scale the weights to mean 1 per distinct text: confidence weights alone (mean 0.37 for a flat teacher) would
        # shrink the data term against the student's fixed regularisation (LogisticRegression's C).
        rows_w = rows_w * (len(texts) / rows_w.sum())
        keep = rows_w > 0
        rows_X = [texts[i] for i in rows[keep]]
        rows_y, rows_w = classes[rows_y[keep]], rows_w[keep]
        if key is None:
            if route == "hard" and not np.allclose(rows_w, rows_w[0]):
                logger.info("%s takes no sample_weight: teacher labels are used unweighted", type(student).__name__)
            return student.fit(rows_X, rows_y)
        return student.fit(rows_X, rows_y, **{key: rows_w})

    def _partial_fit_stream(self, student, route, texts, logits, gold, classes):
        """Train a scikit-learn student chunk by chunk: its stateless steps transform each chunk, its final
        estimator learns it by ``partial_fit``, ``stream_epochs`` passes over the stream.

        Each chunk gives the rows the in-memory route would give for its texts (teacher labels weighted by
        confidence, or one row per class weighted by the softened teacher distribution, or the logits; gold
        rows weighted by ``alpha``), with the weights scaled by the same global factor (mean 1 per distinct
        text), shuffled within the chunk."""
        front, final = _pipeline_parts(student)
        weighted = _accepts(final.partial_fit, "sample_weight")
        if route == "proba" and not weighted:
            raise TypeError(f"target='proba' needs sample weights, and {type(final).__name__}.partial_fit takes none; "
                            "use target='hard', or stream=False.")
        if route != "logits":  # the global scale of the in-memory route: mean weight 1 per distinct text
            total = sum(float(_route_rows(route, logits[i : i + 65536], gold[i : i + 65536], self.alpha,
                                          self.temperature)[2].sum()) for i in range(0, len(logits), 65536))
            scale = len(gold) / total
        if route == "hard" and not weighted:
            logger.info("%s.partial_fit takes no sample_weight: teacher labels are used unweighted",
                        type(final).__name__)
        rng = np.random.default_rng(seed_from_random_state(self.random_state))
        first = True
        for _ in range(self.stream_epochs):
            stop = 0
            for chunk in texts.iter_chunks():
                block = slice(stop, stop + len(chunk))
                stop = block.stop
                features = chunk
                for step in front:
                    if first:
                        step.fit(features)  # stateless: validates and sets n_features_in_, learns nothing
                    features = step.transform(features)
                lg = np.asarray(logits[block], dtype=np.float64)
                if route == "logits":
                    order = rng.permutation(len(chunk))
                    final.partial_fit(_take_rows(features, order), lg[order])
                    first = False
                    continue
                rows, labels, weights = _route_rows(route, lg, gold[block], self.alpha, self.temperature)
                keep = np.flatnonzero(weights > 0)
                keep = keep[rng.permutation(len(keep))]
                kw = {"sample_weight": weights[keep] * scale} if weighted else {}
                if first and is_classifier(final):
                    kw["classes"] = classes
                final.partial_fit(_take_rows(features, rows[keep]), classes[labels[keep]], **kw)
                first = False
        return student

    # ----------------------------------------------------------- predict
    def _student_indices(self, texts) -> np.ndarray:
        return _student_indices(self.student_, self.target_, self.classes_, texts)

    def _by_chunks(self, X, fn):
        """``fn(check_texts(X))``; for a :class:`~kdtext.TextFiles`, chunk by chunk, never all texts at once."""
        if not _is_text_files(X):
            return fn(check_texts(X))
        parts = [fn(chunk) for chunk in X.iter_chunks()]
        if not parts:
            raise ValueError(f"X is empty: {X!r} holds no texts; at least one text is required.")
        return np.concatenate(parts)

    def predict(self, X) -> np.ndarray:
        """Labels predicted by the student, from ``classes_`` (a TextFiles is read chunk by chunk)."""
        check_is_fitted(self, "student_")
        return self._by_chunks(X, lambda texts: self.classes_[self._student_indices(texts)])

    def _student_scores(self, texts) -> np.ndarray:
        """Student outputs aligned to ``classes_`` (logits route: predicted logits)."""
        if self.target_ == "logits":
            return np.asarray(self.student_.predict(texts), dtype=np.float64).reshape(len(texts), -1)
        return None

    @available_if(_student_gives("predict_proba"))
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities from the student, columns in ``classes_`` order.

        For a regressor student (the "logits" route) this is the softmax of the
        logits it predicts.
        """
        check_is_fitted(self, "student_")

        def proba(texts):
            if self.target_ == "logits":
                return _softmax(self._student_scores(texts))
            return self._align(self.student_.predict_proba(texts), fill=0.0)

        return self._by_chunks(X, proba)

    @available_if(_student_gives("decision_function"))
    def decision_function(self, X) -> np.ndarray:
        """The student's confidence scores, columns in ``classes_`` order.

        Shape (n_samples, n_classes), or (n_samples,) for two classes: the
        score of ``classes_[1]`` minus that of ``classes_[0]``, as in
        scikit-learn. For a regressor student these are the logits it
        predicts; a class the student never saw scores ``-inf``.
        """
        check_is_fitted(self, "student_")

        def decision(texts):
            if self.target_ == "logits":
                scores = self._student_scores(texts)
            else:
                scores = np.asarray(self.student_.decision_function(texts), dtype=np.float64)
                if scores.ndim == 1:  # a binary student's margin for its classes_[1]
                    scores = np.stack([-scores / 2, scores / 2], axis=1)
                # columns in classes_ order; a class the student never saw scores -inf
                scores = self._align(scores, fill=-np.inf)
            return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

        return self._by_chunks(X, decision)

    def _align(self, columns: np.ndarray, fill: float) -> np.ndarray:
        """Map the student's columns to ``classes_`` (a student may not have seen every class)."""
        student_classes = np.asarray(self.student_.classes_)
        if len(student_classes) == len(self.classes_) and np.array_equal(student_classes, self.classes_):
            return columns
        out = np.full((columns.shape[0], len(self.classes_)), fill, dtype=np.float64)
        for j, c in enumerate(student_classes.tolist()):
            out[:, self.classes_.tolist().index(c)] = columns[:, j]
        return out

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy on the labeled texts of ``(X, y)``; ``unlabeled_label`` entries are ignored.

        So ``GridSearchCV`` and ``cross_val_score`` can score folds of a
        partly unlabeled ``y``.
        """
        check_is_fitted(self, "student_")
        texts = check_texts(X)
        y, sample_weight, labeled = _check_partly_labeled_scoring(texts, y, sample_weight, self._unlabeled_mask)
        from sklearn.metrics import accuracy_score

        sw = None if sample_weight is None else sample_weight[labeled]
        texts = [t for t, keep in zip(texts, labeled) if keep]
        y_true = check_score_labels(y[labeled], len(texts), self.classes_)
        return float(accuracy_score(y_true, self.predict(texts), sample_weight=sw))


def _check_partly_labeled_scoring(texts: list[str], y: Any, sample_weight: Any, unlabeled_mask) -> tuple:
    """``score``'s input checks for the distillers: ``(y, sample_weight, labeled mask)``."""
    if y is None or isinstance(y, (str, bytes)):
        raise ValueError(
            f"score needs the true labels y as a list-like with one label per text, got {y!r}. "
            "Pass them, e.g. score(X_test, y_test)."
        )
    y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D with one label per text, got shape {y.shape}.")
    if len(y) != len(texts):
        raise ValueError(f"X and y have different lengths: {len(texts)} texts but {len(y)} labels.")
    sample_weight = check_sample_weight(sample_weight, len(texts))
    labeled = ~unlabeled_mask(y)
    if not labeled.any():
        raise ValueError("y holds no labeled texts to score against (all are unlabeled_label).")
    return y, sample_weight, labeled


def _agreement(student, target: str, classes: np.ndarray, texts, logits: np.ndarray,
               gold: np.ndarray) -> tuple[float, np.ndarray]:
    """The student's fidelity (agreement with the teacher's argmax) on ``texts``, and its class indices on the
    gold-labeled ones, in order. A stream is predicted chunk by chunk and no prediction per text is kept."""
    chunks = texts.iter_chunks() if isinstance(texts, StreamedTexts) else [texts]
    agree, start, at_gold = 0, 0, []
    for chunk in chunks:
        end = start + len(chunk)
        pred = _student_indices(student, target, classes, chunk)
        agree += int(np.count_nonzero(pred == np.argmax(logits[start:end], axis=1)))
        at_gold.append(pred[np.asarray(gold[start:end]) >= 0])
        start = end
    return agree / max(start, 1), np.concatenate(at_gold) if at_gold else np.zeros(0, dtype=np.int64)


def _student_indices(student, target: str, classes: np.ndarray, texts) -> np.ndarray:
    """Index into ``classes`` of the student's prediction for each text (a stream: chunk by chunk)."""
    if isinstance(texts, StreamedTexts):
        parts = [_student_indices(student, target, classes, chunk) for chunk in texts.iter_chunks()]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if target == "logits":
        return np.argmax(np.asarray(student.predict(texts)).reshape(len(texts), -1), axis=1)
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    return np.array([lookup[p] for p in np.asarray(student.predict(texts)).tolist()], dtype=np.int64)


def _check_finite_outputs(teacher, logits: np.ndarray, texts: list[str]) -> None:
    """Non-finite teacher outputs are an error naming the teacher, never rows silently dropped."""
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        first = texts[rows[0]]
        raise ValueError(
            f"The teacher {type(teacher).__name__} returned NaN or infinite outputs for {len(rows)} of "
            f"{len(texts)} texts in this chunk (first at index {int(rows[0])}: {first[:60]!r}). A logit too large "
            "for float32 (above about 3.4e38) or a broken teacher (NaN weights, a failed fit) does this; check "
            "teacher.predict_proba / decision_function on that text. The student was not trained."
        )


class _Rows:
    """``texts[rows[k]]`` as a sequence, without copying (for error messages about some rows)."""

    def __init__(self, texts, rows: np.ndarray):
        self.texts, self.rows = texts, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> str:
        return self.texts[int(self.rows[k])]


def _runs_of(texts, todo: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, list[str]]]:
    """``(indices, their texts)`` for the texts at the increasing ``todo``, in runs of at most ``size``; a
    stream is read once, keeping only those texts."""
    if not isinstance(texts, StreamedTexts):
        for start in range(0, len(todo), size):
            idx = todo[start : start + size]
            yield idx, [texts[i] for i in idx]
        return
    if not len(todo):
        return
    done, buf = 0, []
    for chunk in texts.subset(todo).iter_chunks():
        buf.extend(chunk)
        while len(buf) >= size:
            yield todo[done : done + size], buf[:size]
            done, buf = done + size, buf[size:]
    if buf:
        yield todo[done:], buf


def _is_text_files(X) -> bool:
    from .labeling import TextFiles

    return isinstance(X, TextFiles)


def _route_rows(route: str, logits: np.ndarray, gold: np.ndarray, alpha: float, temperature: float):
    """The training rows of the "hard" and "proba" routes for some texts: ``(text, class, weight)`` per row.

    "hard": one row per text, its teacher label weighted by the teacher's
    confidence; "proba": one row per text and class, weighted by the softened
    teacher distribution. Where a text has a gold label (``gold >= 0``) and
    ``alpha > 0``, its teacher rows weigh ``1 - alpha`` and a gold row of
    weight ``alpha`` follows all teacher rows. The weights are not yet scaled.
    """
    n, k = logits.shape
    teacher_w = np.where(gold >= 0, 1 - alpha, 1.0) if alpha > 0 else np.ones(n)
    if route == "hard":
        rows, labels = np.arange(n), np.argmax(logits, axis=1)
        weights = _softmax(logits).max(axis=1) * teacher_w
    else:  # "proba"
        rows, labels = np.repeat(np.arange(n), k), np.tile(np.arange(k), n)
        weights = (_softmax(logits, temperature) * teacher_w[:, None]).reshape(-1)
    labeled = np.flatnonzero(gold >= 0)
    if alpha > 0 and len(labeled):
        rows = np.concatenate([rows, labeled])
        labels = np.concatenate([labels, gold[labeled]])
        weights = np.concatenate([weights, np.full(len(labeled), alpha)])
    return rows, labels, weights


def _accepts(method, name: str) -> bool:
    """Whether ``method`` takes a keyword ``name`` (or ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _take_rows(features, rows: np.ndarray):
    """Rows of a chunk's features: a sparse matrix or array (indexing), else a list."""
    if hasattr(features, "shape"):
        return features[rows]
    return [features[i] for i in rows]


def _pipeline_parts(student) -> tuple[list, Any]:
    """``(steps before the last, final estimator)`` of a Pipeline (``"passthrough"`` steps left out);
    ``([], student)`` for any other estimator."""
    from sklearn.pipeline import Pipeline

    if isinstance(student, Pipeline):
        return [step for _, step in student.steps[:-1] if step not in (None, "passthrough")], student.steps[-1][1]
    return [], student


def _partial_fit_blocker(student) -> str | None:
    """Why ``student`` cannot learn a stream chunk by chunk (None: it can).

    It can when it is an estimator with ``partial_fit`` that takes texts, or a
    Pipeline whose steps before the last are stateless (scikit-learn's
    ``requires_fit`` tag is False, as for HashingVectorizer) and whose last
    step has ``partial_fit``."""
    from sklearn.utils import get_tags

    front, final = _pipeline_parts(student)
    reasons = []
    for step in front:
        try:
            stateful = get_tags(step).requires_fit
        except Exception:  # noqa: BLE001 - an object sklearn cannot read tags from: assume it learns
            stateful = True
        if stateful:
            reasons.append(f"its step {type(step).__name__} learns from all texts at once (fit; only stateless steps "
                           "such as HashingVectorizer stream)")
    if not hasattr(final, "partial_fit"):
        reasons.append(f"its final estimator {type(final).__name__} has no partial_fit (SGDClassifier has)")
    return "; ".join(reasons) or None


def _sample_weight_key(student) -> str | None:
    """The fit keyword that passes sample weights to ``student`` (a Pipeline routes it to its last step)."""
    from sklearn.pipeline import Pipeline

    if isinstance(student, Pipeline):
        name, last = student.steps[-1]
        return f"{name}__sample_weight" if last != "passthrough" and has_fit_parameter(last, "sample_weight") else None
    try:
        return "sample_weight" if has_fit_parameter(student, "sample_weight") else None
    except (TypeError, ValueError):
        return None
