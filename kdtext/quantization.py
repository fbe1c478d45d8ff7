"""int8 inference for a fitted teacher, to soft-label large transfer sets faster on a CPU.

Two backends, one result: a fitted classifier with ``predict_logits``,
``predict_proba`` and ``classes_``, ready to be the ``teacher`` of
:class:`~kdtext.DistillationClassifier`.

``"onnxruntime"`` (preferred)
    :func:`~kdtext.onnx.export_onnx` with ``quantize="int8"`` (onnxruntime's
    dynamic quantization of the exported graph), served by
    :class:`~kdtext.OnnxClassifier`.
``"torch"`` (where onnxruntime is absent)
    :class:`TorchInt8Classifier`: ``torch.ao.quantization.quantize_dynamic``
    on a copy of the model's ``nn.Linear`` (and ``nn.LSTM``) layers, run by
    the estimator's own prediction code.

:func:`int8_teacher` picks the first one available. This module imports
neither torch nor onnxruntime at import time.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import os
import tempfile
import warnings
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval

from .base import LogitsClassifierMixin, TextInputMixin, check_texts

logger = logging.getLogger(__name__)

__all__ = ["TorchInt8Classifier", "MarginFallbackClassifier", "int8_teacher", "BACKENDS"]

#: the values of ``int8_teacher(..., backend=...)``
BACKENDS = ("auto", "onnxruntime", "torch")


def _fitted_neural(estimator: Any, what: str):
    from sklearn.frozen import FrozenEstimator

    from ._neural import NeuralTextClassifier

    if isinstance(estimator, FrozenEstimator):  # a fitted estimator that survives clone (a GridSearchCV grid)
        estimator = estimator.estimator
    if not isinstance(estimator, NeuralTextClassifier):
        raise TypeError(
            f"{what} quantizes kdtext's neural estimators (TransformerClassifier, BiLSTMClassifier), got "
            f"{type(estimator).__name__}."
        )
    if not hasattr(estimator, "model_"):
        raise NotFittedError(f"This {type(estimator).__name__} is not fitted yet: call fit before {what}.")
    return estimator


def _onnxruntime_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


class TorchInt8Classifier(TextInputMixin, LogitsClassifierMixin, ClassifierMixin, BaseEstimator):
    """A fitted kdtext neural estimator with int8 ``nn.Linear`` / ``nn.LSTM`` layers, for CPU inference in torch.

    :meth:`fit` applies ``torch.ao.quantization.quantize_dynamic`` (int8
    weights, activations quantized per batch) to a copy of the estimator's
    model, all its ``nn.Linear`` and ``nn.LSTM`` layers but a transformer's
    ``classifier`` head (tiny, and kept in fp32); the estimator itself is
    left as it was. Texts go through the
    estimator's own prediction code (tokenizer, batching by length), so this
    is the torch fallback of ``export_onnx(..., quantize="int8")`` where
    onnxruntime is not installed. Like :class:`~kdtext.OnnxClassifier`, the
    model is already trained: ``fit`` ignores ``X`` and ``y``.

    Parameters
    ----------
    estimator : TransformerClassifier or BiLSTMClassifier
        A fitted estimator on the CPU, or one wrapped in
        ``sklearn.frozen.FrozenEstimator``. ``clone`` keeps it (shared, not
        refitted or copied, as for FrozenEstimator); a ``GridSearchCV`` grid
        over fitted estimators needs them wrapped in FrozenEstimator, as
        GridSearchCV clones parameter values.

    Attributes
    ----------
    estimator_ : TransformerClassifier or BiLSTMClassifier
        A shallow copy of ``estimator`` (the tokenizer is shared) whose
        ``model_`` is the quantized copy, on the CPU, without autocast.
    classes_ : ndarray of shape (n_classes,)
        The estimator's classes.

    Notes
    -----
    The quantized copy serves predictions only: refit ``estimator`` and
    quantize again rather than fitting ``estimator_``; ``save_pretrained``
    and ``export_onnx`` of it are not supported (export the fp32 estimator
    with ``quantize="int8"`` instead). While both exist, memory holds the
    fp32 model and the int8 copy (about a quarter of the Linear weights, plus
    a copy of the embeddings). A pickle holds both too.

    The int8 kernels are torch's ``x86`` (fbgemm/oneDNN) engine; they need a
    CPU and are slower than onnxruntime's on the same graph (see
    ``benchmarks/teacher_throughput.py``).

    Examples
    --------
    >>> from kdtext.quantization import TorchInt8Classifier
    >>> fast = TorchInt8Classifier(teacher).fit()  # doctest: +SKIP
    >>> fast.predict_proba(["a great film"]).round(2)  # doctest: +SKIP
    array([[0.04, 0.96]], dtype=float32)
    """

    _parameter_constraints: dict = {"estimator": "no_validation"}

    def __init__(self, estimator: Any):
        self.estimator = estimator

    def __sklearn_clone__(self):
        # the estimator is fitted (the model to quantize): a clone shares it; cloning it would unfit it
        return type(self)(self.estimator)

    def fit(self, X=None, y=None) -> "TorchInt8Classifier":
        """Quantize a copy of the estimator's model. ``X`` and ``y`` are ignored.

        Returns
        -------
        self : object

        Raises
        ------
        TypeError
            If ``estimator`` is not a kdtext neural estimator.
        NotFittedError
            If it is not fitted.
        ValueError
            If its model is not on the CPU.
        """
        import torch

        est = _fitted_neural(self.estimator, "TorchInt8Classifier")
        device = getattr(est, "device_", torch.device("cpu"))
        if torch.device(device).type != "cpu":
            raise ValueError(
                f"torch's int8 kernels run on the CPU, but this {type(est).__name__} is on {device}. Fit it with "
                "device='cpu', or use int8_teacher(..., backend='onnxruntime'), which exports to the CPU."
            )
        qconfig = torch.ao.quantization.default_dynamic_qconfig
        # every Linear and LSTM but a top-level Linear head (``classifier``): kdtext's mean pooling feeds a
        # BERT-style head by its type (nn.Linear), and the head is a tiny share of the work
        spec = {name: qconfig for name, m in est.model_.named_modules()
                if type(m) in (torch.nn.Linear, torch.nn.LSTM) and name != "classifier"}
        with warnings.catch_warnings():  # torch.ao.quantization announces its deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            was_training = est.model_.training
            est.model_.eval()
            try:
                model = torch.ao.quantization.quantize_dynamic(est.model_, spec, dtype=torch.qint8)
            finally:
                est.model_.train(was_training)
        n = sum(1 for m in model.modules() if type(m).__module__.startswith("torch.ao.nn.quantized"))
        if n == 0:
            raise ValueError(f"{type(est).__name__}'s model has no nn.Linear or nn.LSTM layer to quantize.")
        inner = copy.copy(est)
        inner.model_ = model.eval()
        inner.mixed_precision = False
        self.estimator_, self.classes_ = inner, np.asarray(est.classes_)
        self._base_fingerprint = est._fingerprint()
        logger.info("TorchInt8Classifier: %d layers of %s quantized to int8", n, type(est).__name__)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimator_"):
            raise NotFittedError("This TorchInt8Classifier is not fitted yet: call fit() (X and y are ignored).")

    def predict_logits(self, X) -> np.ndarray:
        """Raw logits of the int8 model, shape (n_samples, n_classes), float32."""
        self._check_fitted()
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with torch.inference_mode():
                return np.asarray(self.estimator_.predict_logits(X), dtype=np.float32)

    def _fingerprint(self) -> str:
        """The fp32 estimator's fingerprint, marked int8: names the teacher cache of DistillationClassifier."""
        self._check_fitted()
        import torch

        return hashlib.blake2b(f"{self._base_fingerprint}:torch-int8:{torch.__version__}".encode(),
                               digest_size=16).hexdigest()


