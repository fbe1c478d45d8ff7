"""The one place for the rules at the scikit-learn / torch boundary.

Text input checks, label encoding, device and seed resolution, and the
soft-target training interface that every kdtext student shares.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import re
import warnings
from typing import Any, Iterator

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "check_texts",
    "encodable_texts",
    "check_texts_and_labels",
    "resolve_device",
    "seed_from_random_state",
    "isolated_torch_rng",
    "SoftTargetStudentMixin",
    "is_soft_target_student",
    "LogitsClassifierMixin",
]


def _describe(obj: Any) -> str:
    text = repr(obj)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(obj).__name__} {text}"


def is_missing(value: Any) -> bool:
    """None, a float NaN of any precision, or pandas' ``NA``."""
    if value is None or type(value).__name__ == "NAType":
        return True
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


def check_texts(X: Any, *, name: str = "X", allow_empty: bool = False) -> list[str]:
    """Validate a collection of texts and return it as a list of ``str``.

    Parameters
    ----------
    X : list, tuple, numpy array, pandas Series or other iterable of str
        The texts. A single string is rejected (it would be read as a list
        of characters).
    name : str, default="X"
        Name used in error messages.
    allow_empty : bool, default=False
        Whether zero texts are acceptable.

    Returns
    -------
    texts : list of str

    Raises
    ------
    TypeError
        If ``X`` is a bare string, not iterable, or holds non-string items.
    ValueError
        If ``X`` holds None/NaN, is 2-D, or is empty (unless ``allow_empty``).

    Examples
    --------
    >>> from kdtext.base import check_texts
    >>> check_texts(["good film", "bad film"])
    ['good film', 'bad film']
    """
    if isinstance(X, (str, bytes)):
        raise TypeError(
            f"{name} must be a list-like of texts, got a single {type(X).__name__} "
            f"{_describe(X)}. Wrap it in a list: [{name[:1].lower() or 'x'}]."
        )
    if hasattr(X, "ndim") and getattr(X, "ndim", 1) != 1:
        shape = getattr(X, "shape", None)
        if not (getattr(X, "ndim", 1) == 2 and shape is not None and shape[1] == 1):
            raise ValueError(
                f"{name} must be a 1-D collection of texts, got an array of shape {shape}. "
                "Pass one column of texts, e.g. df['text']."
            )
        X = np.asarray(X).ravel()
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas Series / Index
        X = X.to_numpy()
    try:
        texts = list(X)
    except TypeError:
        raise TypeError(
            f"{name} must be a list-like of texts (list, tuple, numpy array or pandas "
            f"Series of str), got {_describe(X)}."
        ) from None
    if not texts and not allow_empty:
        raise ValueError(f"{name} is empty: at least one text is required.")
    for i, t in enumerate(texts):
        if isinstance(t, str):
            continue
        if isinstance(t, np.str_):
            texts[i] = str(t)
            continue
        if is_missing(t):
            n_missing = sum(1 for u in texts if is_missing(u))
            raise ValueError(
                f"{name} holds {n_missing} missing value(s) (None/NaN/NA); the first is at "
                f"position {i}. Drop or fill them first, e.g. df['text'].fillna('')."
            )
        raise TypeError(
            f"{name} must hold only str, but item {i} is {_describe(t)}. "
            f"Convert explicitly, e.g. [str(t) for t in {name}], if that is intended."
        )
    return texts


