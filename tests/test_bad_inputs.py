"""Bad inputs, table-driven: every public estimator x entry point x bad input.

Each row of ``CASES`` names an estimator, an entry point and a bad input, and
says which exception it must raise and what the message must name. Rows run on
a copy of an estimator fitted once per module; for those the test also checks
that the failing call left it as it was: the same ``predict_proba`` /
``predict`` / ``transform`` output on ``PROBE`` (bit for bit), the same
``classes_`` and the same public fitted attributes.

The report shows ``estimator:entry:input`` ids; ``test_matrix_summary`` (the
last test) prints the size of the matrix and, when the cases ran in the same
session, how many of them raised a clear error.

Lone-surrogate texts are the one "odd" input that must be *accepted*
(replaced by U+FFFD before tokenizing): ``test_lone_surrogates_accepted``.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import pickle
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import LinearSVC
from sklearn.utils._param_validation import InvalidParameterError

from kdtext.exceptions import ModelNotFoundError

from conftest import make_toy_texts

N_TEXTS = 48
PROBE = ["a good film", "an awful plot", "the movie was very nice", "boring story", "okay scene"]

NEURAL = ("Transformer", "BiLSTM")
DISTILLERS = ("KD-bilstm", "KD-ridge", "KD-lr")
CLASSIFIERS = NEURAL + DISTILLERS
# OnnxClassifier serves a trained model: its prediction entry points only (fit ignores X and y)
SERVING = ("Onnx",) if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript") else ()
PREDICTORS = CLASSIFIERS + SERVING
PREPROC = ("TextCleaner", "Lemmatizer", "StopWordRemover")
SHRINK = "shrink_transformer"
ESTIMATOR_NAMES = {
    "Transformer": "TransformerClassifier (tiny random BERT)",
    "BiLSTM": "BiLSTMClassifier (tiny)",
    "KD-bilstm": "DistillationClassifier, BiLSTM student",
    "KD-ridge": "DistillationClassifier, TF-IDF+Ridge student",
    "KD-lr": "DistillationClassifier, TF-IDF+LogisticRegression student",
    "Onnx": "OnnxClassifier (the tiny BiLSTM exported)",
    "TextCleaner": "TextCleaner",
    "Lemmatizer": "Lemmatizer(backend='pymorphy3')",
    "StopWordRemover": "StopWordRemover('english')",
    SHRINK: "shrink_transformer()",
}

BILSTM = dict(vocab_size=400, embedding_dim=16, hidden_dim=16, epochs=2, batch_size=8, validation_fraction=None, random_state=0)
TRANSFORMER = dict(epochs=1, batch_size=16, validation_fraction=None, random_state=0)
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
)
NON_FINITE = r"(?i)nan|non-finite|infinite"


# ----------------------------------------------------------------- teachers that misbehave
class NaNProbaTeacher(Pipeline):
    """A fitted TF-IDF + LogisticRegression whose predict_proba has NaN rows."""

    def predict_proba(self, X, **params):
        p = np.array(super().predict_proba(X, **params), dtype=np.float64)
        p[::3] = np.nan
        return p


class InfProbaTeacher(Pipeline):
    """predict_proba with +inf entries."""

    def predict_proba(self, X, **params):
        p = np.array(super().predict_proba(X, **params), dtype=np.float64)
        p[1::4, 0] = np.inf
        return p


class InfDecisionTeacher(Pipeline):
    """A TF-IDF + LinearSVC (no predict_proba) whose decision_function has inf rows."""

    def decision_function(self, X, **params):
        d = np.array(super().decision_function(X, **params), dtype=np.float64)
        d[::3] = np.inf
        d[1::3] = -np.inf
        return d


class WrongShapeTeacher(Pipeline):
    """predict_proba with one column too many."""

    def predict_proba(self, X, **params):
        p = np.asarray(super().predict_proba(X, **params))
        return np.hstack([p, np.zeros((len(p), 1))])


class PredictOnlyTeacher(Pipeline):
    """A fitted classifier that offers neither predict_proba nor decision_function."""

    @property
    def predict_proba(self):
        raise AttributeError("PredictOnlyTeacher has no predict_proba")

    @property
    def decision_function(self):
        raise AttributeError("PredictOnlyTeacher has no decision_function")


def _lr_steps():
    return [("tfidf", TfidfVectorizer()), ("clf", LogisticRegression())]


# ------------------------------------------------------------------------ environment
@dataclass
class Env:
    X: list
    y: np.ndarray
    bert: str
    saved: dict
    teacher: Any
    logits: np.ndarray
    tmp: Path | None = None

    @property
    def n(self) -> int:
        return len(self.X)

    def model_copy(self, src, mutate: Callable[[Path], None] | None = None, name: str = "model") -> Path:
        """A copy of the model folder ``src`` under this case's tmp folder, damaged by ``mutate``."""
        dst = self.tmp / name
        shutil.copytree(src, dst)
        if mutate is not None:
            mutate(dst)
        return dst

    @property
    def model_dir(self) -> Path:
        return self.tmp / "model"


def _rm(*names):
    def mutate(d: Path):
        for name in names:
            (d / name).unlink(missing_ok=True)

    return mutate


def _truncate(name):
    def mutate(d: Path):
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])

    return mutate


def _garbage(name):
    def mutate(d: Path):
        (d / name).write_bytes(b"this is not a safetensors file\x00\xff" * 8)

    return mutate


def _write(name, text):
    def mutate(d: Path):
        (d / name).write_text(text, encoding="utf-8")

    return mutate


