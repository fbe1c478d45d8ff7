"""Shared machinery of kdtext's torch estimators (private).

:class:`NeuralTextClassifier` holds everything a torch text classifier needs
once: input checks, label encoding, device and seed resolution, batching by
length, the training loop with early stopping and best-weight restoring,
interrupt safety, fast sorted inference, device-safe pickling and
``save_pretrained`` / ``from_pretrained``. A subclass supplies four hooks:
``_init_model``, ``_encode``, ``_collate`` and ``_forward`` (plus
``_save_model`` / ``_load_model`` for persistence, and ``_onnx_tokenizer`` /
``_onnx_module`` for :func:`kdtext.onnx.export_onnx`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import tempfile
import time
import warnings
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .base import (
    LogitsClassifierMixin,
    SoftTargetStudentMixin,
    TextInputMixin,
    check_texts,
    check_texts_and_labels,
    encodable_texts,
    isolated_torch_rng,
    resolve_device,
    seed_from_random_state,
)
from ._parallel import DataParallel, launched_world_size
from ._stream import (
    _BLOCK,
    SCRATCH_MIN_BYTES,
    StreamedTexts,
    argsort_lengths,
    class_counts,
    flatnonzero_blocks,
    scratch_array,
    scratch_range,
    shuffled_range,
    stratified_holdout,
    take_rows,
    take_texts,
)
from .exceptions import ModelNotFoundError, TrainingInterruptedWarning

logger = logging.getLogger(__name__)

CONFIG_NAME = "kdtext_config.json"
CHECKPOINT_NAME = "kdtext_checkpoint.pt"

# Texts are tokenized and length-sorted in chunks of this many, so a million
# texts never sit in memory as tensors at once.
_CHUNK = 4096


def _is_jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def pad_ids(seqs: Sequence[Sequence[int]], pad_id: int):
    """Right-padded ``(ids, lengths)`` long tensors of a batch of id sequences (on the CPU)."""
    import torch

    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    ids = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return ids, lengths


#: file names of a torch module saved by :func:`save_module_folder`
MODULE_WEIGHTS_NAME = "model.safetensors"
MODULE_TOKENIZER_NAME = "tokenizer.json"


def save_module_folder(path: Path, module: Any, tokenizer: Any, config_name: str, config: dict) -> None:
    """Write a module's weights (safetensors), its ``tokenizers.Tokenizer`` and a JSON config into ``path``."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path / MODULE_WEIGHTS_NAME))
    tokenizer.save(str(path / MODULE_TOKENIZER_NAME))
    (path / config_name).write_text(json.dumps(config, indent=2), encoding="utf-8")


def read_module_folder(path: Path, what: str, config_name: str, required: tuple[str, ...] = ("module",)):
    """The ``(config, tokenizer)`` of a folder written by :func:`save_module_folder`, with a clear error for a
    missing or damaged file. ``config["module"]`` must be an object; the other ``required`` keys must exist."""
    from tokenizers import Tokenizer

    missing = [f for f in (config_name, MODULE_TOKENIZER_NAME, MODULE_WEIGHTS_NAME) if not (path / f).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"The {what} folder {path} lacks {', '.join(missing)}; save_pretrained writes "
            f"{config_name}, {MODULE_TOKENIZER_NAME} and {MODULE_WEIGHTS_NAME}. Save the estimator again."
        )
    try:
        config = json.loads((path / config_name).read_text(encoding="utf-8"))
        config["module"] = dict(config["module"])
        for key in required:
            config[key]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ModelNotFoundError(
            f"{path / config_name} is damaged or truncated ({type(exc).__name__}: {exc}). Save the "
            "estimator again."
        ) from None
    try:
        tokenizer = Tokenizer.from_file(str(path / MODULE_TOKENIZER_NAME))
    except Exception as exc:
        raise ModelNotFoundError(
            f"{path / MODULE_TOKENIZER_NAME} cannot be read ({exc}); it is damaged or truncated. Save the estimator "
            "again."
        ) from None
    return config, tokenizer


def load_module_weights(path: Path, module: Any) -> None:
    """Load the weights :func:`save_module_folder` wrote into ``module``, with a clear error."""
    from safetensors.torch import load_file

    try:
        module.load_state_dict(load_file(str(path / MODULE_WEIGHTS_NAME)))
    except Exception as exc:
        raise ModelNotFoundError(
            f"{path / MODULE_WEIGHTS_NAME} cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0]}); it "
            "is damaged, truncated or from another model. Save the estimator again."
        ) from None


#: ``min_bytes`` of :func:`kdtext._stream.scratch_array` for an in-memory fit: its per-text arrays stay in memory.
_IN_MEMORY = np.iinfo(np.int64).max


def length_sorted_batches(lengths: Sequence[int], batch_size: int, *,
                          min_bytes: int | None = _IN_MEMORY) -> list[np.ndarray]:
    """Batches of indices, longest first, so each batch pads to similar lengths.

    The order is a :func:`~kdtext._stream.scratch_array` from ``min_bytes``
    (a streamed fit maps it to a file); the batches are views of it."""
    order = argsort_lengths(np.asarray(lengths), min_bytes=min_bytes)  # a memmap's view, never a copy
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def bucketed_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator, *,
                     idx: np.ndarray | None = None, min_bytes: int | None = _IN_MEMORY) -> list[np.ndarray]:
    """Shuffled training batches of similar lengths: positions into ``idx`` (the texts ``idx[b]``), or into ``lengths``.

    Shuffle, cut into pools of 50 batches, sort each pool by length, cut it into
    batches, then shuffle the batch order: randomness as with plain shuffling,
    padding close to that of fully sorted batches. The shuffled positions are
    one :func:`~kdtext._stream.scratch_array` from ``min_bytes`` (a streamed
    fit maps it to a file), sorted pool by pool in place; the batches are views.
    """
    lengths = np.asarray(lengths)  # a memmap's view, never a copy
    n = len(lengths) if idx is None else len(idx)
    perm = shuffled_range(n, rng, min_bytes=min_bytes)  # the draws of rng.permutation(n)
    pool = batch_size * 50  # a multiple of batch_size: batches never straddle two pools
    for start in range(0, n, pool):
        chunk = np.array(perm[start : start + pool])
        of_chunk = lengths[chunk] if idx is None else lengths[idx[chunk]]
        perm[start : start + pool] = chunk[np.argsort(of_chunk, kind="stable")]
    batches = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    rng.shuffle(batches)
    return batches


class _RestartFit(Exception):
    """Internal: a checkpoint matched but could not be restored; it was set aside and the fit starts anew."""