def encodable_texts(texts: list[str]) -> list[str]:
    """The one text rule applied before every tokenizer: unencodable code points become U+FFFD.

    A Python ``str`` can hold lone surrogates (code points U+D800-U+DFFF that
    are not part of a pair, e.g. from ``bytes.decode(errors="surrogateescape")``
    or from JSON with a broken ``"\\ud800"`` escape). UTF-8 cannot encode them,
    so tokenizers reject them. Each such code point is replaced by U+FFFD, the
    Unicode replacement character, as ``errors="replace"`` does when decoding;
    every other character is kept as is. Texts that need no change are
    returned as the same objects, and a list that needs none is returned
    unchanged.

    :func:`check_texts` accepts such texts (a teacher cache keys them exactly);
    kdtext's neural estimators and :func:`~kdtext.shrink_transformer` call this
    function just before tokenizing. A DEBUG log line counts the texts changed.

    Parameters
    ----------
    texts : list of str

    Returns
    -------
    texts : list of str

    Examples
    --------
    >>> from kdtext.base import encodable_texts
    >>> encodable_texts(["fine", "broken \\ud800 text"])
    ['fine', 'broken \ufffd text']
    """
    out = None
    for i, t in enumerate(texts):  # text by text: no copy of the whole corpus
        if t.isascii() or not _SURROGATE.search(t):
            continue
        if out is None:
            out = list(texts)
        out[i] = _SURROGATE.sub("\ufffd", t)
    if out is None:
        return texts
    logger.debug("replaced unencodable code points by U+FFFD in %d text(s)",
                 sum(a is not b for a, b in zip(out, texts)))
    return out


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_labels(y: Any, n: int, *, name: str = "y") -> np.ndarray:
    if y is None:
        raise ValueError(f"{name} is required for supervised training; got None.")
    if isinstance(y, (str, bytes)):
        raise TypeError(f"{name} must be a list-like of labels, got a single string {y!r}.")
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        raise ValueError(
            f"{name} must be 1-D, got shape {y.shape}. Use y.ravel() to flatten a column vector."
        )
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {y.shape}.")
    if len(y) != n:
        raise ValueError(
            f"X and {name} have different lengths: {n} texts but {len(y)} labels. "
            "Pass exactly one label per text."
        )
    if y.dtype == object:
        missing = [i for i, v in enumerate(y) if is_missing(v)]
        if missing:
            raise ValueError(
                f"{name} holds {len(missing)} missing label(s) (None/NaN/NA), first at position "
                f"{missing[0]}. Drop those rows or give them a label."
            )
        kinds = {}
        for i, v in enumerate(y):
            kinds.setdefault("str" if isinstance(v, str) else type(v).__name__, i)
        if "str" in kinds and len(kinds) > 1:
            other = next(k for k in kinds if k != "str")
            raise TypeError(
                f"{name} mixes label types: str and {other} (the first {other} is at position {kinds[other]}). "
                f"Use one type for all labels, e.g. {name} = [str(v) for v in {name}]."
            )
    elif y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError(f"{name} holds NaN labels, first at position {int(np.flatnonzero(np.isnan(y))[0])}.")
    return y


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray | None:
    """None, or a finite, non-negative float array of shape ``(n,)``; anything else is a clear error."""
    if sample_weight is None:
        return None
    sw = np.asarray(sample_weight, dtype=np.float64)
    if sw.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), one weight per text, got shape {sw.shape}.")
    if not np.isfinite(sw).all() or (sw < 0).any():
        raise ValueError("sample_weight must hold finite, non-negative weights.")
    return sw


def check_score_labels(y: Any, n: int, classes: np.ndarray, *, name: str = "y") -> np.ndarray:
    """Validate the true labels passed to ``score``: present, one per text, of the classes' type.

    Labels of the right type that the model never saw count as errors in the
    score (as in scikit-learn) and are reported in a warning, since a test
    fold may hold a rare class its training fold lacked.
    """
    if y is None or isinstance(y, (str, bytes)):
        raise ValueError(
            f"score needs the true labels {name} as a list-like with one label per text, got {y!r}. "
            "Pass them, e.g. clf.score(X_test, y_test)."
        )
    y = _check_labels(y, n, name=name)
    classes = np.asarray(classes)
    y_is_str = y.dtype.kind in "US" or (y.dtype == object and len(y) and isinstance(y[0], str))
    classes_are_str = classes.dtype.kind in "US" or (classes.dtype == object and isinstance(classes[0], str))
    if y_is_str != classes_are_str:
        raise ValueError(
            f"{name} holds {'strings' if y_is_str else 'numbers'} but the classes are "
            f"{'strings' if classes_are_str else 'numbers'} {classes.tolist()[:5]}: no label can match. "
            "Pass labels of the same kind as those given to fit."
        )
    unseen = sorted(set(y.tolist()) - set(classes.tolist()), key=str)
    if unseen:
        warnings.warn(
            f"{name} holds {len(unseen)} label(s) the model never saw, e.g. {unseen[:5]}; they count as errors. "
            f"Known classes: {classes.tolist()[:10]}.",
            UserWarning,
            stacklevel=3,
        )
    return y