def _unfitted(name: str, env: Env, student_params: dict | None = None, **params):
    """A new, unfitted estimator of the kind ``name`` (``params`` for its constructor)."""
    from kdtext import BiLSTMClassifier, DistillationClassifier, Lemmatizer, StopWordRemover, TextCleaner, TransformerClassifier

    student_params = student_params or {}
    if name == "Transformer":
        return TransformerClassifier(params.pop("model", env.bert), **{**TRANSFORMER, **params})
    if name == "BiLSTM":
        return BiLSTMClassifier(**{**BILSTM, **params})
    if name == "KD-bilstm":
        return DistillationClassifier(env.teacher, BiLSTMClassifier(**{**BILSTM, **student_params}), alpha=0.5, **params)
    if name == "KD-ridge":
        return DistillationClassifier(env.teacher, make_pipeline(TfidfVectorizer(), Ridge()), **params)
    if name == "KD-lr":
        return DistillationClassifier(env.teacher, make_pipeline(TfidfVectorizer(), LogisticRegression()), **params)
    if name == "TextCleaner":
        return TextCleaner(**params)
    if name == "Lemmatizer":
        return Lemmatizer(**{"backend": "pymorphy3", **params})
    if name == "StopWordRemover":
        return StopWordRemover(**{"language": "english", **params})
    if name == "Onnx":
        from kdtext import OnnxClassifier

        return OnnxClassifier(env.saved["Onnx"], **params)
    raise KeyError(name)


# ------------------------------------------------------------------------- the case table
@dataclass(frozen=True)
class Case:
    estimator: str
    entry: str
    input: str
    call: Callable[[Any, Env], Any]  # (fitted copy or None, env)
    exc: Any
    match: str
    fitted: bool = True  # run on a copy of the fitted estimator and check it is unchanged afterwards
    also: Callable[[Env], list] = field(default=lambda env: [])  # more regexes the message must match
    post: Callable[[Env], None] | None = None  # more checks after the call
    may_succeed: bool = False  # succeeding (with unchanged predictions) is acceptable too

    @property
    def id(self) -> str:
        return f"{self.estimator}:{self.entry}:{self.input}".replace(" ", "_").replace("'", "")


CASES: list[Case] = []


def add(estimators, entry, input, call, exc, match, **kw):
    for est in (estimators,) if isinstance(estimators, str) else estimators:
        CASES.append(Case(est, entry, input, call, exc, match, **kw))


def _folder_named(env: Env) -> list:
    return [re.escape(str(env.model_dir))]


# X (the texts): the same bad values through every entry point that takes texts
X_BAD = {
    "bare_str": (lambda e: "a good film", TypeError, r"single str"),
    "bytes": (lambda e: b"a good film", TypeError, r"single bytes|bytes"),
    "None": (lambda e: None, TypeError, r"list-like"),
    "int_scalar": (lambda e: 7, TypeError, r"list-like"),
    "NaN_in_texts": (lambda e: e.X[:-1] + [float("nan")], ValueError, r"missing"),
    "np.nan_in_object_array": (lambda e: np.array(e.X[:-1] + [np.nan], dtype=object), ValueError, r"missing"),
    "None_in_texts": (lambda e: e.X[:-1] + [None], ValueError, r"missing"),
    "pd.NA_in_texts": (lambda e: e.X[:-1] + [pd.NA], ValueError, r"missing"),
    "None_in_pd.Series": (lambda e: pd.Series(e.X[:-1] + [None]), ValueError, r"missing"),
    "int_in_texts": (lambda e: e.X[:-1] + [3], TypeError, r"str\b"),
    "float_in_texts": (lambda e: e.X[:-1] + [3.5], TypeError, r"str\b"),
    "bool_in_texts": (lambda e: e.X[:-1] + [True], TypeError, r"str\b"),
    "bytes_in_texts": (lambda e: e.X[:-1] + [b"bad film"], TypeError, r"str\b"),
    "nested_list": (lambda e: [["a", "good", "film"]] + e.X[1:], TypeError, r"str\b"),
    "2d_array_n_x_2": (lambda e: np.array([e.X, e.X]).T, ValueError, r"1-D|shape"),
    "DataFrame_2_columns": (lambda e: pd.DataFrame({"text": e.X, "other": e.X}), ValueError, r"1-D|shape|column"),
    "3d_array": (lambda e: np.array(e.X).reshape(-1, 1, 1), ValueError, r"1-D|shape"),
}
EMPTY = r"(?i)empty|at least one|0 sample"

for name, (make, exc, match) in X_BAD.items():
    add(CLASSIFIERS, "fit", name, lambda est, e, make=make: est.fit(make(e), e.y), exc, match)
    add(NEURAL, "fit_soft", name, lambda est, e, make=make: est.fit_soft(make(e), e.logits, classes=[0, 1]), exc, match)
    for method in ("predict", "predict_proba", "decision_function"):
        add(PREDICTORS, method, name, lambda est, e, make=make, m=method: getattr(est, m)(make(e)), exc, match)
    add(PREDICTORS, "score", name, lambda est, e, make=make: est.score(make(e), e.y), exc, match)
    add(PREPROC, "fit", name, lambda est, e, make=make: est.fit(make(e)), exc, match)
    add(PREPROC, "transform", name, lambda est, e, make=make: est.transform(make(e)), exc, match)

# zero texts: an error everywhere but transform (which maps [] to [])
add(CLASSIFIERS, "fit", "empty_list", lambda est, e: est.fit([], []), ValueError, EMPTY)
add(NEURAL, "fit_soft", "empty_list", lambda est, e: est.fit_soft([], np.empty((0, 2), np.float32), classes=[0, 1]), ValueError, EMPTY)
for method in ("predict", "predict_proba", "decision_function"):
    add(PREDICTORS, method, "empty_list", lambda est, e, m=method: getattr(est, m)([]), ValueError, EMPTY)
add(PREDICTORS, "score", "empty_list", lambda est, e: est.score([], []), ValueError, EMPTY)
add(PREPROC, "fit", "empty_list", lambda est, e: est.fit([]), ValueError, EMPTY)


