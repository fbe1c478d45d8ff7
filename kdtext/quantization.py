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
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from .base import LogitsClassifierMixin, TextInputMixin

logger = logging.getLogger(__name__)

__all__ = ["TorchInt8Classifier", "int8_teacher", "BACKENDS"]

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


def int8_teacher(estimator: Any, path: str | os.PathLike | None = None, *, backend: str = "auto",
                 **params) -> Any:
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
    **params
        Passed to :class:`~kdtext.OnnxClassifier` (``batch_size``,
        ``n_threads``, ``providers``); refused for the torch backend.

    Returns
    -------
    teacher : OnnxClassifier or TorchInt8Classifier
        Fitted; has ``predict_logits``, ``predict_proba``, ``predict`` and
        ``classes_``.

    Raises
    ------
    ValueError
        If ``backend`` is unknown, or ``params`` are given with the torch
        backend.

    Examples
    --------
    >>> from kdtext import DistillationClassifier
    >>> from kdtext.quantization import int8_teacher
    >>> fast = int8_teacher(teacher)  # doctest: +SKIP
    >>> kd = DistillationClassifier(fast, student).fit(unlabeled_texts)  # doctest: +SKIP
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}.")
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
        return TorchInt8Classifier(estimator).fit()

    from .onnx import OnnxClassifier, export_onnx

    if path is not None:
        return OnnxClassifier.from_pretrained(export_onnx(estimator, path, quantize="int8"), **params)
    with tempfile.TemporaryDirectory(prefix="kdtext-int8-") as tmp:
        folder = export_onnx(estimator, Path(tmp) / "int8", quantize="int8")
        # an int8 graph is always one file (export_onnx writes no external data for it), whose bytes the
        # classifier holds: the folder can go
        return OnnxClassifier.from_pretrained(folder, **params)