def check_texts_and_labels(
    X: Any, y: Any, *, min_classes: int = 2
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Validate texts and labels for supervised training.

    Parameters
    ----------
    X : list-like of str
        Training texts.
    y : array-like of shape (n_samples,)
        Labels: integers or strings.
    min_classes : int, default=2
        The smallest number of distinct classes accepted.

    Returns
    -------
    texts : list of str
    y : ndarray
        The labels as given.
    classes : ndarray
        Sorted distinct labels.
    y_encoded : ndarray of int64
        Index of each label in ``classes``.

    Examples
    --------
    >>> from kdtext.base import check_texts_and_labels
    >>> _, _, classes, codes = check_texts_and_labels(["a", "b", "c"], ["pos", "neg", "pos"])
    >>> classes.tolist(), codes.tolist()
    (['neg', 'pos'], [1, 0, 1])
    """
    from sklearn.utils.multiclass import check_classification_targets

    texts = check_texts(X)
    y = _check_labels(y, len(texts))
    try:
        check_classification_targets(y)  # scikit-learn's own rule: "continuous" labels are refused
    except ValueError as exc:
        raise ValueError(
            f"{exc} Got y of dtype {y.dtype} with {len(np.unique(y))} distinct values. Pass class labels "
            "(ints or strings); for a regression target use a regressor."
            + (" An object array of numbers can be converted with np.asarray(y, dtype=int)." if y.dtype == object else "")
        ) from None
    classes, y_encoded = np.unique(y, return_inverse=True)
    if len(classes) < min_classes:
        raise ValueError(
            f"y holds {len(classes)} class(es) ({classes.tolist()!r}); a classifier needs at "
            f"least {min_classes}. Check that the labels were read correctly."
        )
    return texts, y, classes, y_encoded.astype(np.int64)


def resolve_device(device: Any = "auto"):
    """Turn a ``device`` parameter into a :class:`torch.device`.

    ``"auto"`` picks CUDA, then Apple MPS, then the CPU. Called in ``fit``,
    never in ``__init__``, so estimators stay cheap to clone.

    Examples
    --------
    >>> from kdtext.base import resolve_device
    >>> resolve_device("cpu").type
    'cpu'
    """
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device torch knows. Use 'auto', 'cpu', 'cuda', "
            "'cuda:0' or 'mps'."
        ) from exc
    if dev.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ValueError(
            f"device={device!r} cannot hold a trained model (kdtext trains and predicts on 'cpu', 'cuda', "
            "'mps' or 'xpu'). Use device='auto' or 'cpu'."
        )
    if dev.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise ValueError(f"device={device!r} was asked for, but no XPU is available here. Use device='auto' or 'cpu'.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but CUDA is not available here. Use device='auto' or 'cpu'.")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device={device!r} was asked for, but MPS is not available here. Use device='auto' or 'cpu'.")
    return dev


def seed_from_random_state(random_state: Any) -> int:
    """Derive a torch seed from a scikit-learn style ``random_state``.

    ``None`` draws fresh entropy, an int is used as is, and a
    ``numpy.random.RandomState`` / ``Generator`` is advanced by one draw
    (as scikit-learn does), never numpy's global state.
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, numbers.Integral):
        return int(random_state) % (2**63)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    raise ValueError(
        f"random_state must be None, an int, a numpy RandomState or Generator; got {_describe(random_state)}."
    )


@contextlib.contextmanager
def isolated_torch_rng(seed: int) -> Iterator[None]:
    """Seed torch inside the block and leave every global RNG state as it was.

    ``torch.manual_seed`` seeds the CPU and every device of the accelerator
    (all CUDA GPUs, or MPS), so all of them are forked, not only the one
    training runs on.
    """
    import torch

    accelerator = torch.accelerator.current_accelerator() if hasattr(torch, "accelerator") else None
    if accelerator is None and torch.cuda.is_available():
        accelerator = torch.device("cuda")
    if accelerator is None:
        fork = torch.random.fork_rng(devices=[])
    else:
        count = getattr(torch, accelerator.type).device_count()  # torch.cuda / torch.mps
        fork = torch.random.fork_rng(devices=list(range(count)), device_type=accelerator.type)
    with fork:
        torch.manual_seed(seed)
        yield