# y (the labels) in fit
def _mixed(e):
    return np.array(["pos" if i % 2 else 0 for i in range(e.n)], dtype=object)


def _nan_labels(e):
    y = e.y.astype(float)
    y[3] = np.nan
    return y


def _none_labels(e):
    y = e.y.astype(object)
    y[3] = None
    return y


Y_BAD = {
    "X_y_length_mismatch": (CLASSIFIERS, lambda e: e.y[:-1], ValueError, r"length"),
    "y_None": (NEURAL, lambda e: None, ValueError, r"\by\b"),  # a distiller takes y=None: all unlabeled
    "single_class": (NEURAL, lambda e: np.zeros(e.n, dtype=int), ValueError, r"class"),
    "mixed_str_int_labels": (NEURAL, _mixed, (TypeError, ValueError), r"(?i)mix"),
    "continuous_float_labels": (CLASSIFIERS, lambda e: np.linspace(0, 1, e.n), ValueError, r"continuous"),
    "NaN_in_labels": (CLASSIFIERS, _nan_labels, ValueError, r"(?i)missing|nan"),
    "None_in_labels": (CLASSIFIERS, _none_labels, ValueError, r"(?i)missing|none"),
    "y_2d_n_x_2": (CLASSIFIERS, lambda e: np.c_[e.y, e.y], ValueError, r"1-D|shape"),
    "y_column_vector": (CLASSIFIERS, lambda e: e.y.reshape(-1, 1), ValueError, r"1-D|ravel"),
    "y_bare_str": (CLASSIFIERS, lambda e: "pos", TypeError, r"single str|list-like"),
    "y_int_scalar": (CLASSIFIERS, lambda e: 1, (TypeError, ValueError), r"\by\b"),
}
for name, (ests, make, exc, match) in Y_BAD.items():
    add(ests, "fit", name, lambda est, e, make=make: est.fit(e.X, make(e)), exc, match)
# the teacher fixes a distiller's classes: a label outside them is unknown to the teacher
add(DISTILLERS, "fit", "mixed_str_int_labels", lambda est, e: est.fit(e.X, _mixed(e)), (TypeError, ValueError),
    r"(?i)mix|teacher does not know")
add(DISTILLERS, "fit", "labels_unknown_to_teacher", lambda est, e: est.fit(e.X, e.y + 5), ValueError, r"(?i)teacher.*class|class.*teacher|does not know")


# fit_soft: the soft-target interface of the neural students
def _with_nan(a, value=np.nan):
    a = a.copy()
    a[2, 1] = value
    return a


FIT_SOFT_BAD = {
    "logits_3_columns_for_2_classes": (lambda e: dict(teacher_logits=np.c_[e.logits, e.logits[:, :1]]), ValueError, r"shape"),
    "logits_length_mismatch": (lambda e: dict(teacher_logits=e.logits[:-1]), ValueError, r"shape"),
    "logits_1d": (lambda e: dict(teacher_logits=e.logits[:, 0]), ValueError, r"shape"),
    "logits_NaN": (lambda e: dict(teacher_logits=_with_nan(e.logits)), ValueError, NON_FINITE),
    "logits_inf": (lambda e: dict(teacher_logits=_with_nan(e.logits, np.inf)), ValueError, NON_FINITE),
    "logits_strings": (lambda e: dict(teacher_logits=np.full((e.n, 2), "x")), (TypeError, ValueError), r"(?i)teacher_logits|float"),
    "classes_single": (lambda e: dict(classes=[0]), ValueError, r"classes"),
    "classes_length_mismatch": (lambda e: dict(classes=[0, 1, 2]), ValueError, r"shape|classes"),
    "y_float_indices": (lambda e: dict(y=np.full(e.n, 0.5)), ValueError, r"\bint\b"),
    "y_index_out_of_range": (lambda e: dict(y=np.full(e.n, 5)), ValueError, r"indices|range"),
    "y_length_mismatch": (lambda e: dict(y=e.y[:-1]), ValueError, r"shape|length"),
    "loss_unknown": (lambda e: dict(loss="hinge"), ValueError, r"loss"),
    "temperature_zero": (lambda e: dict(temperature=0.0), ValueError, r"temperature"),
    "temperature_negative": (lambda e: dict(temperature=-1.0), ValueError, r"temperature"),
    "alpha_above_1": (lambda e: dict(alpha=1.5), ValueError, r"alpha"),
}
for name, (make, exc, match) in FIT_SOFT_BAD.items():
    def _call(est, e, make=make):
        kw = {"teacher_logits": e.logits, "classes": [0, 1], **make(e)}
        return est.fit_soft(e.X, kw.pop("teacher_logits"), **kw)

    add(NEURAL, "fit_soft", name, _call, exc, match)


# score
def _sw_wrong(est, e):
    return est.score(e.X, e.y, sample_weight=np.ones(3))


SCORE_BAD = {
    # labels that cannot match any class (strings against int classes); an unseen label of the right type only
    # warns (a CV test fold may hold a rare class its training fold lacked: see test_unseen_labels_at_score_warn)
    "labels_of_another_type": (lambda est, e: est.score(e.X, np.where(e.y == 1, "pos", "neg")), ValueError,
                               r"(?i)strings.*numbers"),
    "labels_of_other_type": (lambda est, e: est.score(e.X, np.array(["neg", "pos"])[e.y]), ValueError, r"(?i)class|label|unknown|mix"),
    "y_None": (lambda est, e: est.score(e.X, None), ValueError, r"\by\b"),
    "sample_weight_wrong_length": (_sw_wrong, ValueError, r"sample_weight"),
    "X_y_length_mismatch": (lambda est, e: est.score(e.X, e.y[:-1]), ValueError, r"(?i)length|inconsistent numbers? of samples"),
    "continuous_float_labels": (lambda est, e: est.score(e.X, np.linspace(0, 1, e.n)), ValueError, r"continuous"),
    "mixed_str_int_labels": (lambda est, e: est.score(e.X, _mixed(e)), (TypeError, ValueError), r"(?i)mix"),
}
for name, (call, exc, match) in SCORE_BAD.items():
    add(PREDICTORS, "score", name, call, exc, match)