class MarginFallbackClassifier(TextInputMixin, LogitsClassifierMixin, ClassifierMixin, BaseEstimator):
    """Label with a fast classifier; re-label with an exact one the texts it is unsure of.

    An int8 teacher disagrees with its fp32 self on 1.5-2% of texts, and
    nearly all of them are texts it is unsure of: the two classes it ranks
    highest are close. :meth:`predict_logits` runs ``fast`` on every text and
    ``exact`` only on the texts whose top-two probability margin under
    ``fast`` (``p[top] - p[second]``) is below ``margin``; those texts get
    ``exact``'s logits. The result agrees with ``exact`` wherever ``fast``
    was sure, and is ``exact`` itself near the decision boundary, where soft
    labels matter most to a student. :func:`int8_teacher` builds one with
    ``rescore_margin=...``.

    Measured with all-MiniLM-L6-v2 fine-tuned on 8,000 SST-2 texts (the
    distill_sst2 teacher; 2,693 dev + test sentences, onnxruntime int8 as
    ``fast``, the fp32 teacher as ``exact``): argmax agreement with fp32
    98.29% without re-labeling; ``margin=0.2`` re-labels 2.6% of the texts
    (99.11% agreement), ``0.3`` 3.6% (99.33%), ``0.4`` 4.9% (99.63%). The
    cost is ``fast``'s time plus ``exact``'s on that share of the texts: on
    a CPU with AVX-512 VNNI, ``margin=0.3`` ran 2.05x torch fp32 (3.3%
    re-labeled, 99.44% agreement), int8 alone 2.41x.
    See ``docs/onnx.rst`` for other data sets.

    Like :class:`~kdtext.OnnxClassifier`, the models are already trained:
    ``fit`` checks them and ignores ``X`` and ``y``; ``clone`` shares them.

    Parameters
    ----------
    fast : classifier
        A fitted classifier with ``predict_logits`` and ``classes_`` (an
        :class:`~kdtext.OnnxClassifier` over an int8 export, a
        :class:`TorchInt8Classifier`).
    exact : classifier
        A fitted classifier with ``predict_logits`` and the same ``classes_``
        in the same order (the fp32 teacher ``fast`` was made from).
    margin : float in [0, 1], default=0.3
        Texts whose top-two probability margin under ``fast`` is below this
        are re-labeled by ``exact``. 0 never calls ``exact``; 1 re-labels
        every text. 0.3 gave 99.3% agreement with fp32 for 3.6% of the texts
        re-labeled on the SST-2 measurement above.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The classes of both classifiers.

    Examples
    --------
    >>> from kdtext.quantization import MarginFallbackClassifier, int8_teacher
    >>> fast = int8_teacher(teacher)  # doctest: +SKIP
    >>> careful = MarginFallbackClassifier(fast, teacher, margin=0.3).fit()  # doctest: +SKIP
    >>> careful = int8_teacher(teacher, rescore_margin=0.3)  # the same, in one call  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        "fast": "no_validation",
        "exact": "no_validation",
        "margin": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(self, fast: Any, exact: Any, *, margin: float = 0.3):
        self.fast = fast
        self.exact = exact
        self.margin = margin

    def __sklearn_clone__(self):
        # both models are fitted: a clone shares them (as FrozenEstimator does); cloning them would unfit them
        return type(self)(self.fast, self.exact, margin=self.margin)

    def fit(self, X=None, y=None) -> "MarginFallbackClassifier":
        """Check both classifiers. ``X`` and ``y`` are ignored.

        Returns
        -------
        self : object

        Raises
        ------
        TypeError
            If either has no ``predict_logits``.
        NotFittedError
            If either is not fitted.
        ValueError
            If ``margin`` is not in [0, 1], or their classes differ.
        """
        self._validate_params()
        classes = {}
        for role in ("fast", "exact"):
            model = getattr(self, role)
            if not callable(getattr(model, "predict_logits", None)):
                raise TypeError(
                    f"MarginFallbackClassifier's {role} must have predict_logits (an OnnxClassifier, a "
                    f"TorchInt8Classifier or a kdtext neural estimator), got {type(model).__name__}."
                )
            if getattr(model, "classes_", None) is None:
                raise NotFittedError(
                    f"MarginFallbackClassifier's {role} ({type(model).__name__}) is not fitted: it has no classes_. "
                    "Pass fitted classifiers."
                )
            classes[role] = np.asarray(model.classes_)
        a, b = classes["fast"], classes["exact"]
        if a.shape != b.shape or not np.array_equal(a, b):
            raise ValueError(
                f"fast and exact must have the same classes in the same order, got {a.tolist()} and {b.tolist()}. "
                "Pass the int8 copy of the same teacher."
            )
        self.classes_ = a
        return self

    def predict_logits(self, X) -> np.ndarray:
        """``fast``'s logits, with ``exact``'s for the texts below ``margin``; (n_samples, n_classes), float32."""
        self._check_fitted()
        texts = check_texts(X)
        logits = np.array(self.fast.predict_logits(texts), dtype=np.float32)
        # margin=1 means every text (a margin of exactly 1.0 is reachable in floating point: a logit gap > 37)
        unsure = np.arange(len(texts)) if self.margin >= 1 else np.flatnonzero(_top_two_margin(logits) < self.margin)
        if unsure.size:
            logits[unsure] = np.asarray(self.exact.predict_logits([texts[i] for i in unsure]), dtype=np.float32)
        logger.debug("MarginFallbackClassifier: %d of %d texts re-labeled by %s", unsure.size, len(texts),
                     type(self.exact).__name__)
        return logits

    def _fingerprint(self) -> str:
        """Both classifiers' fingerprints and the margin: names the teacher cache of DistillationClassifier."""
        from .distillation import teacher_fingerprint

        self._check_fitted()
        key = f"{teacher_fingerprint(self.fast)}:{teacher_fingerprint(self.exact)}:margin={float(self.margin)!r}"
        return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def _top_two_margin(logits: np.ndarray) -> np.ndarray:
    """Per row, the softmax probability of the top class minus that of the second."""
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if p.shape[1] < 2:
        return np.ones(len(p))
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def int8_teacher(estimator: Any, path: str | os.PathLike | None = None, *, backend: str = "auto",
                 rescore_margin: float | None = None, **params) -> Any:
    """An int8 copy of a fitted teacher, to label a large transfer set faster on a CPU.

    Parameters
    ----------
    estimator : TransformerClassifier or BiLSTMClassifier
        A fitted estimator; it is left unchanged.
    path : str, path-like or None, default=None
        For the onnxruntime backend: the folder the int8 export is written
        to (kept, reusable with ``OnnxClassifier.from_pretrained``). None
        writes it to a temporary folder removed once loaded (the classifier
        holds the graph's bytes).
    backend : {"auto", "onnxruntime", "torch"}, default="auto"
        ``"onnxruntime"``: ``export_onnx(..., quantize="int8")`` served by
        :class:`~kdtext.OnnxClassifier` (needs ``pip install
        "kdtext[onnx]"``). ``"torch"``: :class:`TorchInt8Classifier`.
        ``"auto"``: onnxruntime when ``onnx``, ``onnxscript`` and
        ``onnxruntime`` can be imported, else torch.
    rescore_margin : float in [0, 1] or None, default=None
        None: the int8 classifier alone. A number: a
        :class:`MarginFallbackClassifier` that re-labels with ``estimator``
        itself (fp32) the texts whose int8 top-two probability margin is
        below it. On the SST-2 teacher, 0.3 raised argmax agreement with fp32
        from 98.3% to 99.3% by re-labeling 3.6% of the texts. Off by default:
        measured on two development sets only (``docs/onnx.rst``).
    **params
        Passed to :class:`~kdtext.OnnxClassifier` (``batch_size``,
        ``n_threads``, ``providers``); refused for the torch backend.

    Returns
    -------
    teacher : OnnxClassifier, TorchInt8Classifier or MarginFallbackClassifier
        Fitted; has ``predict_logits``, ``predict_proba``, ``predict`` and
        ``classes_``.

    Raises
    ------
    ValueError
        If ``backend`` is unknown, ``rescore_margin`` is not in [0, 1], or
        ``params`` are given with the torch backend.

    Examples
    --------
    >>> from kdtext import DistillationClassifier
    >>> from kdtext.quantization import int8_teacher
    >>> fast = int8_teacher(teacher)  # doctest: +SKIP
    >>> kd = DistillationClassifier(fast, student).fit(unlabeled_texts)  # doctest: +SKIP
    >>> careful = int8_teacher(teacher, rescore_margin=0.3)  # fp32 for the unsure texts  # doctest: +SKIP
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}.")
    if rescore_margin is not None:
        MarginFallbackClassifier(None, None, margin=rescore_margin)._validate_params()
    _fitted_neural(estimator, "int8_teacher")
    if backend == "auto":
        backend = "onnxruntime" if _onnxruntime_available() else "torch"
        logger.info("int8_teacher: backend %r", backend)
    if backend == "torch":
        if params or path is not None:
            raise ValueError(
                f"the torch backend takes no folder and no OnnxClassifier parameters, got path={path!r} and "
                f"{sorted(params)}. Drop them, or use backend='onnxruntime'."
            )
        fast = TorchInt8Classifier(estimator).fit()
    else:
        from .onnx import OnnxClassifier, export_onnx

        if path is not None:
            fast = OnnxClassifier.from_pretrained(export_onnx(estimator, path, quantize="int8"), **params)
        else:
            with tempfile.TemporaryDirectory(prefix="kdtext-int8-") as tmp:
                folder = export_onnx(estimator, Path(tmp) / "int8", quantize="int8")
                # an int8 graph is always one file (export_onnx writes no external data for it), whose bytes
                # the classifier holds: the folder can go
                fast = OnnxClassifier.from_pretrained(folder, **params)
    if rescore_margin is None:
        return fast
    return MarginFallbackClassifier(fast, estimator, margin=rescore_margin).fit()