class _TokenStore:
    """Token id sequences of many texts in one int32 buffer (``store[i]`` is a view).

    A list of Python int lists costs about 10x more: 200,000 short texts as
    lists held hundreds of MB before training began.
    """

    def __init__(self, flat: np.ndarray, lengths: np.ndarray, *, min_bytes: int | None = _IN_MEMORY):
        self.flat = flat
        self.lengths = lengths
        self.offsets = scratch_array(len(lengths) + 1, np.int64, min_bytes=min_bytes)
        self.offsets[0] = 0
        np.cumsum(lengths, out=self.offsets[1:])

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]


class _Checkpoint:
    """One file in ``checkpoint_dir`` holding everything needed to resume a fit.

    Written at every epoch end to a temporary file, flushed to disk and then
    renamed over the previous one, so a process killed at any moment leaves
    either the previous complete checkpoint or the new one. Loaded with
    ``torch.load(weights_only=True)``: tensors, numbers, strings and
    containers only, never arbitrary pickled objects.
    """

    def __init__(self, folder: str | os.PathLike, fingerprint: str):
        self.folder = Path(folder)
        self.file = self.folder / CHECKPOINT_NAME
        self.fingerprint = fingerprint

    def load(self) -> dict | None:
        import torch

        for stale in self.folder.glob(".checkpoint-*.tmp"):  # left by a process killed while writing
            with contextlib.suppress(OSError):
                stale.unlink()
        if not self.file.is_file():
            return None
        try:
            state = torch.load(self.file, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or state.get("format") != 1:
                raise ValueError("not a kdtext checkpoint of format 1")
        except Exception as exc:  # unreadable: keep it aside (never overwrite hours of work), start afresh
            self.set_aside(f"{type(exc).__name__}: {exc}")
            return None
        if state.get("fingerprint") != self.fingerprint:
            warnings.warn(
                f"The checkpoint {self.file} belongs to another fit (different texts, labels, teacher outputs or "
                "training parameters); training starts from scratch and overwrites it. Use a new "
                "checkpoint_dir per fit to keep both.",
                UserWarning,
                stacklevel=5,
            )
            return None
        return state

    def set_aside(self, reason: str) -> None:
        """Rename an unusable checkpoint to ``*.unreadable-<time>`` and say so."""
        aside = self.file.with_name(f"{self.file.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        with contextlib.suppress(OSError):
            os.replace(self.file, aside)
        warnings.warn(
            f"The checkpoint {self.file} cannot be used ({reason}); it was kept as {aside.name} and training "
            "starts from scratch.",
            UserWarning,
            stacklevel=6,
        )

    def save(self, state: dict) -> None:
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        state = {**state, "fingerprint": self.fingerprint, "format": 1}
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".checkpoint-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(state, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class _TorchBlob:
    """A torch object serialised by ``torch.save`` inside a pickle."""

    def __init__(self, obj: Any):
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        self.data = buf.getvalue()

    def load(self, map_location):
        import torch

        return torch.load(io.BytesIO(self.data), map_location=map_location, weights_only=False)


#: The ``scoring`` options of the validation split: computed from a confusion matrix, which processes can sum.
SCORINGS = ("accuracy", "balanced_accuracy", "f1_macro")


def score_from_confusion(confusion: np.ndarray, scoring: str) -> float:
    """scikit-learn's ``accuracy_score``, ``balanced_accuracy_score`` or ``f1_score(average="macro")``.

    ``confusion[i, j]`` counts texts of target class ``i`` predicted as
    ``j``. As in scikit-learn, balanced accuracy averages the recall of the
    classes that occur among the targets, and macro-F1 the F1 of the classes
    that occur among targets or predictions.

    Examples
    --------
    >>> import numpy as np
    >>> score_from_confusion(np.array([[8, 2], [1, 1]]), "balanced_accuracy")
    0.65
    """
    c = np.asarray(confusion, dtype=np.float64)
    total = c.sum()
    if total == 0:
        return 0.0
    tp = np.diag(c)
    if scoring == "accuracy":
        return float(tp.sum() / total)
    support = c.sum(axis=1)
    if scoring == "balanced_accuracy":
        present = support > 0
        return float(np.mean(tp[present] / support[present]))
    if scoring == "f1_macro":
        predicted = c.sum(axis=0)
        labels = (support > 0) | (predicted > 0)
        return float(np.mean(2 * tp[labels] / (support[labels] + predicted[labels])))
    raise ValueError(f"scoring must be one of {SCORINGS}; got {scoring!r}")


class NeuralTextClassifier(SoftTargetStudentMixin, TextInputMixin, LogitsClassifierMixin, ClassifierMixin, BaseEstimator):
    """Base class of kdtext's torch text classifiers. Not for direct use."""

    _parameter_constraints: dict = {
        "max_length": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "predict_batch_size": [Interval(Integral, 1, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "warmup_ratio": [Interval(Real, 0, 1, closed="both")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "scoring": [StrOptions(set(SCORINGS))],
        "device": "no_validation",  # checked by resolve_device in fit
        "mixed_precision": ["boolean", StrOptions({"auto"})],
        "checkpoint_dir": [str, os.PathLike, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    _fitted_attribute = "model_"

    #: ``fit_soft`` takes a :class:`~kdtext.TextFiles` (or the distiller's stream of texts) and reads it chunk by
    #: chunk: ``_init_model`` accepts a stream (an iterable with ``len`` and ``iter_chunks``, not a list) and
    #: the tokens go to a disk-backed store. A subclass whose ``_init_model`` needs a list sets it False.
    _streams_transfer_set: bool = True

    # attributes holding torch objects, serialised device-safely by __getstate__
    _torch_attributes: tuple[str, ...] = ("model_",)

    # ------------------------------------------------------------------ hooks
    def _init_model(self, texts: list[str], n_classes: int) -> None:  # pragma: no cover
        """Set ``self.tokenizer_`` and ``self.model_`` (on the CPU) for ``n_classes``."""
        raise NotImplementedError

    def _encode(self, texts: list[str]) -> list[list[int]]:  # pragma: no cover
        """Token ids of each text, truncated to ``max_length``."""
        raise NotImplementedError

    def _collate(self, seqs: list[list[int]], device) -> dict:  # pragma: no cover
        """Pad a batch of id lists into the model's input tensors on ``device``."""
        raise NotImplementedError

    def _forward(self, batch: dict):  # pragma: no cover
        """Logits of shape (batch, n_classes) for a collated batch."""
        raise NotImplementedError

    def _save_model(self, path: Path) -> None:  # pragma: no cover
        raise NotImplementedError

    def _load_model(self, path: Path) -> None:  # pragma: no cover
        raise NotImplementedError

    def _onnx_tokenizer(self):  # pragma: no cover
        """For :func:`kdtext.onnx.export_onnx`: a ``tokenizers.Tokenizer`` that gives ``_encode``'s ids (truncation
        set, padding off) and the rules around it, ``{"add_special_tokens": bool, "empty_as_pad": bool}``."""
        raise NotImplementedError

    def _onnx_module(self, input_names: list[str]):
        """For :func:`kdtext.onnx.export_onnx`: a torch module mapping the tensors of a collated batch, in
        ``input_names`` order, to the logits. By default ``_forward`` itself."""
        import torch

        estimator = self

        class Forward(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = estimator.model_  # registered, so the exporter finds the weights

            def forward(self, *inputs):
                return estimator._forward(dict(zip(input_names, inputs)))

        return Forward()

    def _param_groups(self) -> list[dict]:
        """AdamW parameter groups: no weight decay on biases and norms."""
        decay, no_decay = [], []
        for name, p in self.model_.named_parameters():
            if not p.requires_grad:
                continue
            if p.ndim < 2 or "norm" in name.lower():
                no_decay.append(p)
            else:
                decay.append(p)
        return [
            {"params": decay, "weight_decay": self.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    # ------------------------------------------------------------ sklearn API
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags

    def fit(self, X, y):
        """Train on texts with hard labels.

        Parameters
        ----------
        X : list-like of str of shape (n_samples,)
            Training texts.
        y : array-like of shape (n_samples,)
            Labels, integers or strings; ``classes_`` keeps them.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._validate_params()
        texts, _, classes, y_idx = check_texts_and_labels(X, y)
        self._check_class_weight(classes)
        self._fit_impl(texts, classes, y_idx, None, loss="ce", temperature=1.0, alpha=1.0)
        return self

    def fit_soft(self, X, teacher_logits, y=None, *, classes, loss="kl", temperature=2.0, alpha=0.0, hidden=None):
        """Train on a teacher's soft targets, with gold labels where given.

        This is kdtext's soft-target interface (see
        :class:`kdtext.base.SoftTargetStudentMixin`), used by
        :class:`~kdtext.DistillationClassifier`.

        Parameters
        ----------
        X : list-like of str of shape (n_samples,), or TextFiles
            The transfer set. A :class:`~kdtext.TextFiles` is streamed:
            read chunk by chunk on each pass, its tokens kept in a
            disk-backed store, never all texts in memory at once.
        teacher_logits : array-like of shape (n_samples, n_classes)
            The teacher's logits (or log-probabilities).
        y : array-like of int of shape (n_samples,), default=None
            Index into ``classes`` of each text's gold label, -1 where a text
            has none. None means no gold labels.
        classes : array-like of shape (n_classes,)
            The labels that the columns of ``teacher_logits`` stand for.
        loss : {"kl", "mse"}, default="kl"
            Soft loss: KL divergence at ``temperature`` scaled by T^2
            (Hinton et al. 2015) or mean squared error on logits (Tang et al. 2019).
        temperature : float, default=2.0
            Softmax temperature of the KL loss.
        alpha : float, default=0.0
            Weight of the hard-label cross-entropy.
        hidden : kdtext._hidden.HiddenTarget or None, default=None
            Hidden-state losses against a transformer teacher run beside the
            student (set by :class:`~kdtext.DistillationClassifier`'s
            ``hidden_loss`` / ``pooled_weight``; transformer students only).

        Returns
        -------
        self : object
        """
        self._validate_params()
        if hidden is not None and not hasattr(self, "_forward_hidden"):
            raise TypeError(
                f"{type(self).__name__} has no transformer hidden states to match: hidden-state distillation "
                "(hidden_loss / pooled_weight) needs a TransformerClassifier student."
            )
        texts = self._streamed(X)
        if texts is None:
            texts = check_texts(X)
        classes = np.asarray(classes)
        if classes.ndim != 1 or len(classes) < 2:
            raise ValueError(f"classes must be 1-D with at least 2 labels, got {classes!r}.")
        logits = np.asarray(teacher_logits, dtype=np.float32)
        if logits.shape != (len(texts), len(classes)):
            raise ValueError(
                f"teacher_logits must have shape (n_samples, n_classes) = ({len(texts)}, {len(classes)}), "
                f"got {logits.shape}."
            )
        if not all(np.isfinite(logits[s : s + _BLOCK]).all() for s in range(0, len(logits), _BLOCK)):
            raise ValueError("teacher_logits holds NaN or infinite values; pass finite logits or log-probabilities.")
        if y is None:  # a stream's per-text arrays are memory-mapped (kdtext._stream.scratch_array)
            y_idx = scratch_array(len(texts), np.int64, fill=-1,
                                  min_bytes=SCRATCH_MIN_BYTES if isinstance(texts, StreamedTexts) else _IN_MEMORY)
        else:
            y_idx = np.asarray(y)
            if y_idx.shape != (len(texts),) or y_idx.dtype.kind not in "iu":
                raise ValueError(
                    f"y must be an int array of shape ({len(texts)},) holding class indices or -1, "
                    f"got dtype {y_idx.dtype} and shape {y_idx.shape}."
                )
            if any(((b := np.asarray(y_idx[s : s + _BLOCK])) < -1).any() or (b >= len(classes)).any()
                   for s in range(0, len(y_idx), _BLOCK)):
                raise ValueError(f"y must hold indices in [0, {len(classes)}) or -1 for unlabeled texts.")
            y_idx = y_idx.astype(np.int64, copy=False)  # never written to; a stream's stays memory-mapped
        if loss not in ("kl", "mse"):
            raise ValueError(f"loss must be 'kl' or 'mse', got {loss!r}.")
        from .losses import _check_alpha, _check_temperature

        temperature, alpha = _check_temperature(temperature), _check_alpha(alpha)  # before any training starts
        self._check_class_weight(classes)
        self._fit_impl(texts, classes, y_idx, logits, loss=loss, temperature=temperature, alpha=alpha, hidden=hidden)
        return self

    def _streamed(self, X) -> StreamedTexts | None:
        """``X`` as a stream if it is one (or a TextFiles) and this estimator streams; else None."""
        from .labeling import TextFiles

        if not self._streams_transfer_set:
            return None
        if isinstance(X, StreamedTexts):
            return X
        if isinstance(X, TextFiles):
            return StreamedTexts(X, length=X.count())
        return None

    @property
    def n_classes_(self) -> int:
        check_is_fitted(self, "classes_")
        return len(self.classes_)

    def predict_logits(self, X) -> np.ndarray:
        """Raw logits, one column per class, shape (n_samples, n_classes).

        Texts are tokenized in chunks, sorted by length, batched with dynamic
        padding and run under ``torch.inference_mode``; results come back in
        the caller's order.
        """
        check_is_fitted(self, "model_")
        # parameters read here (predict_batch_size, max_length, ...) may have changed since fit
        self._validate_params()
        texts = check_texts(X)
        return self._predict_logits(texts)

    # ------------------------------------------------------------- inference
    def _iter_encoded_chunks(self, texts: list[str]) -> Iterator[tuple[int, list[list[int]]]]:
        for start in range(0, len(texts), _CHUNK):
            yield start, self._encode(texts[start : start + _CHUNK])

    def _predict_logits(self, texts: list[str], *, progress_desc: str = "predict") -> np.ndarray:
        import torch

        out = np.empty((len(texts), len(self.classes_)), dtype=np.float32)
        if not texts:
            return out
        texts = encodable_texts(texts)
        model = self.model_
        was_training = model.training
        model.eval()
        bs = self.predict_batch_size
        pbar = self._progress(total=len(texts), desc=progress_desc, unit="text")
        try:
            with torch.inference_mode(), self._autocast():
                for start, seqs in self._iter_encoded_chunks(texts):
                    for idx, logits in self._chunk_logits(seqs, bs):
                        out[start + idx] = logits
                        if pbar is not None:
                            pbar.update(len(idx))
        finally:
            if pbar is not None:
                pbar.close()
            model.train(was_training)
        return out

    def _chunk_logits(self, seqs: list[list[int]], batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions in ``seqs``, their float32 logits) batch by batch, under ``inference_mode``: by default
        length-sorted batches padded by ``_collate`` through ``_forward``."""
        for idx in length_sorted_batches([len(s) for s in seqs], batch_size):
            batch = self._collate([seqs[i] for i in idx], self.device_)
            yield idx, self._forward(batch).float().cpu().numpy()

    # -------------------------------------------------------------- training
    def _progress(self, **kwargs):
        if not self.verbose:
            return None
        from tqdm.auto import tqdm

        return tqdm(leave=False, **kwargs)

    def _amp_dtype(self):
        """The autocast dtype for ``device_`` and ``mixed_precision``, or None for fp32.

        Read at every call, so ``set_params(mixed_precision=...)`` on a fitted
        estimator changes how it predicts. "auto": bf16 (fp16 where bf16 is not
        supported) on CUDA, fp32 elsewhere. True: the same on CUDA, and bf16 on
        the CPU. False: fp32 everywhere.
        """
        import torch

        dev = getattr(self, "device_", None)
        if dev is None:
            return None
        if isinstance(self.mixed_precision, str):  # "auto"
            enabled = dev.type == "cuda"
        else:
            enabled = bool(self.mixed_precision) and dev.type in ("cuda", "cpu")
        if not enabled:
            return None
        if dev.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16

    def _autocast(self):
        import contextlib

        import torch

        dtype = self._amp_dtype()
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_.type, dtype=dtype)

    def _split_validation(self, n: int, y_idx: np.ndarray, rng: np.random.Generator, *,
                          min_bytes: int | None = _IN_MEMORY):
        """``(train_idx, val_idx)``, increasing; :func:`~kdtext._stream.scratch_array` s from ``min_bytes``.

        Stratified when every text has a gold label, else a random
        ``validation_fraction``; block by block either way."""
        frac = self.validation_fraction
        if not frac:
            return scratch_range(n, min_bytes=min_bytes), np.arange(0)
        n_val = int(math.ceil(frac * n))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(
                f"validation_fraction={frac} leaves no training or no validation texts out of {n}. "
                "Use more texts, a different fraction, or validation_fraction=None."
            )
        perm = shuffled_range(n, rng, min_bytes=min_bytes)  # the draws of rng.permutation(n)
        mask = scratch_array(n, bool, fill=False, min_bytes=min_bytes)
        counts, n_unlabeled = class_counts(y_idx)
        if not n_unlabeled and np.count_nonzero(counts) > 1:
            if not stratified_holdout(perm, y_idx, counts, n_val, mask):
                raise ValueError(
                    f"validation_fraction={frac} leaves no validation texts out of {n} while keeping a training "
                    "text of every class. Use more texts or validation_fraction=None."
                )
        else:
            for s in range(0, n_val, _BLOCK):
                mask[np.asarray(perm[s : min(s + _BLOCK, n_val)])] = True
        return (flatnonzero_blocks(mask, invert=True, min_bytes=min_bytes),
                flatnonzero_blocks(mask, min_bytes=min_bytes))

    def _fit_impl(self, texts, classes, y_idx, teacher_logits, *, loss, temperature, alpha, hidden=None):
        """Train a new state on the side and assign it to ``self`` only on success.

        A fit that raises (bad data found late, a tokenizer error, a
        ``KeyboardInterrupt`` before the first epoch completed) leaves a fitted
        estimator exactly as it was: its old model keeps predicting, bit for
        bit. The price is that old and new model are both in memory while a
        refit runs.
        """
        texts = texts.as_encodable() if isinstance(texts, StreamedTexts) else encodable_texts(texts)
        for attempt in range(2):  # a second attempt only after an unusable checkpoint was set aside
            work = object.__new__(type(self))
            # parameters (and whatever else is not fitted state, e.g. scikit-learn's callback context)
            # are shared; the new fitted state is built from scratch on ``work``
            work.__dict__.update({k: v for k, v in vars(self).items() if not self._is_fitted_attribute(k)})
            try:
                work._train(texts, np.asarray(classes), y_idx, teacher_logits,
                            loss=loss, temperature=temperature, alpha=alpha, hidden=hidden)
                break
            except _RestartFit:
                if attempt:
                    raise RuntimeError("the checkpoint could not be set aside; pass another checkpoint_dir") from None
        for k in [k for k in vars(self) if self._is_fitted_attribute(k)]:
            delattr(self, k)
        vars(self).update({k: v for k, v in vars(work).items() if self._is_fitted_attribute(k)})
        return self

    # fitted state that does not end in "_" (set by ``_init_model`` / ``_load_model``)
    _private_fitted_attributes: tuple[str, ...] = ("_pad_id", "_position_limit")

    #: Parameters added after the first release, with the value that behaves as estimators pickled or saved before
    #: they existed were fitted (used when a pickle or saved folder lacks them; not the current defaults).
    _legacy_params: dict[str, Any] = {"checkpoint_dir": None, "class_weight": None}

    def _is_fitted_attribute(self, name: str) -> bool:
        return (name.endswith("_") and not name.startswith("__")) or name in self._private_fitted_attributes

    def _train(self, texts, classes, y_idx, teacher_logits, *, loss, temperature, alpha, hidden=None):
        import torch

        from .losses import distillation_loss

        self.device_ = resolve_device(self.device)
        # launched in several processes (torchrun / accelerate launch): one data-parallel fit (kdtext/_parallel.py)
        parallel = DataParallel(self.device_) if launched_world_size() > 1 else None
        if parallel is not None:
            self.device_ = parallel.device
        checkpoint = None
        resumed = None
        if self.checkpoint_dir is not None or parallel is not None:
            fingerprint = self._fit_fingerprint(texts, classes, y_idx, teacher_logits, loss, temperature, alpha,
                                                None if hidden is None else hidden.describe())
            if parallel is not None:
                parallel.check_same_data(fingerprint, type(self).__name__)
        if self.checkpoint_dir is not None:
            checkpoint = _Checkpoint(self.checkpoint_dir, fingerprint)
            resumed = checkpoint.load()
            if resumed is not None and self.random_state is None and resumed["loop"].get("finished"):
                # a finished fit with a fresh seed each time: a new fit, not a replay of the old one
                logger.info("%s: %s holds a finished fit and random_state=None; training anew",
                            type(self).__name__, checkpoint.file)
                resumed = None
        drawn = seed_from_random_state(self.random_state)  # drawn in any case: a RandomState advances alike
        seed = resumed["seed"] if resumed is not None else drawn
        if parallel is not None:  # one seed for all processes: the same split, model and batches
            seed = parallel.broadcast(seed)
        rng = np.random.default_rng(seed)
        self.classes_ = np.asarray(classes)
        n_classes = len(self.classes_)
        # a stream's per-text arrays go to memory-mapped scratch files (kdtext._stream), an in-memory fit's stay
        min_bytes = SCRATCH_MIN_BYTES if isinstance(texts, StreamedTexts) else _IN_MEMORY
        train_idx, val_idx = self._split_validation(len(texts), y_idx, rng, min_bytes=min_bytes)

        with isolated_torch_rng(seed):
            if resumed is not None:  # e.g. the learnt vocabulary, so the model is built for it
                self._restore_checkpoint_extra(resumed["extra"])
            self._init_model(take_texts(texts, train_idx), n_classes)
            self.model_.to(self.device_)
            seqs = self._encode_store(texts)
            lengths = seqs.lengths
            y_t = torch.as_tensor(y_idx)
            t_t = None if teacher_logits is None else torch.as_tensor(teacher_logits)
            cw = self._class_weights(y_idx, n_classes)
            cw_t = None if cw is None else torch.as_tensor(cw, dtype=torch.float32, device=self.device_)
            # hidden-state losses: the teacher runs beside the student on each training batch
            aux = None if hidden is None else hidden.bind(self)

            def batch_loss(idx):
                batch = self._collate([seqs[i] for i in idx], self.device_)
                with_hidden = aux is not None and self.model_.training  # validation scores the soft loss only
                with self._autocast():
                    if with_hidden:
                        logits, states = self._forward_hidden(batch)
                        logits = logits.float()
                    else:
                        logits = self._forward(batch).float()
                yb = y_t[idx].to(self.device_)
                if t_t is None:
                    return torch.nn.functional.cross_entropy(logits, yb, weight=cw_t), logits
                tb = t_t[idx].to(self.device_)
                value = distillation_loss(logits, tb, yb, loss=loss, temperature=temperature, alpha=alpha,
                                          class_weight=cw_t)
                if with_hidden:
                    value = value + aux.loss(batch, states)
                return value, logits

            # validation target: the gold label where known, else the teacher's argmax (block by block)
            val_target = scratch_array(len(y_idx), np.int64, min_bytes=min_bytes)
            for s in range(0, len(y_idx), _BLOCK):
                v = np.array(y_idx[s : s + _BLOCK], dtype=np.int64)
                if teacher_logits is not None:
                    unl = v < 0
                    v[unl] = np.argmax(np.asarray(teacher_logits[s : s + _BLOCK])[unl], axis=1)
                val_target[s : s + _BLOCK] = v

            # the training forward; across processes wrapped by Accelerator.prepare, which averages the gradients
            train_step = batch_loss if parallel is None else parallel.prepare(
                batch_loss, [self.model_] + ([] if aux is None else [aux.matcher]))

            params = self._param_groups()
            if aux is not None and aux.parameters():  # the learned projection, trained with the student
                params.append({"params": aux.parameters(), "weight_decay": 0.0})
            optimizer = torch.optim.AdamW(params, lr=self.learning_rate)
            steps_per_epoch = math.ceil(len(train_idx) / self.batch_size)
            n_epochs = self._n_epochs(steps_per_epoch)
            total = max(1, steps_per_epoch * n_epochs)
            warm = int(self.warmup_ratio * total)

            def schedule(step):
                if step < warm:
                    return (step + 1) / (warm + 1)
                return max(0.0, (total - step) / max(1, total - warm))

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
            # loss scaling is needed for fp16 only (bf16 has fp32's exponent range)
            scaler = torch.amp.GradScaler("cuda") if self._amp_dtype() == torch.float16 else None

            # the loop's state: all of it goes into a checkpoint at each epoch end
            loop = {"history": [], "best_score": -math.inf, "best_loss": math.inf, "best_epoch": 0,
                    "no_improve": 0, "epoch": 0, "finished": False}
            best_state = None
            if resumed is not None:
                try:
                    self.model_.load_state_dict(resumed["model"])
                    optimizer.load_state_dict(resumed["optimizer"])
                    scheduler.load_state_dict(resumed["scheduler"])
                    if scaler is not None and resumed.get("scaler"):
                        scaler.load_state_dict(resumed["scaler"])
                    rng.bit_generator.state = resumed["numpy_rng"]
                    torch.set_rng_state(resumed["torch_rng"])
                    if self.device_.type == "cuda" and resumed.get("cuda_rng"):
                        torch.cuda.set_rng_state_all(resumed["cuda_rng"])
                    loop.update(resumed["loop"])
                    best_state = resumed["best_state"]
                    if aux is not None:
                        aux.load_state_dict(resumed["aux"])
                except (KeyError, RuntimeError, ValueError, TypeError) as exc:
                    # matched the fingerprint but does not fit this model: unusable, start afresh
                    checkpoint.set_aside(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                    raise _RestartFit from None
                logger.info("%s: resumed from %s after epoch %d", type(self).__name__, checkpoint.file, loop["epoch"])

            def save_checkpoint():
                if checkpoint is None or (parallel is not None and not parallel.is_main):
                    return
                checkpoint.save({
                    "seed": seed, "loop": loop, "model": self.model_.state_dict(), "best_state": best_state,
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if self.device_.type == "cuda" else None,
                    "extra": self._checkpoint_extra(),
                    "aux": None if aux is None else aux.state_dict(),
                })

            self.history_ = loop["history"]  # filled live on the estimator being trained (a copy until success)
            self.interrupted_ = False
            try:
                for epoch in range(loop["epoch"] + 1, n_epochs + 1):
                    if loop["finished"]:
                        break
                    t0 = time.perf_counter()
                    self.model_.train()
                    total_loss, n_seen = 0.0, 0
                    batches = bucketed_batches(lengths, self.batch_size, rng, idx=train_idx, min_bytes=min_bytes)
                    pbar = None if parallel is not None and not parallel.is_main else self._progress(
                        total=len(batches), desc=f"epoch {epoch}/{n_epochs}", unit="batch")  # one bar per job
                    for b in batches:
                        idx = train_idx[b]
                        # across processes: this process's share of the batch, its loss weighted by that share
                        idx, share = (idx, 1.0) if parallel is None else parallel.shard(idx)
                        optimizer.zero_grad(set_to_none=True)
                        loss_value, _ = train_step(idx)
                        scaled = loss_value if parallel is None else loss_value * share
                        if scaler is not None:
                            scaler.scale(scaled).backward()
                            scaler.unscale_(optimizer)
                            torch.nn.utils.clip_grad_norm_(self.model_.parameters(), 1.0)
                            scaler.step(optimizer)
                            scaler.update()
                        else:
                            if parallel is None:
                                scaled.backward()
                            else:
                                parallel.backward(scaled)
                            torch.nn.utils.clip_grad_norm_(self.model_.parameters(), 1.0)
                            optimizer.step()
                        scheduler.step()
                        if share:
                            total_loss += float(loss_value.detach()) * len(idx)
                            n_seen += len(idx)
                        if pbar is not None:
                            pbar.update(1)
                            pbar.set_postfix(loss=f"{total_loss / max(n_seen, 1):.4f}")
                    if pbar is not None:
                        pbar.close()
                    if parallel is not None:
                        total_loss, n_seen = parallel.sum([total_loss, n_seen])
                    record = {"epoch": epoch, "train_loss": total_loss / max(n_seen, 1)}
                    if len(val_idx):
                        val_loss, val_score = self._evaluate(val_idx, take_rows(lengths, val_idx, min_bytes=min_bytes),
                                                             batch_loss, val_target, parallel, min_bytes=min_bytes)
                        record.update(valid_loss=val_loss, valid_score=val_score)
                    record["time"] = time.perf_counter() - t0
                    self._log_epoch(record)
                    stop = False
                    # without a validation split the last completed epoch is the best so far
                    improved = not len(val_idx) or record["valid_score"] > loop["best_score"] or (
                        record["valid_score"] == loop["best_score"] and record["valid_loss"] < loop["best_loss"]
                    )
                    if improved:
                        if len(val_idx):
                            loop["best_score"], loop["best_loss"] = record["valid_score"], record["valid_loss"]
                        loop["best_epoch"] = epoch
                        best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model_.state_dict().items()}
                        loop["no_improve"] = 0
                    else:
                        loop["no_improve"] += 1
                        if self.n_iter_no_change is not None and loop["no_improve"] >= self.n_iter_no_change:
                            logger.info("early stopping after epoch %d (best epoch %d)", epoch, loop["best_epoch"])
                            stop = True
                    # the epoch counts once its record is in: an interrupt from here on keeps it
                    loop["history"].append(record)
                    loop["epoch"] = epoch
                    loop["finished"] = stop or epoch == n_epochs
                    save_checkpoint()
                    if stop:
                        break
            except KeyboardInterrupt:
                if best_state is None:
                    # nothing worth keeping: the fit fails and a fitted estimator stays as it was
                    raise
                self.interrupted_ = True
                warnings.warn(
                    f"Training interrupted during epoch {loop['epoch'] + 1}; restored the best weights so far "
                    f"(epoch {loop['best_epoch']})."
                    + (f" fit with checkpoint_dir={os.fspath(self.checkpoint_dir)!r} again to resume."
                       if checkpoint is not None else ""),
                    TrainingInterruptedWarning,
                    stacklevel=4,
                )
            if best_state is not None:
                self.model_.load_state_dict(best_state)
            self.model_.zero_grad(set_to_none=True)  # the last step's gradients would double the fitted model's memory
            self.history_ = list(loop["history"])
            self.n_iter_ = loop["epoch"]
            self.best_epoch_ = loop["best_epoch"]
            self.model_.eval()
        return self

    # Epoch policy of epochs="auto": enough optimizer steps on small data, few passes on large data.
    _AUTO_STEPS = 600
    _AUTO_MIN_EPOCHS = 3
    _AUTO_MAX_EPOCHS = 30

    def _n_epochs(self, steps_per_epoch: int) -> int:
        """``epochs``, or for ``"auto"`` the passes needed for about 600 optimizer steps, within [3, 30]."""
        if self.epochs != "auto":
            return int(self.epochs)
        wanted = math.ceil(self._AUTO_STEPS / max(1, steps_per_epoch))
        return int(min(self._AUTO_MAX_EPOCHS, max(self._AUTO_MIN_EPOCHS, wanted)))

    def _check_class_weight(self, classes: np.ndarray) -> None:
        """A ``class_weight`` dict must name known classes with positive weights (checked before training)."""
        cw = self.class_weight
        if not isinstance(cw, dict):
            return
        known = set(np.asarray(classes).tolist())
        unknown = [k for k in cw if k not in known]
        if unknown:
            raise ValueError(
                f"class_weight names classes {unknown[:5]} that are not among the labels {sorted(known, key=str)[:10]}."
            )
        w = np.array([cw[k] for k in cw], dtype=np.float64) if cw else np.ones(1)
        if not np.isfinite(w).all() or (w <= 0).any():
            raise ValueError(f"class_weight values must be positive and finite, got {cw!r}.")

    def _class_weights(self, y_idx: np.ndarray, n_classes: int) -> np.ndarray | None:
        """Per-class weights of the hard-label loss, from ``class_weight`` and the labeled texts."""
        cw = self.class_weight
        if cw is None:
            return None
        counts = class_counts(y_idx, n_classes)[0].astype(np.float64)  # labeled texts per class
        if isinstance(cw, str):  # "balanced", as scikit-learn: n / (n_classes * count)
            if (counts == 0).any():
                missing = [self.classes_[i] for i in np.flatnonzero(counts == 0)]
                logger.warning("class_weight='balanced': classes %s have no labeled text; weight 1", missing[:5])
            with np.errstate(divide="ignore"):
                w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 1.0)
            return w
        self._check_class_weight(self.classes_)
        return np.array([float(cw.get(c, 1.0)) for c in self.classes_.tolist()])

    # ------------------------------------------------------------ checkpoints
    def _fit_fingerprint(self, texts, classes, y_idx, teacher_logits, loss, temperature, alpha, hidden=None) -> str:
        """What a checkpoint must match to be resumed: the data and every parameter that shapes training."""
        import hashlib

        import joblib

        h = hashlib.blake2b(digest_size=16)
        for t in texts:
            b = t.encode("utf-8", "surrogatepass")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
        ignored = {"verbose", "checkpoint_dir", "predict_batch_size", "device"}
        params = {k: v for k, v in self.get_params(deep=False).items() if k not in ignored}
        if self.random_state is None:
            params.pop("random_state")  # a fresh seed was drawn; the checkpoint keeps it
        extra = joblib.hash((type(self).__name__, params, np.asarray(classes).tolist(), y_idx, teacher_logits,
                             loss, float(temperature), float(alpha)) + (() if hidden is None else (hidden,)))
        h.update(extra.encode())
        return h.hexdigest()

    def _fingerprint(self) -> str:
        """A hash of the fitted model (weights, tokenizer, classes, parameters), stable across pickling and
        processes; :class:`~kdtext.DistillationClassifier` names its teacher cache with it."""
        import hashlib

        import torch

        check_is_fitted(self, "model_")
        h = hashlib.blake2b(digest_size=16)
        params = {k: v for k, v in self.get_params(deep=False).items() if _is_jsonable(v)}
        for k in ("verbose", "device", "predict_batch_size", "checkpoint_dir"):  # do not change the outputs
            params.pop(k, None)
        h.update(json.dumps([type(self).__name__, params, self.classes_.tolist(), self._fitted_config()],
                            sort_keys=True, default=str).encode())
        tok = getattr(self.tokenizer_, "backend_tokenizer", self.tokenizer_)
        if hasattr(tok, "to_str"):
            h.update(tok.to_str().encode())
        for name, tensor in self.model_.state_dict().items():
            t = tensor.detach().to("cpu").contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def _fitted_config(self) -> dict:
        """Fitted choices (JSON-serialisable) that ``save_pretrained`` writes and ``from_pretrained`` restores."""
        return {}

    def _restore_fitted_config(self, config: dict) -> None:
        pass

    def _checkpoint_extra(self) -> dict:
        """State a subclass needs besides the weights to resume (e.g. a learnt tokenizer)."""
        return {}

    def _restore_checkpoint_extra(self, extra: dict) -> None:
        pass

    # -------------------------------------------------------------- encoding
    def _encode_store(self, texts: list[str] | StreamedTexts) -> "_TokenStore":
        """Token ids of all ``texts``, tokenized in chunks into one compact int32 buffer (a stream's: on disk)."""
        if isinstance(texts, StreamedTexts):
            return self._encode_stream(texts)
        parts, lengths = [], []
        for start in range(0, len(texts), _CHUNK):
            seqs = self._encode(texts[start : start + _CHUNK])
            lengths.append(np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs)))
            parts.append(np.fromiter((i for s in seqs for i in s), dtype=np.int32, count=int(lengths[-1].sum())))
        return _TokenStore(np.concatenate(parts) if parts else np.zeros(0, np.int32),
                           np.concatenate(lengths) if lengths else np.zeros(0, np.int64))

    def _encode_stream(self, texts: StreamedTexts) -> "_TokenStore":
        """Token ids of a stream, tokenized chunk by chunk into an int32 file that is memory-mapped.

        The file is unlinked once mapped (POSIX keeps the mapping), so nothing is left in the temp folder
        (``TMPDIR``); the kernel pages the tokens in and out as training reads them. Each text's length and
        offset (int64) are :func:`~kdtext._stream.scratch_array` s, mapped as well."""
        fd, path = tempfile.mkstemp(prefix="kdtext-tokens-", suffix=".i32")
        lengths = scratch_array(len(texts), np.int64)
        at = total = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in texts.iter_chunks():
                    for start in range(0, len(chunk), _CHUNK):
                        seqs = self._encode(chunk[start : start + _CHUNK])
                        lens = np.fromiter((len(q) for q in seqs), dtype=np.int64, count=len(seqs))
                        fh.write(np.fromiter((i for q in seqs for i in q), dtype=np.int32,
                                             count=int(lens.sum())).tobytes())
                        if at + len(lens) > len(lengths):
                            raise RuntimeError(
                                f"The transfer set changed while it was being read: this pass gave more than the "
                                f"{len(lengths)} texts of an earlier one. Do not modify, add or remove the files of "
                                f"{texts.source!r} during fit."
                            )
                        lengths[at : at + len(lens)] = lens
                        at += len(lens)
                        total += int(lens.sum())
            # copy-on-write: writable for torch.as_tensor, yet never written back; clean pages stay reclaimable
            flat = np.memmap(path, dtype=np.int32, mode="c", shape=(total,)) if total else np.zeros(0, np.int32)
            logger.info("%s: %d tokens of %d texts memory-mapped from %s", type(self).__name__, total,
                        len(lengths), path)
        finally:
            try:
                os.unlink(path)
            except OSError:  # pragma: no cover - Windows cannot unlink a mapped file
                logger.info("%s stays in the temp folder until deleted", path)
        return _TokenStore(flat, lengths, min_bytes=SCRATCH_MIN_BYTES)

    def _evaluate(self, val_idx, val_lengths, batch_loss, val_target, parallel=None, *, min_bytes=_IN_MEMORY):
        """Mean validation loss and the ``scoring`` score; across processes each scores its share, summed once."""
        import torch

        self.model_.eval()
        total, count = 0.0, 0
        k = len(self.classes_)
        confusion = np.zeros(k * k, dtype=np.int64)  # rows: validation target, columns: prediction
        n_val = len(val_idx)
        if parallel is not None:  # positions rank, rank + world_size, ...: disjoint shares covering val_idx
            mine = slice(parallel.rank, None, parallel.world_size)
            val_idx, val_lengths = val_idx[mine], val_lengths[mine]
        with torch.inference_mode():
            for b in length_sorted_batches(val_lengths, self.predict_batch_size, min_bytes=min_bytes):
                idx = val_idx[b]
                loss_value, logits = batch_loss(idx)
                total += float(loss_value) * len(idx)
                pred = logits.argmax(1).cpu().numpy()
                confusion += np.bincount(val_target[idx] * k + pred, minlength=k * k)
                count += len(idx)
        self.model_.train()
        if parallel is not None:  # each process's matrix summed once: no text counted twice
            summed = parallel.sum([total, count, *confusion.tolist()])
            total, count = summed[0], int(round(summed[1]))
            confusion = np.rint(summed[2:]).astype(np.int64)
        if count != n_val:  # pragma: no cover - a sharding bug, never a user error
            raise RuntimeError(f"validation scored {count} texts instead of {n_val}")
        return total / count, score_from_confusion(confusion.reshape(k, k), self.scoring)

    def _log_epoch(self, record: dict) -> None:
        msg = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
        logger.info("%s: %s", type(self).__name__, msg)
        if self.verbose:
            from tqdm.auto import tqdm

            tqdm.write(msg)

    # ----------------------------------------------------------- persistence
    def __getstate__(self):
        state = self.__dict__.copy()
        for attr in self._torch_attributes:
            if attr in state:
                state[attr] = _TorchBlob(state[attr])
        if "device_" in state:
            state["device_"] = str(state["device_"])
        return state

    def __setstate__(self, state):
        import torch

        device = state.get("device_")
        if device is not None:
            dev = torch.device(device)
            usable = dev.type == "cpu" or (
                (dev.type == "cuda" and torch.cuda.is_available())
                or (dev.type == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available())
            )
            if not usable:
                warnings.warn(
                    f"This estimator was trained on {device}, which is not available here; "
                    "it was loaded on the CPU.",
                    UserWarning,
                    stacklevel=2,
                )
                dev = torch.device("cpu")
            state["device_"] = dev
        for attr in self._torch_attributes:
            if isinstance(state.get(attr), _TorchBlob):
                state[attr] = state[attr].load(map_location=state.get("device_", "cpu"))
        # parameters added since the estimator was pickled get the value that behaves as it was fitted
        import inspect

        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if name != "self" and param.default is not inspect.Parameter.empty and name not in state:
                state[name] = self._legacy_params.get(name, param.default)
        self.__dict__.update(state)

    def export_onnx(self, path: str | os.PathLike, *, quantize: str | None = None) -> Path:
        """Export the fitted estimator to an ONNX folder that :class:`~kdtext.OnnxClassifier` serves without torch.

        Writes ``model.onnx`` (fp32, dynamic batch and sequence axes),
        ``tokenizer.json`` and ``onnx_config.json``; checks the export against
        this estimator on probe texts before moving it into place. See
        :func:`kdtext.onnx.export_onnx` and the "Deploy without torch" page.
        Needs ``pip install "kdtext[onnx]"``.

        Parameters
        ----------
        path : str or path-like
            A new or empty folder, or an earlier export to replace.
        quantize : {None, "int8"}, default=None
            ``"int8"`` writes onnxruntime's dynamic int8 quantization of the
            graph: faster on a CPU, not exact (see :func:`kdtext.onnx.export_onnx`).

        Returns
        -------
        path : pathlib.Path

        Examples
        --------
        >>> clf.export_onnx("model-onnx")  # doctest: +SKIP
        >>> from kdtext import OnnxClassifier
        >>> OnnxClassifier.from_pretrained("model-onnx").predict(texts)  # doctest: +SKIP
        """
        from .onnx import export_onnx

        return export_onnx(self, path, quantize=quantize)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Save the fitted estimator to a folder, without pickle.

        Writes the weights as safetensors, the tokenizer, and the estimator's
        parameters, classes and history as JSON (``kdtext_config.json``).

        Parameters
        ----------
        path : str or path-like
            Folder to write; created if missing.

        Returns
        -------
        path : pathlib.Path
        """
        check_is_fitted(self, "model_")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        # a path-like (a pathlib.Path model folder, a checkpoint_dir) is saved as its string
        given = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in self.get_params(deep=False).items()}
        params = {k: v for k, v in given.items() if _is_jsonable(v)}
        skipped = sorted(set(given) - set(params))
        if skipped:
            logger.warning("save_pretrained: parameters %s are not JSON-serialisable and were not saved", skipped)
        from . import __version__

        config = {
            "estimator": type(self).__name__,
            "kdtext_version": __version__,
            "params": params,
            "classes": self.classes_.tolist(),
            "history": self.history_,
            "n_iter": self.n_iter_,
            "best_epoch": getattr(self, "best_epoch_", None),
            "interrupted": bool(getattr(self, "interrupted_", False)),
            "fitted": self._fitted_config(),
        }
        self._save_model(path)
        (path / CONFIG_NAME).write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str = "auto", **params):
        """Load an estimator written by :meth:`save_pretrained`.

        Parameters
        ----------
        path : str or path-like
            The folder.
        device : str, default="auto"
            Where to put the model.
        **params
            Parameters that override the saved ones.

        Returns
        -------
        estimator : fitted instance of this class
        """
        path = Path(path)
        cfg_file = path / CONFIG_NAME
        if not cfg_file.is_file():
            raise ModelNotFoundError(
                f"{path} holds no {CONFIG_NAME}: it was not written by {cls.__name__}.save_pretrained. "
                "Pass the folder given to save_pretrained."
            )
        try:
            config = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelNotFoundError(
                f"{cfg_file} is not valid JSON ({exc}); the file is truncated or damaged. Save the estimator again."
            ) from None
        if not isinstance(config, dict) or config.get("estimator") is None:
            raise ModelNotFoundError(f"{cfg_file} is not a kdtext config (no 'estimator' entry); save the estimator again.")
        if config.get("estimator") != cls.__name__:
            raise ValueError(f"{path} holds a {config.get('estimator')}, not a {cls.__name__}; use that class to load it.")
        saved = config.get("params")
        classes = config.get("classes")
        if not isinstance(saved, dict) or not isinstance(classes, list) or len(classes) < 2:
            raise ModelNotFoundError(
                f"{cfg_file} is damaged: it needs a 'params' object and a 'classes' list of at least 2 labels. "
                "Save the estimator again."
            )
        unknown = sorted(set(saved) - set(cls().get_params(deep=False)))
        if unknown:
            raise ValueError(
                f"{cfg_file} holds parameters {unknown} that {cls.__name__} does not have (written by another "
                "kdtext version?). Remove them from the file or load with the version that saved it."
            )
        legacy = {k: v for k, v in cls._legacy_params.items() if k not in saved}  # saved before they existed
        if isinstance(saved.get("class_weight"), dict):  # JSON made its keys str: give back the classes' own keys
            by_name = {str(c): c for c in classes}
            saved["class_weight"] = {by_name.get(k, k): w for k, w in saved["class_weight"].items()}
        est = cls(**{**legacy, **saved, **params, "device": device})
        try:
            est._validate_params()  # saved values and overrides alike
        except ValueError as exc:
            raise type(exc)(f"{exc} (loading {path})") from None
        est.device_ = resolve_device(device)
        est.classes_ = np.asarray(classes)
        est.history_ = config.get("history", [])
        est.n_iter_ = config.get("n_iter", len(est.history_))
        est.best_epoch_ = config.get("best_epoch") if config.get("best_epoch") is not None else est.n_iter_
        est.interrupted_ = bool(config.get("interrupted", False))
        est._restore_fitted_config(config.get("fitted") or {})
        est._load_model(path)
        n_out = getattr(getattr(est.model_, "config", None), "num_labels", None)
        if n_out is None and hasattr(est.model_, "classifier"):
            n_out = getattr(est.model_.classifier, "out_features", None)
        if n_out is not None and n_out != len(est.classes_):
            raise ModelNotFoundError(
                f"{path}: the model has {n_out} outputs but {cfg_file.name} lists {len(est.classes_)} classes; "
                "the files come from different saves. Save the estimator again."
            )
        est.model_.to(est.device_)
        est.model_.eval()
        return est