# hyper-parameters of the neural estimators: via the constructor (then fit) and via set_params after fit
INVALID_INT_PARAMS = ("batch_size", "predict_batch_size", "max_length", "epochs")
for param in INVALID_INT_PARAMS:
    for value in (0, -1):
        add(NEURAL, "__init__", f"{param}={value}", lambda est, e, p=param, v=value: _unfitted(est_name(e), e, **{p: v}).fit(e.X, e.y),
            InvalidParameterError, param, fitted=False)
        add("KD-bilstm", "__init__", f"student {param}={value}",
            lambda est, e, p=param, v=value: _unfitted("KD-bilstm", e, student_params={p: v}).fit(e.X, e.y),
            InvalidParameterError, param, fitted=False)
        add("KD-bilstm", "set_params", f"student__{param}={value} -> fit",
            lambda est, e, p=param, v=value: est.set_params(**{f"student__{p}": v}).fit(e.X, e.y), InvalidParameterError, param)
        if param in ("predict_batch_size", "max_length"):  # read at predict time
            add(NEURAL, "set_params", f"{param}={value} -> predict",
                lambda est, e, p=param, v=value: est.set_params(**{p: v}).predict(PROBE), InvalidParameterError, param)
            add(NEURAL, "set_params", f"{param}={value} -> predict_proba",
                lambda est, e, p=param, v=value: est.set_params(**{p: v}).predict_proba(PROBE), InvalidParameterError, param)
        else:  # training-only: predict may refuse them or ignore them, fit must refuse them
            add(NEURAL, "set_params", f"{param}={value} -> predict",
                lambda est, e, p=param, v=value: est.set_params(**{p: v}).predict(PROBE), InvalidParameterError, param,
                may_succeed=True)
        add(NEURAL, "set_params", f"{param}={value} -> fit",
            lambda est, e, p=param, v=value: est.set_params(**{p: v}).fit(e.X, e.y), InvalidParameterError, param)
OTHER_NEURAL_PARAMS = {
    "learning_rate=0": ("learning_rate", 0.0),
    "validation_fraction=1.5": ("validation_fraction", 1.5),
    "mixed_precision='yes'": ("mixed_precision", "yes"),
    "n_iter_no_change=0": ("n_iter_no_change", 0),
}
for name, (param, value) in OTHER_NEURAL_PARAMS.items():
    add(NEURAL, "__init__", name, lambda est, e, p=param, v=value: _unfitted(est_name(e), e, **{p: v}).fit(e.X, e.y),
        InvalidParameterError, param, fitted=False)
for name, (param, value) in {"dropout=1.0": ("dropout", 1.0), "pooling='median'": ("pooling", "median"),
                             "tokenizer='sentencepiece'": ("tokenizer", "sentencepiece"), "vocab_size=2": ("vocab_size", 2)}.items():
    add("BiLSTM", "__init__", name, lambda est, e, p=param, v=value: _unfitted("BiLSTM", e, **{p: v}).fit(e.X, e.y),
        InvalidParameterError, param, fitted=False)

# devices
DEVICES = {"meta": r"(?i)device", "cuda": r"(?i)device|cuda", "nonsense": r"(?i)device"}
for device, match in DEVICES.items():
    add(NEURAL, "__init__", f"device={device!r}", lambda est, e, d=device: _unfitted(est_name(e), e, device=d).fit(e.X, e.y),
        ValueError, match, fitted=False)
    add(NEURAL, "set_params", f"device={device!r} -> fit", lambda est, e, d=device: est.set_params(device=d).fit(e.X, e.y),
        ValueError, match)
    add(NEURAL, "fit_soft", f"device={device!r}",
        lambda est, e, d=device: est.set_params(device=d).fit_soft(e.X, e.logits, classes=[0, 1]), ValueError, match)
    add("KD-bilstm", "__init__", f"student device={device!r}",
        lambda est, e, d=device: _unfitted("KD-bilstm", e, student_params={"device": d}).fit(e.X, e.y), ValueError, match,
        fitted=False)
    add("KD-bilstm", "set_params", f"student__device={device!r} -> fit",
        lambda est, e, d=device: est.set_params(student__device=d).fit(e.X, e.y), ValueError, match)


# DistillationClassifier: its own parameters and its teacher
DISTILLER_PARAMS = {
    "temperature=0": ("temperature", 0),
    "alpha=1.5": ("alpha", 1.5),
    "chunk_size=0": ("chunk_size", 0),
    "augment=-1": ("augment", -1),
    "target='nope'": ("target", "nope"),
    "loss='hinge'": ("loss", "hinge"),
    "p_mask=2": ("p_mask", 2.0),
}
for name, (param, value) in DISTILLER_PARAMS.items():
    add(DISTILLERS, "set_params", f"{name} -> fit", lambda est, e, p=param, v=value: est.set_params(**{p: v}).fit(e.X, e.y),
        InvalidParameterError, param)
for name in ("temperature=0", "chunk_size=0"):
    param, value = DISTILLER_PARAMS[name]
    add(DISTILLERS, "__init__", name, lambda est, e, p=param, v=value: _unfitted(est_name(e), e, **{p: v}).fit(e.X, e.y),
        InvalidParameterError, param, fitted=False)