class SoftTargetStudentMixin:
    """The soft-target interface shared by every kdtext student.

    A student that implements ``fit_soft`` learns from a teacher's outputs
    rather than (or besides) hard labels. :class:`~kdtext.DistillationClassifier`
    calls it when present; any user-written torch student can implement it.

    The contract::

        student.fit_soft(X, teacher_logits, y=None, *, classes,
                         loss="kl", temperature=2.0, alpha=0.0) -> student

    - ``X``: list of str, the transfer set.
    - ``teacher_logits``: float array (n_samples, n_classes), the teacher's
      logits (log-probabilities work too: KL and softmax are shift-invariant).
    - ``y``: optional int array (n_samples,), the index of the gold class in
      ``classes``, or -1 where a text has no gold label.
    - ``classes``: the labels that column ``k`` of ``teacher_logits`` stands for;
      after fitting, ``student.classes_`` equals it.
    - ``loss``: ``"kl"`` (Hinton et al. 2015, scaled by T^2) or ``"mse"`` on
      logits (Tang et al. 2019).
    - ``alpha``: weight of the hard-label cross-entropy where gold labels exist:
      ``alpha * CE(y) + (1 - alpha) * soft``.
    """

    _soft_target_student = True

    def fit_soft(self, X, teacher_logits, y=None, *, classes, loss="kl", temperature=2.0, alpha=0.0):  # pragma: no cover - interface
        raise NotImplementedError


def is_soft_target_student(estimator: Any) -> bool:
    """Whether ``estimator`` implements the soft-target interface (``fit_soft``)."""
    return callable(getattr(estimator, "fit_soft", None))


class TextInputMixin:
    """scikit-learn tags of an estimator whose ``X`` is a 1-D sequence of texts (strings, not a 2-D array).

    Put it before ``BaseEstimator`` in the bases; a subclass that adds tags
    calls ``super().__sklearn_tags__()``.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags


class LogitsClassifierMixin:
    """``predict``, ``predict_proba``, ``predict_log_proba``, ``decision_function`` and ``score`` from logits.

    For classifiers whose one model output is ``predict_logits(X)`` (shape
    (n_samples, n_classes), columns in ``classes_`` order): kdtext's torch
    estimators and :class:`~kdtext.OnnxClassifier`. A subclass names its
    fitted attribute in ``_fitted_attribute`` (checked by ``score`` before
    the labels are).
    """

    _fitted_attribute: str = "classes_"

    def _check_fitted(self) -> None:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, self._fitted_attribute)

    def decision_function(self, X) -> np.ndarray:
        """Confidence scores, as scikit-learn's classifiers give them.

        Multiclass: the logits, shape (n_samples, n_classes). Binary: shape
        (n_samples,), the logit of ``classes_[1]`` minus that of
        ``classes_[0]`` (so ``> 0`` predicts ``classes_[1]``). For the full
        logits of a binary model use :meth:`predict_logits`.
        """
        logits = self.predict_logits(X)
        if logits.shape[1] == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        logits = self.predict_logits(X)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> np.ndarray:
        """Log of :meth:`predict_proba`."""
        logits = self.predict_logits(X).astype(np.float64)
        m = logits.max(axis=1, keepdims=True)
        return logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy of :meth:`predict` on ``(X, y)``.

        Parameters
        ----------
        X : list-like of str
            Texts.
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
        """
        from sklearn.metrics import accuracy_score

        self._check_fitted()
        texts = check_texts(X)
        y = check_score_labels(y, len(texts), self.classes_)
        sample_weight = check_sample_weight(sample_weight, len(texts))
        return float(accuracy_score(y, self.predict(texts), sample_weight=sample_weight))

    def predict(self, X) -> np.ndarray:
        """Predicted labels, taken from ``classes_``."""
        logits = self.predict_logits(X)
        return self.classes_[np.argmax(logits, axis=1)]