add(("KD-ridge", "KD-lr"), "set_params", "target='soft' without fit_soft -> fit",
    lambda est, e: est.set_params(target="soft").fit(e.X, e.y), TypeError, r"fit_soft")
add(DISTILLERS, "set_params", "unlabeled_label=0 (a class) -> fit",
    lambda est, e: est.set_params(unlabeled_label=0).fit(e.X, e.y), ValueError, r"unlabeled_label")


def _fit_teacher(cls, steps, e, labels=None):
    return cls(steps).fit(e.X, e.y if labels is None else labels)


TEACHER_BAD = {
    "teacher_unfitted": (lambda e: make_pipeline(TfidfVectorizer(), LogisticRegression()), NotFittedError, r"(?i)not fitted", None),
    "teacher_None": (lambda e: None, InvalidParameterError, r"teacher", None),
    "teacher_classes_differ_from_labels": (
        lambda e: make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(e.X, np.array(["neg", "pos"])[e.y]),
        ValueError, r"(?i)class", None,
    ),
    "teacher_NaN_predict_proba": (lambda e: _fit_teacher(NaNProbaTeacher, _lr_steps(), e), ValueError, r"NaNProbaTeacher", NON_FINITE),
    "teacher_inf_predict_proba": (lambda e: _fit_teacher(InfProbaTeacher, _lr_steps(), e), ValueError, r"InfProbaTeacher", NON_FINITE),
    "teacher_inf_decision_function": (
        lambda e: _fit_teacher(InfDecisionTeacher, [("tfidf", TfidfVectorizer()), ("svc", LinearSVC())], e),
        ValueError, r"InfDecisionTeacher", NON_FINITE,
    ),
    "teacher_output_wrong_shape": (lambda e: _fit_teacher(WrongShapeTeacher, _lr_steps(), e), ValueError, r"shape", None),
    "teacher_without_proba_or_decision": (
        lambda e: _fit_teacher(PredictOnlyTeacher, _lr_steps(), e), TypeError, r"predict_proba|decision_function", None,
    ),
    "teacher_is_a_regressor": (
        lambda e: make_pipeline(TfidfVectorizer(), Ridge()).fit(e.X, e.y.astype(float)), TypeError,
        r"(?i)predict_proba|decision_function|classifier", None,
    ),
}
for name, (make, exc, match, extra) in TEACHER_BAD.items():
    add(DISTILLERS, "fit", name, lambda est, e, make=make: est.set_params(teacher=make(e)).fit(e.X, e.y), exc, match,
        also=(lambda env, extra=extra: [extra] if extra else []))
    if name != "teacher_classes_differ_from_labels":  # without gold labels the teacher's classes are simply taken
        add("KD-ridge", "fit", f"{name}, y=None", lambda est, e, make=make: est.set_params(teacher=make(e)).fit(e.X), exc,
            match, also=(lambda env, extra=extra: [extra] if extra else []))


# persistence: save_pretrained / from_pretrained of the neural estimators
def _cls(name):
    from kdtext import BiLSTMClassifier, TransformerClassifier

    return {"Transformer": TransformerClassifier, "BiLSTM": BiLSTMClassifier}[name]


def _load_damaged(name, mutate, **kw):
    def call(est, e):
        return _cls(name).from_pretrained(e.model_copy(e.saved[name], mutate), **kw)

    return call


def _with_file(filename):
    return lambda env: [re.escape(str(env.model_dir)), re.escape(filename)]


LOAD_ERR = (ValueError, ModelNotFoundError)
for name in NEURAL:
    add(name, "from_pretrained", "path_missing", lambda est, e, n=name: _cls(n).from_pretrained(e.tmp / "no-such-model"),
        ModelNotFoundError, r"no-such-model", fitted=False)
    add(name, "from_pretrained", "path_is_a_file", lambda est, e, n=name: _cls(n).from_pretrained(Path(e.saved[n]) / "kdtext_config.json"),
        ModelNotFoundError, r"kdtext_config\.json|folder", fitted=False)
    add(name, "from_pretrained", "plain_transformers_folder", lambda est, e, n=name: _cls(n).from_pretrained(e.bert),
        ModelNotFoundError, r"save_pretrained|kdtext_config", fitted=False)
    add(name, "from_pretrained", "weights_missing", _load_damaged(name, _rm("model.safetensors")),
        ModelNotFoundError, r"(?i)safetensors|weights", also=_folder_named, fitted=False)
    add(name, "from_pretrained", "weights_corrupted", _load_damaged(name, _garbage("model.safetensors")),
        LOAD_ERR, r"safetensors", also=_folder_named, fitted=False)
    add(name, "from_pretrained", "weights_truncated", _load_damaged(name, _truncate("model.safetensors")),
        LOAD_ERR, r"safetensors", also=_folder_named, fitted=False)
    add(name, "from_pretrained", "kdtext_config_truncated", _load_damaged(name, _truncate("kdtext_config.json")),
        LOAD_ERR, r"kdtext_config\.json", also=_folder_named, fitted=False)
    add(name, "from_pretrained", "kdtext_config_not_an_object", _load_damaged(name, _write("kdtext_config.json", "[1, 2]")),
        LOAD_ERR, r"kdtext_config\.json", also=_folder_named, fitted=False)
    add(name, "from_pretrained", "tokenizer_json_truncated", _load_damaged(name, _truncate("tokenizer.json")),
        LOAD_ERR, r"tokenizer", also=_with_file("tokenizer.json"), fitted=False)
    for device, match in DEVICES.items():
        add(name, "from_pretrained", f"device={device!r}",
            lambda est, e, n=name, d=device: _cls(n).from_pretrained(e.saved[n], device=d).predict(PROBE), ValueError, match,
            fitted=False)
    for param, value in (("predict_batch_size", -1), ("predict_batch_size", 0), ("max_length", 0)):
        # refused when loading, or at the latest by the first predict
        add(name, "from_pretrained", f"{param}={value}",
            lambda est, e, n=name, p=param, v=value: _cls(n).from_pretrained(e.saved[n], **{p: v}).predict(PROBE),
            InvalidParameterError, param, fitted=False)
    add(name, "from_pretrained", "unknown_parameter",
        lambda est, e, n=name: _cls(n).from_pretrained(e.saved[n], not_a_parameter=1), (TypeError, ValueError),
        r"not_a_parameter", fitted=False)
    add(name, "save_pretrained", "unfitted", lambda est, e, n=name: _unfitted(n, e).save_pretrained(e.tmp / "never"),
        NotFittedError, r"(?i)fit", fitted=False)
add("Transformer", "from_pretrained", "tokenizer_files_missing", _load_damaged("Transformer", _rm(*TOKENIZER_FILES)),
    (ModelNotFoundError, ValueError), r"(?i)tokenizer", fitted=False)
add("Transformer", "from_pretrained", "config_json_truncated", _load_damaged("Transformer", _truncate("config.json")),
    LOAD_ERR, r"config\.json", also=_folder_named, fitted=False)
add("Transformer", "from_pretrained", "a_BiLSTMClassifier_folder",
    lambda est, e: _cls("Transformer").from_pretrained(e.saved["BiLSTM"]), ValueError, r"BiLSTMClassifier", fitted=False)
add("BiLSTM", "from_pretrained", "tokenizer_json_missing", _load_damaged("BiLSTM", _rm("tokenizer.json")),
    (ModelNotFoundError, ValueError), r"(?i)tokenizer", fitted=False)
add("BiLSTM", "from_pretrained", "bilstm_config_missing", _load_damaged("BiLSTM", _rm("bilstm_config.json")),
    (ModelNotFoundError, ValueError), r"bilstm_config\.json", fitted=False)
add("BiLSTM", "from_pretrained", "bilstm_config_truncated", _load_damaged("BiLSTM", _truncate("bilstm_config.json")),
    LOAD_ERR, r"bilstm_config\.json", also=_folder_named, fitted=False)
add("BiLSTM", "from_pretrained", "a_TransformerClassifier_folder",
    lambda est, e: _cls("BiLSTM").from_pretrained(e.saved["Transformer"]), ValueError, r"TransformerClassifier", fitted=False)


# TransformerClassifier(model=<damaged folder>).fit, on the fitted estimator (which must survive)
def _fit_on_damaged_model(mutate):
    def call(est, e):
        return est.set_params(model=str(e.model_copy(e.bert, mutate))).fit(e.X, e.y)

    return call


add("Transformer", "fit", "model_path_missing", lambda est, e: est.set_params(model=str(e.tmp / "no-such-model")).fit(e.X, e.y),
    ModelNotFoundError, r"no-such-model")
add("Transformer", "fit", "model_folder_config_but_no_weights", _fit_on_damaged_model(_rm("model.safetensors")),
    ModelNotFoundError, r"(?i)safetensors|weights", also=_folder_named)
add("Transformer", "fit", "model_folder_without_tokenizer", _fit_on_damaged_model(_rm(*TOKENIZER_FILES)),
    (ModelNotFoundError, ValueError), r"(?i)tokenizer")
add("Transformer", "fit", "model_config_json_truncated", _fit_on_damaged_model(_truncate("config.json")),
    LOAD_ERR, r"config\.json", also=_folder_named)
add("Transformer", "fit", "model_safetensors_corrupted", _fit_on_damaged_model(_garbage("model.safetensors")),
    LOAD_ERR, r"safetensors", also=_folder_named)
add("Transformer", "fit", "model_is_an_int", lambda est, e: est.set_params(model=42).fit(e.X, e.y), InvalidParameterError, r"model")


# preprocessing parameters: via the constructor (then fit) and via set_params (then transform)
PREPROC_PARAMS = {
    "TextCleaner": {
        "pattern='['": ({"pattern": "["}, ValueError, r"pattern"),
        "alphabets=('klingon',)": ({"alphabets": ("klingon",)}, ValueError, r"alphabets"),
        "alphabets=()": ({"alphabets": ()}, ValueError, r"alphabets"),
        "alphabets=5": ({"alphabets": 5}, InvalidParameterError, r"alphabets"),
        "lowercase='yes'": ({"lowercase": "yes"}, InvalidParameterError, r"lowercase"),
    },
    "StopWordRemover": {
        "language='french'": ({"language": "french"}, InvalidParameterError, r"language"),
        "stop_words='the'": ({"stop_words": "the"}, InvalidParameterError, r"stop_words"),
        "extra_stop_words=5": ({"extra_stop_words": 5}, InvalidParameterError, r"extra_stop_words"),
    },
    "Lemmatizer": {
        "backend='spacy'": ({"backend": "spacy"}, InvalidParameterError, r"backend"),
        "batch_size=0": ({"batch_size": 0}, InvalidParameterError, r"batch_size"),
        "cache_size=-1": ({"cache_size": -1}, InvalidParameterError, r"cache_size"),
        "mystem_path missing": ({"backend": "mystem", "mystem_path": "/no/such/mystem"}, (FileNotFoundError, ValueError), r"mystem_path"),
    },
}
for est_key, table in PREPROC_PARAMS.items():
    for name, (params, exc, match) in table.items():
        add(est_key, "__init__", name, lambda est, e, k=est_key, p=params: _unfitted(k, e, **p).fit(e.X), exc, match, fitted=False)
        add(est_key, "set_params", f"{name} -> transform", lambda est, e, p=params: est.set_params(**p).transform(PROBE), exc, match)


# shrink_transformer
def _shrink(path_of: Callable[[Env, Path], Any], mutate=None, source=None, **kw):
    from kdtext import shrink_transformer

    def call(est, e):
        src = e.model_copy(e.bert, mutate) if source is None else source(e)
        return shrink_transformer(src if source is not None else str(src), path_of(e, e.model_dir), **kw)

    return call


def _out(e, src):
    return str(e.tmp / "out")


def _src_unchanged(e: Env):
    now = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in e.model_dir.iterdir()}
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(e.bert).iterdir()}
    assert now == before, "shrink_transformer changed its source folder"


add(SHRINK, "call", "out_is_the_source", _shrink(lambda e, src: str(src)), ValueError, r"(?i)same|source", fitted=False,
    post=_src_unchanged)
add(SHRINK, "call", "out_is_the_source_with_trailing_dot", _shrink(lambda e, src: f"{src}/."), ValueError, r"(?i)same|source",
    fitted=False, post=_src_unchanged)
add(SHRINK, "call", "out_is_the_source_via_dotdot", _shrink(lambda e, src: f"{src}/../{src.name}"), ValueError,
    r"(?i)same|source", fitted=False, post=_src_unchanged)
add(SHRINK, "call", "source_missing", _shrink(_out, source=lambda e: str(e.tmp / "no-such-model")), ModelNotFoundError,
    r"no-such-model", fitted=False)
add(SHRINK, "call", "source_without_weights", _shrink(_out, _rm("model.safetensors")), ModelNotFoundError,
    r"(?i)safetensors|weights", also=_folder_named, fitted=False)
add(SHRINK, "call", "source_without_tokenizer", _shrink(_out, _rm(*TOKENIZER_FILES)), (ModelNotFoundError, ValueError),
    r"(?i)tokenizer", fitted=False)
add(SHRINK, "call", "source_config_json_truncated", _shrink(_out, _truncate("config.json")), LOAD_ERR, r"config\.json",
    also=_folder_named, fitted=False)
add(SHRINK, "call", "source_safetensors_corrupted", _shrink(_out, _garbage("model.safetensors")), LOAD_ERR, r"safetensors",
    also=_folder_named, fitted=False)
add(SHRINK, "call", "layers=0", _shrink(_out, layers=0), ValueError, r"between 1", fitted=False)
add(SHRINK, "call", "layers_not_increasing", _shrink(_out, layers=[1, 0]), ValueError, r"increasing", fitted=False)
add(SHRINK, "call", "layers_out_of_range", _shrink(_out, layers=[0, 5]), ValueError, r"outside", fitted=False)
add(SHRINK, "call", "texts_bare_str", _shrink(_out, texts="a good film"), TypeError, r"single str", fitted=False)
add(SHRINK, "call", "texts_with_None", _shrink(_out, texts=["good", None]), ValueError, r"missing", fitted=False)
add(SHRINK, "call", "min_frequency=0", _shrink(_out, min_frequency=0), ValueError, r"min_frequency", fitted=False)
add(SHRINK, "call", "source_unfitted_TransformerClassifier",
    _shrink(_out, source=lambda e: _unfitted("Transformer", e)), NotFittedError, r"(?i)fit", fitted=False)
add(SHRINK, "call", "source_is_an_int", _shrink(_out, source=lambda e: 42), TypeError, r"source", fitted=False)

CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS), [k for k, v in collections.Counter(CASE_IDS).items() if v > 1]


def est_name(e: Env) -> str:
    return e._estimator  # set per case by the test


MATRIX_ESTIMATORS = sorted({c.estimator for c in CASES}, key=list(ESTIMATOR_NAMES).index)
MATRIX_ENTRIES = sorted({c.entry for c in CASES})
MATRIX_INPUTS = sorted({c.input for c in CASES})
MATRIX_SUMMARY = (
    f"bad-input matrix: {len(MATRIX_ESTIMATORS)} estimators x {len(MATRIX_ENTRIES)} entry points x "
    f"{len(MATRIX_INPUTS)} distinct bad inputs -> {len(CASES)} cases "
    f"(+ lone-surrogate acceptance cases in test_lone_surrogates_accepted)"
)
RESULTS: dict[str, str] = {}


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def env(tiny_bert_path, tmp_path_factory):
    X, y = make_toy_texts(N_TEXTS, seed=3)
    teacher = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, y)
    logits = np.random.default_rng(0).normal(size=(len(X), 2)).astype(np.float32)
    return Env(X=list(X), y=np.asarray(y), bert=tiny_bert_path, saved={}, teacher=teacher, logits=logits)


@pytest.fixture(scope="module")
def fitted(env, tmp_path_factory):
    """Each estimator fitted once; cases work on pickled copies."""
    out = {}
    for name in CLASSIFIERS:
        out[name] = _unfitted(name, env).fit(env.X, env.y)
    for name in PREPROC:
        if name == "Lemmatizer":
            try:
                import pymorphy3  # noqa: F401
            except ImportError:
                continue
        out[name] = _unfitted(name, env).fit(env.X)
    root = tmp_path_factory.mktemp("saved")
    for name in NEURAL:
        env.saved[name] = str(out[name].save_pretrained(root / name))
    for name in SERVING:
        env.saved[name] = str(out["BiLSTM"].export_onnx(root / "onnx"))
        out[name] = _unfitted(name, env).fit()
    return out


@pytest.fixture(scope="module")
def reference(fitted):
    """What each fitted estimator outputs on PROBE (taken on a copy, as the cases use)."""
    return {name: _snapshot(pickle.loads(pickle.dumps(est))) for name, est in fitted.items()}


def _snapshot(est) -> dict:
    if hasattr(est, "transform"):
        return {"transform": est.transform(PROBE)}
    out = {
        "predict": np.asarray(est.predict(PROBE)),
        "classes_": np.asarray(est.classes_).copy(),
        "fitted attributes": sorted(k for k in vars(est) if k.endswith("_") and not k.startswith("_")),
    }
    if hasattr(est, "predict_proba"):
        out["predict_proba"] = np.asarray(est.predict_proba(PROBE))
    return out


def _assert_same(before: dict, after: dict, what: str):
    assert before.keys() == after.keys()
    for key in before:
        a, b = before[key], after[key]
        same = np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
        assert same, f"{what}: {key} changed after the failing call:\nbefore {a!r}\nafter  {b!r}"


def _needs(case: Case):
    if case.estimator == "Lemmatizer":
        pytest.importorskip("pymorphy3", reason="Lemmatizer(backend='pymorphy3') needs pymorphy3")


# --------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bad_input(case: Case, env, fitted, reference, tmp_path):
    RESULTS[case.id] = "skipped"
    _needs(case)
    RESULTS[case.id] = "failed"
    e = replace(env, tmp=tmp_path)
    e._estimator = case.estimator
    est = params = None
    if case.fitted:
        est = pickle.loads(pickle.dumps(fitted[case.estimator]))
        params = est.get_params(deep=True)

    raised = None
    try:
        case.call(est, e)
    except Exception as exc:  # noqa: BLE001 - the type is checked below
        raised = exc
    exc_names = " or ".join(t.__name__ for t in (case.exc if isinstance(case.exc, tuple) else (case.exc,)))
    if raised is None:
        if not case.may_succeed:
            pytest.fail(f"DID NOT RAISE {exc_names}")
    else:
        message = str(raised)
        if not isinstance(raised, case.exc):
            raise AssertionError(
                f"expected {exc_names}, got {type(raised).__module__}.{type(raised).__name__}: {message[:500]}"
            ) from raised
        for pattern in [case.match, *case.also(e)]:
            assert re.search(pattern, message), (
                f"{type(raised).__name__} message does not name the problem ({pattern!r}):\n{message[:1000]}"
            )
    if case.post is not None:
        case.post(e)
    if est is not None:
        est.set_params(**params)  # undo a set_params that was part of the case
        _assert_same(reference[case.estimator], _snapshot(est), case.id)
    RESULTS[case.id] = "clear"


SURROGATE_TEXTS = ["x \ud800", "a good film \udfff", "\ud83d", "an awful plot"]
REPLACED_TEXTS = [t.replace("\ud800", "\ufffd").replace("\udfff", "\ufffd").replace("\ud83d", "\ufffd") for t in SURROGATE_TEXTS]


@pytest.mark.parametrize("entry", ["fit", "predict"])
@pytest.mark.parametrize("name", CLASSIFIERS + PREPROC + (SHRINK,))
def test_lone_surrogates_accepted(name, entry, env, fitted, tmp_path):
    """Lone surrogates (e.g. from a broken JSON escape) are accepted, read as U+FFFD."""
    from kdtext import shrink_transformer

    if name == "Lemmatizer":
        pytest.importorskip("pymorphy3")
    if name == SHRINK:
        if entry == "predict":
            pytest.skip("shrink_transformer only takes texts to reduce the vocabulary")
        shrink_transformer(env.bert, tmp_path / "out", texts=env.X + SURROGATE_TEXTS)
        return
    if entry == "fit":
        X = env.X[:-4] + SURROGATE_TEXTS
        est = _unfitted(name, env)
        if name in PREPROC:
            est.fit(X)
            assert len(est.transform(X)) == len(X)
        else:
            est.fit(X, env.y)
            assert est.predict_proba(X).shape == (len(X), 2)
        return
    est = pickle.loads(pickle.dumps(fitted[name]))
    if name in PREPROC:
        out = est.transform(SURROGATE_TEXTS)
        assert len(out) == len(SURROGATE_TEXTS) and all(isinstance(t, str) for t in out)
        return
    proba = est.predict_proba(SURROGATE_TEXTS)
    assert proba.shape == (len(SURROGATE_TEXTS), 2) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba, est.predict_proba(REPLACED_TEXTS), rtol=1e-6, atol=1e-7)
    assert set(est.predict(SURROGATE_TEXTS).tolist()) <= set(est.classes_.tolist())


def test_matrix_summary(capsys):
    """The size of the matrix; with the cases run in this session, how many raised a clear error."""
    assert len(MATRIX_INPUTS) >= 40
    by_estimator = collections.Counter(c.estimator for c in CASES)
    by_entry = collections.Counter(c.entry for c in CASES)
    lines = [MATRIX_SUMMARY]
    lines.append("  estimators: " + ", ".join(f"{ESTIMATOR_NAMES[k]} ({by_estimator[k]})" for k in MATRIX_ESTIMATORS))
    lines.append("  entry points: " + ", ".join(f"{k} ({by_entry[k]})" for k in MATRIX_ENTRIES))
    if RESULTS:
        counts = collections.Counter(RESULTS.values())
        lines.append(
            f"  run here: {len(RESULTS)} cases, {counts['clear']} raised a clear error (right type, message naming "
            f"the problem, fitted estimator unchanged), {counts['failed']} did not, {counts['skipped']} skipped"
        )
        failed = collections.Counter(k.split(":")[0] for k, v in RESULTS.items() if v == "failed")
        if failed:
            lines.append("  failing by estimator: " + ", ".join(f"{k} {v}" for k, v in sorted(failed.items())))
    with capsys.disabled():
        print("\n" + "\n".join(lines))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_unseen_labels_at_score_warn(name, fitted, env):
    """A label of the right type that the model never saw counts as an error, with a warning naming it."""
    est = fitted[name]
    y = np.where(env.y == 1, 7, 0)
    with pytest.warns(UserWarning, match=r"never saw, e.g. \[7\]"):
        score = est.score(env.X, y)
    assert 0.0 <= score <= 0.5 + 1e-9  # every text labeled 7 counts as wrong
