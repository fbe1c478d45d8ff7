"""ONNX export of kdtext's neural estimators, and a classifier that serves the export without torch.

:func:`export_onnx` (also ``estimator.export_onnx(path)``) writes a folder:

``model.onnx``
    The fp32 graph from token ids and an attention mask (transformers) or
    lengths (BiLSTM, static student) to logits, with dynamic batch and sequence axes; with
    ``quantize="int8"``, that graph after onnxruntime's dynamic int8
    quantization of its weights.
``tokenizer.json``
    The estimator's tokenizer for the ``tokenizers`` library, set to truncate
    as the estimator does.
``onnx_config.json``
    The estimator kind, the classes and their dtype, the input names, the pad
    id, the truncation and special-token rules, the opset, the quantization
    and the kdtext version.

:class:`OnnxClassifier` loads such a folder with ``onnxruntime``,
``tokenizers`` and numpy only: torch and transformers are imported nowhere on
its path, so a serving image needs neither. This module imports neither at
module level (the export imports torch when it runs).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval

from .base import LogitsClassifierMixin, TextInputMixin, check_texts, encodable_texts
from .exceptions import ModelNotFoundError

logger = logging.getLogger(__name__)

__all__ = ["OnnxClassifier", "export_onnx", "ONNX_CONFIG_NAME", "MODEL_NAME", "TOKENIZER_NAME"]

ONNX_CONFIG_NAME = "onnx_config.json"
MODEL_NAME = "model.onnx"
TOKENIZER_NAME = "tokenizer.json"
# written by onnx beside model.onnx for graphs over 2 GB (the protobuf limit)
EXTERNAL_DATA_NAME = MODEL_NAME + ".data"
FORMAT = 1

_INSTALL_HINT = 'pip install "kdtext[onnx]"'
# the model inputs OnnxClassifier knows how to build from token ids
_INPUTS = ("input_ids", "attention_mask", "lengths")
# texts whose token ids and logits the export compares with the estimator's own: case, accents,
# other scripts, emoji, a special token written in the text, whitespace only, empty, a lone surrogate
_PROBE_TEXTS = [
    "A GREAT film, Truly Wonderful!",
    "bad",
    "Café déjà vu: naïve Ünïcödé ÀÉÎ",
    "Привет, мир! 你好，世界 こんにちは 🙂👍🏽",
    "the [SEP] token and [MASK] inside a text",
    "   \t spaces\nand\r\nnew lines   ",
    "",
    "broken \ud800 surrogate",
]
# logits of the exported graph must agree with torch's this closely, or the export is refused
_RTOL = _ATOL = 1e-3
#: the values of ``export_onnx(..., quantize=...)``
QUANTIZATIONS = (None, "int8")
# an int8 graph is refused when a logit on the probe texts is further than this share of the largest fp32 logit
# (at least 1) from torch's. int8 moved the probe logits of MiniLM fine-tuned on SST-2 by up to 0.22 (per-tensor
# scales); a broken graph (wrong scales, saturation) moves them by about their own size
_INT8_RTOL = 0.25


def _require(module: str, what: str):
    """Import an optional dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs the package {module!r}, which cannot be imported ({exc}). Install kdtext's ONNX "
            f"extra: {_INSTALL_HINT}."
        ) from None


# ------------------------------------------------------------------ shared by export and serving
def _prepare_tokenizer(tokenizer: Any, config: dict) -> Any:
    """Set a ``tokenizers.Tokenizer`` to truncate, pad and treat special tokens as ``config`` says."""
    truncation = config["truncation"]
    if truncation is None:
        tokenizer.no_truncation()
    else:
        tokenizer.enable_truncation(**truncation)
    tokenizer.no_padding()  # each batch is padded to its longest text by _collate
    tokenizer.encode_special_tokens = bool(config["split_special_tokens"])
    return tokenizer


def _encode(tokenizer: Any, texts: list[str], config: dict) -> list[list[int]]:
    """Token ids of ``texts`` (already through :func:`~kdtext.base.encodable_texts`), as the estimator's ``_encode``."""
    if not texts:
        return []
    encodings = tokenizer.encode_batch(texts, add_special_tokens=config["add_special_tokens"])
    if config["empty_as_pad"]:  # a text without tokens becomes one pad token (the BiLSTM packs lengths >= 1)
        return [e.ids or [config["pad_id"]] for e in encodings]
    return [e.ids for e in encodings]


def _collate(seqs: list[list[int]], inputs: list[str], pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded int64 arrays named as the graph's inputs."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    ids = np.full((len(seqs), int(lengths.max())), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    arrays = {
        "input_ids": ids,
        "attention_mask": (np.arange(ids.shape[1])[None, :] < lengths[:, None]).astype(np.int64),
        "lengths": lengths,
    }
    return {name: arrays[name] for name in inputs}


def _classes_to_config(classes: np.ndarray) -> dict:
    """``classes_`` as JSON plus its dtype, refused unless it reads back identical."""
    classes = np.asarray(classes)
    values = classes.tolist()
    try:
        back = np.asarray(json.loads(json.dumps(values)), dtype=classes.dtype)
        same = back.dtype == classes.dtype and back.shape == classes.shape and bool(np.all(back == classes))
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(
            f"The classes {values[:5]!r} (dtype {classes.dtype}) cannot be written to JSON and read back unchanged, "
            "so an export could not return them. Train with int or str labels."
        )
    return {"classes": values, "classes_dtype": classes.dtype.str}


def _classes_from_config(config: dict, file: Path) -> np.ndarray:
    values, dtype = config.get("classes"), config.get("classes_dtype")
    try:
        classes = np.asarray(values, dtype=np.dtype(dtype))
    except (TypeError, ValueError) as exc:
        raise ModelNotFoundError(f"{file}: the classes {values!r} with dtype {dtype!r} are damaged ({exc}). Export again.") from None
    if classes.ndim != 1 or len(classes) < 2 or classes.dtype.kind not in "biufUO":
        raise ModelNotFoundError(f"{file}: 'classes' must be a list of at least 2 int or str labels, got {values!r}. Export again.")
    return classes


# ------------------------------------------------------------------------------------- export
def _check_target(target: Path) -> None:
    """Refuse a file, or a folder holding anything but an earlier export (which is replaced)."""
    if target.exists() and not target.is_dir():
        raise FileExistsError(
            f"{target} is a file; export_onnx writes a folder ({MODEL_NAME}, {TOKENIZER_NAME}, {ONNX_CONFIG_NAME}). "
            "Pass the path of a new or empty folder."
        )
    if target.is_dir():
        names = sorted(p.name for p in target.iterdir())
        ours = {MODEL_NAME, TOKENIZER_NAME, ONNX_CONFIG_NAME, EXTERNAL_DATA_NAME}
        if names and not (ONNX_CONFIG_NAME in names and set(names) <= ours):
            raise FileExistsError(
                f"{target} is a folder holding other files ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); "
                "export_onnx writes into a new or empty folder, or replaces an earlier export_onnx folder. "
                "Pass another path, or empty that folder first."
            )


def _replace_folder(tmp: Path, target: Path) -> None:
    """Move the finished ``tmp`` folder to ``target``; an earlier export there is replaced."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _exporting(estimator: Any, quiet: bool):
    """The model on the CPU in eval mode, the exporter's warnings and log lines held back; all restored after."""
    import torch

    model = estimator.model_
    device, was_training = estimator.device_, model.training
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    if quiet:
        onnx_logger.setLevel(logging.ERROR)
    try:
        model.to("cpu").eval()
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            yield
        for w in caught:  # internal deprecations of the exporter: not the user's concern
            logger.debug("export_onnx: %s: %s", w.category.__name__, w.message)
    finally:
        onnx_logger.setLevel(level)
        model.to(device).train(was_training)


def _forget_rnn_kernels() -> None:
    """Clear the kernels torch cached for ``aten.lstm`` / ``aten.gru``.

    For dynamic shapes the exporter swaps in a while-loop LSTM decomposition
    by writing ``op.py_kernels`` directly, which does not clear the op's
    dispatch cache (torch 2.13). An export leaves the default (unrolled)
    decomposition in that cache, so the next export of an LSTM in the same
    process ignored the swap and froze the sequence length of the example
    batch into the graph. Clearing the cache before (and after) each export
    keeps the axes dynamic; ``_check_export`` refuses a graph with fixed sizes
    and runs other lengths, should this ever come back.
    """
    import torch

    for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
        cache = getattr(op, "_dispatch_cache", None)
        if isinstance(cache, dict):
            cache.clear()


def _export_graph(estimator: Any, batch: dict, file: Path) -> int:
    """Export the estimator's forward pass to ``file``; returns the opset."""
    import torch
    from torch.export import Dim

    names = list(batch)
    inner = estimator._onnx_module(names)

    class Positional(torch.nn.Module):  # one varargs signature, whatever the hook's module takes
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(*inputs)

    batch_dim, seq_dim = Dim("batch"), Dim("sequence")
    shapes = tuple({0: batch_dim, 1: seq_dim} if t.ndim == 2 else {0: batch_dim} for t in batch.values())
    _forget_rnn_kernels()
    try:
        program = torch.onnx.export(
            Positional(), tuple(batch.values()), input_names=names, output_names=["logits"],
            dynamic_shapes={"inputs": shapes}, dynamo=True, verbose=False,
        )
    finally:
        _forget_rnn_kernels()
    program.save(str(file))
    return int(next((o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")), 0))


def _check_export(estimator: Any, folder: Path, config: dict, probe: list[str], *,
                  quantized: bool = False) -> tuple[float, float]:
    """Tokenize the probe texts and run them through the written folder as OnnxClassifier will; compare with
    the estimator's own token ids and logits. Returns the largest logit difference and the share of probe
    texts whose argmax agrees.

    An fp32 graph must agree within ``_RTOL``/``_ATOL``; a ``quantized`` one within ``_INT8_RTOL`` of the
    largest logit (int8 cannot hold 1e-3: the bound catches a broken graph, not the rounding)."""
    import torch
    from tokenizers import Tokenizer

    ort = _require("onnxruntime", "export_onnx")
    tokenizer = _prepare_tokenizer(Tokenizer.from_file(str(folder / TOKENIZER_NAME)), config)
    expected_ids = estimator._encode(probe)
    got_ids = _encode(tokenizer, probe, config)
    for text, want, got in zip(probe, expected_ids, got_ids):
        if list(want) != list(got):
            raise RuntimeError(
                f"The exported tokenizer does not reproduce {type(estimator).__name__}'s tokenization of {text[:60]!r} "
                f"(estimator {list(want)[:12]}, export {got[:12]}): its tokenizer does preprocessing that "
                "tokenizer.json cannot hold. This estimator cannot be exported to ONNX."
            )
    session = ort.InferenceSession(str(folder / MODEL_NAME), providers=["CPUExecutionProvider"])
    static = {i.name: i.shape for i in session.get_inputs() if any(isinstance(d, int) for d in i.shape)}
    if static:
        raise RuntimeError(
            f"The exported graph has fixed sizes where the batch and sequence axes must be dynamic ({static}); "
            "the export was not written. Please report this with the model's type and the torch version."
        )
    worst, agreement = 0.0, 1.0
    # the whole probe (padded) and one text alone: other batch and sequence sizes than the traced ones
    for n, seqs in enumerate((expected_ids, expected_ids[:1], expected_ids[1:2])):
        feeds = _collate(list(seqs), config["inputs"], config["pad_id"])
        try:
            got = session.run([config["output"]], feeds)[0]
        except Exception as exc:
            raise RuntimeError(
                f"onnxruntime cannot run the exported graph on {len(seqs)} text(s) of up to "
                f"{max(len(s) for s in seqs)} tokens ({type(exc).__name__}: {exc}); the export was not written. "
                "Please report this with the model's type and the torch and onnxruntime versions."
            ) from exc
        with torch.no_grad():
            batch = estimator._collate(list(seqs), "cpu")
            want = estimator._forward(batch).float().numpy()
        if quantized:
            bound = _INT8_RTOL * max(1.0, float(np.abs(want).max()))
            close = got.shape == want.shape and bool(np.all(np.abs(got - want) <= bound))
        else:
            bound, close = _ATOL, got.shape == want.shape and np.allclose(got, want, rtol=_RTOL, atol=_ATOL)
        if got.shape != want.shape or not np.isfinite(got).all() or not close:
            diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("nan")
            raise RuntimeError(
                f"The exported {'int8 ' if quantized else ''}graph disagrees with torch on {len(seqs)} text(s) "
                f"(max logit difference {diff:.3g}, allowed {bound:.3g}; shapes {got.shape} vs {want.shape}); the "
                "export was not written. Please report this with the model's type and the torch and onnxruntime "
                "versions."
            )
        worst = max(worst, float(np.abs(got - want).max()))
        if n == 0:
            agreement = float(np.mean(got.argmax(1) == want.argmax(1)))
    return worst, agreement


@contextlib.contextmanager
def _quiet_quantizer():
    """Hold back onnxruntime.quantization's advice to pre-process, logged on the root logger.

    ``logging.warning`` on a root logger without handlers would also install
    a stderr handler for the whole process (``basicConfig``); a handler held
    here prevents that, and the advice goes to this module's debug log.
    """
    root = logging.getLogger()

    def advice(record: logging.LogRecord) -> bool:
        if record.name == "root" and "pre-processing before quantization" in record.getMessage():
            logger.debug("onnxruntime.quantization: %s", record.getMessage().strip())
            return False
        return True

    handler = logging.NullHandler()
    root.addFilter(advice)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.removeFilter(advice)


def _quantize_int8(folder: Path, config: dict, *, nodes_to_quantize=None, nodes_to_exclude=()) -> None:
    """Replace ``folder/model.onnx`` by onnxruntime's dynamic int8 quantization of it.

    The weights of MatMul and Gemm (and of the LSTM) become int8 with one
    scale per output channel; activations are quantized (uint8, per tensor)
    per batch at run time (``DynamicQuantizeLinear`` + ``MatMulInteger``).
    Per-channel scales, measured on all-MiniLM-L6-v2 fine-tuned on SST-2
    (2,000 texts): argmax agreement with fp32 98.4% instead of 96.3%, max
    logit difference 0.70 instead of 1.54, about 5% slower than one scale
    per tensor. Weights use 7 bits (``reduce_range=True``): on CPUs without
    VNNI (AVX2 only) onnxruntime's u8 x s8 integer products saturate, and a
    tiny BiLSTM's int8 graph agreed with torch on 90.8% of texts with 8-bit
    weights against 99.2% with 7 (onnxruntime advises 7 bits for such CPUs;
    on a VNNI CPU, a MiniLM teacher fine-tuned on SST-2 agreed with fp32 on
    98.18% of 2,693 sentences with 7 bits (``benchmarks/int8_sensitivity.py``)
    and 98.14% with 8 (a throwaway run, ``docs/onnx.rst``).
    ``quant_pre_process`` is not run: it leaves large temporary
    files, and the graph quantizes without it. onnxruntime's one temporary
    file, a shape-inferred copy of the graph, is written and deleted inside
    ``folder``. ``nodes_to_quantize`` / ``nodes_to_exclude`` (node names) are
    passed to ``quantize_dynamic``, for measurements that leave some MatMuls in
    fp32 (``benchmarks/int8_sensitivity.py``).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, out = folder / MODEL_NAME, folder / f"{MODEL_NAME}.int8"
    with _quiet_quantizer():
        quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         use_external_data_format=False, nodes_to_quantize=nodes_to_quantize,
                         nodes_to_exclude=list(nodes_to_exclude))
    os.replace(out, source)
    (folder / EXTERNAL_DATA_NAME).unlink(missing_ok=True)
    config["external_data"] = False


def export_onnx(estimator: Any, path: str | os.PathLike, *, quantize: str | None = None) -> Path:
    """Export a fitted kdtext neural estimator to an ONNX folder that :class:`OnnxClassifier` serves.

    The same as ``estimator.export_onnx(path)``. The graph maps token ids
    plus an attention mask (:class:`~kdtext.TransformerClassifier`) or
    lengths (:class:`~kdtext.BiLSTMClassifier`, :class:`~kdtext.StaticEmbeddingClassifier`) to fp32 logits, with dynamic
    batch and sequence axes; it is exported with ``torch.onnx.export(...,
    dynamo=True)`` on the CPU. Before anything is written to ``path``, the
    export is checked on a few probe texts (mixed case, accents, several
    scripts, emoji, an empty text, a lone surrogate) in a temporary folder
    beside it: the saved tokenizer must give the estimator's own token ids and
    onnxruntime's logits must agree with torch's (within 1e-3; about 1e-7 on
    the tiny test models). Only a complete, checked export is moved to
    ``path``, so a failed export leaves no folder that looks valid.

    ``quantize="int8"`` then quantizes the checked fp32 graph with
    onnxruntime's dynamic quantization (``quantize_dynamic``: int8 weights,
    activations quantized per batch), for fast CPU inference, e.g. a teacher
    labeling a large transfer set. The int8 graph is checked on the probe
    texts too, against a bound it can meet (every logit within 25% of the
    largest); its max logit difference to torch and its argmax agreement on
    them go into ``onnx_config.json`` (``"quantization_check"``). On
    all-MiniLM-L6-v2 fine-tuned on SST-2, ``benchmarks/int8_sensitivity.py``
    measured 1.61x the texts/s of torch fp32 on an idle 2-vCPU machine (two
    threads each; 1.47x with one), a graph 4x smaller, 98.3% argmax agreement
    with fp32 and no accuracy loss, for the teacher
    (``benchmarks/teacher_throughput.py``: for a student distilled from its
    labels too).

    Parameters
    ----------
    estimator : TransformerClassifier, BiLSTMClassifier or StaticEmbeddingClassifier
        A fitted estimator. Its ``max_length`` (capped at what the model
        supports) and its tokenizer's rules are written with the model.
    path : str or path-like
        The folder to write. It must not exist, be empty, or hold an earlier
        export (which is replaced). Missing parent folders are created.
    quantize : {None, "int8"}, default=None
        None writes the fp32 graph; ``"int8"`` its dynamic int8
        quantization (needs ``onnxruntime.quantization``, part of
        onnxruntime). Recorded as ``"quantization"`` in the config.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    NotFittedError
        If the estimator is not fitted.
    FileExistsError
        If ``path`` is a file or a folder holding other files.
    ValueError
        If ``quantize`` is not None or ``"int8"``.
    ImportError
        If ``onnx``, ``onnxscript`` or ``onnxruntime`` is missing
        (``pip install "kdtext[onnx]"``).

    Examples
    --------
    >>> clf = BiLSTMClassifier().fit(texts, labels)  # doctest: +SKIP
    >>> clf.export_onnx("model-onnx")  # doctest: +SKIP
    PosixPath('model-onnx')
    >>> OnnxClassifier("model-onnx").fit().predict(["a great film"])  # doctest: +SKIP
    array([1])

    An int8 teacher for labeling a large transfer set:

    >>> teacher.export_onnx("teacher-int8", quantize="int8")  # doctest: +SKIP
    PosixPath('teacher-int8')
    >>> fast = OnnxClassifier.from_pretrained("teacher-int8")  # doctest: +SKIP
    >>> DistillationClassifier(fast, student).fit(unlabeled_texts)  # doctest: +SKIP
    """
    from ._neural import NeuralTextClassifier

    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"quantize must be one of {list(QUANTIZATIONS)} (None: the fp32 graph; 'int8': onnxruntime's dynamic "
            f"int8 quantization), got {quantize!r}."
        )

    if not isinstance(estimator, NeuralTextClassifier):
        raise TypeError(
            f"export_onnx exports kdtext's neural estimators (TransformerClassifier, BiLSTMClassifier, StaticEmbeddingClassifier), got "
            f"{type(estimator).__name__}. For a scikit-learn pipeline, see skl2onnx."
        )
    name = type(estimator).__name__
    if not hasattr(estimator, "model_"):
        raise NotFittedError(f"This {name} is not fitted yet: call fit before export_onnx.")
    estimator._validate_params()  # max_length may have been changed by set_params since fit
    target = Path(path)
    _check_target(target)
    classes = _classes_to_config(estimator.classes_)
    for module in ("onnx", "onnxscript", "onnxruntime"):
        _require(module, "export_onnx")
    from . import __version__

    tokenizer, rules = estimator._onnx_tokenizer()
    probe = encodable_texts(_PROBE_TEXTS + [" ".join(["a good film"] * int(estimator.max_length))])
    batch = estimator._collate(estimator._encode(probe), "cpu")
    unknown = [n for n in batch if n not in _INPUTS]
    if unknown:  # a subclass with other inputs needs OnnxClassifier to learn them first
        raise TypeError(f"{name} feeds its model {unknown}; OnnxClassifier builds only {list(_INPUTS)}.")
    config = {
        "format": FORMAT,
        "kdtext_version": __version__,
        "estimator": name,
        **classes,
        "inputs": list(batch),
        "output": "logits",
        "max_length": tokenizer.truncation["max_length"] if tokenizer.truncation else None,
        "pad_id": int(estimator._pad_id),
        "padding_side": "right",
        "truncation": tokenizer.truncation,
        "split_special_tokens": bool(tokenizer.encode_special_tokens),
        **rules,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.export-"))
    try:
        tokenizer.save(str(tmp / TOKENIZER_NAME))
        import torch

        with _exporting(estimator, quiet=not estimator.verbose):
            config["opset"] = _export_graph(estimator, batch, tmp / MODEL_NAME)
            config["exporter"] = f"torch.onnx.export(dynamo=True), torch {torch.__version__}"
            config["external_data"] = (tmp / EXTERNAL_DATA_NAME).exists()
            diff, _ = _check_export(estimator, tmp, config, probe)
            config["quantization"] = quantize
            if quantize == "int8":
                _quantize_int8(tmp, config)
                qdiff, qagree = _check_export(estimator, tmp, config, probe, quantized=True)
                config["quantization_check"] = {"probe_texts": len(probe), "max_logit_diff": qdiff,
                                                "argmax_agreement": qagree}
        # written last: a folder without it is not an export
        (tmp / ONNX_CONFIG_NAME).write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
        _replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("exported %s to %s (opset %d, max logit difference to torch %.2g on the probe texts)",
                name, target, config["opset"], diff)
    if quantize:
        check = config["quantization_check"]
        logger.info("quantized %s to %s: max logit difference to torch %.2g, argmax agreement %.0f%% on %d probe "
                    "texts", name, quantize, check["max_logit_diff"], 100 * check["argmax_agreement"],
                    check["probe_texts"])
    return target


# ------------------------------------------------------------------------------------ serving
def _read_config(folder: Path) -> dict:
    file = folder / ONNX_CONFIG_NAME
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"{folder} is not a folder{' (it is a file)' if folder.exists() else ' that exists'}. Pass the folder "
            "written by export_onnx."
        )
    missing = [f for f in (ONNX_CONFIG_NAME, MODEL_NAME, TOKENIZER_NAME) if not (folder / f).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"The folder {folder} lacks {', '.join(missing)}: it was not written by export_onnx, or not "
            f"completely. export_onnx writes {MODEL_NAME}, {TOKENIZER_NAME} and {ONNX_CONFIG_NAME}; export again."
        )
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelNotFoundError(f"{file} is not valid JSON ({exc}); it is truncated or damaged. Export again.") from None
    required = ("format", "estimator", "classes", "classes_dtype", "inputs", "output", "pad_id", "truncation",
                "add_special_tokens", "empty_as_pad", "split_special_tokens")
    lacking = [k for k in required if not isinstance(config, dict) or k not in config]
    if lacking:
        raise ModelNotFoundError(f"{file} is not an export_onnx config (no {', '.join(lacking)}). Export again.")
    if config["format"] != FORMAT:
        raise ModelNotFoundError(
            f"{file} has format {config['format']!r}; this kdtext reads format {FORMAT}. Export with this "
            "version of kdtext, or serve with the version that exported it."
        )
    if config.get("quantization") not in QUANTIZATIONS:  # absent in exports written before int8 existed: fp32
        raise ModelNotFoundError(
            f"{file}: 'quantization' must be one of {list(QUANTIZATIONS)}, got {config['quantization']!r}. "
            "Export again, or serve with the kdtext version that exported it."
        )
    inputs = config["inputs"]
    if not isinstance(inputs, list) or not inputs or any(i not in _INPUTS for i in inputs):
        raise ModelNotFoundError(f"{file}: 'inputs' must be a list of names among {list(_INPUTS)}, got {inputs!r}.")
    return config


class OnnxClassifier(TextInputMixin, LogitsClassifierMixin, ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier over a folder written by :func:`export_onnx`, without torch.

    Serving needs ``onnxruntime``, ``tokenizers``, numpy and scikit-learn
    (``pip install "kdtext[onnx]"``); torch and transformers are never
    imported. Texts go through the exported estimator's preprocessing (the
    lone-surrogate rule of :func:`~kdtext.base.encodable_texts`, its
    tokenizer with the same normalisation, special tokens and truncation) and
    are batched by length as kdtext's estimators do, so the outputs match the
    estimator's (logits within about 1e-6 on the test models).

    The model is already trained: :meth:`fit` loads the folder and ignores
    ``X`` and ``y``, as scikit-learn's ``FrozenEstimator`` does, so the
    classifier fits into a ``Pipeline``, ``cross_val_score`` or
    ``GridSearchCV`` (over ``batch_size`` or ``providers``) unchanged.
    ``OnnxClassifier.from_pretrained(path)`` constructs and fits in one step.

    Parameters
    ----------
    path : str or path-like
        The folder written by :func:`export_onnx` (or
        ``estimator.export_onnx``).
    batch_size : int, default=64
        Texts per onnxruntime call. Read at every call.
    providers : list or None, default=None
        onnxruntime execution providers in order of preference, e.g.
        ``["CUDAExecutionProvider", "CPUExecutionProvider"]``. None uses
        the CPU. Read by :meth:`fit`.
    n_threads : int or None, default=None
        Threads onnxruntime uses inside an operator
        (``intra_op_num_threads``); None lets onnxruntime choose (all
        cores). Read by :meth:`fit`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The exported estimator's classes, with their dtype (int labels come
        back as ints, str labels as str).
    config_ : dict
        The folder's ``onnx_config.json``.
    session_ : onnxruntime.InferenceSession
        The loaded graph.
    tokenizer_ : tokenizers.Tokenizer
        The exported tokenizer, set to truncate as the estimator did.
    model_bytes_ : bytes or None
        The content of ``model.onnx``, held so that a pickled classifier is
        self-contained and does not need the folder any more. None for graphs
        over 2 GB, whose weights are in ``model.onnx.data``: those are
        pickled by path (``path_``) and reloaded from it.
    path_ : pathlib.Path
        The folder loaded, as an absolute path.

    See Also
    --------
    kdtext.onnx.export_onnx : write the folder.

    Notes
    -----
    Pickling drops the onnxruntime session (it cannot be pickled) and
    unpickling builds a new one from ``model_bytes_`` with the current
    ``providers`` and ``n_threads``. A ``clone`` is unfitted, as for every
    scikit-learn estimator: its ``fit`` loads the folder again.

    Examples
    --------
    >>> from kdtext import OnnxClassifier
    >>> clf = OnnxClassifier.from_pretrained("model-onnx")  # doctest: +SKIP
    >>> clf.predict(["what a great film", "dull"])  # doctest: +SKIP
    array([1, 0])
    >>> clf.predict_proba(["what a great film"]).round(2)  # doctest: +SKIP
    array([[0.03, 0.97]], dtype=float32)
    """

    _parameter_constraints: dict = {
        "path": [str, os.PathLike],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "providers": [list, tuple, None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        batch_size: int = 64,
        providers: list | None = None,
        n_threads: int | None = None,
    ):
        self.path = path
        self.batch_size = batch_size
        self.providers = providers
        self.n_threads = n_threads

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **params) -> "OnnxClassifier":
        """``OnnxClassifier(path, **params).fit()``: a ready classifier over an exported folder."""
        return cls(path, **params).fit()

    def fit(self, X=None, y=None) -> "OnnxClassifier":
        """Load the exported folder. ``X`` and ``y`` are ignored: the model is already trained.

        Parameters
        ----------
        X : ignored
        y : ignored

        Returns
        -------
        self : object

        Raises
        ------
        ModelNotFoundError
            If the folder is missing, incomplete or damaged (the message names
            the file).
        ImportError
            If ``onnxruntime`` or ``tokenizers`` is missing.
        """
        self._validate_params()
        folder = Path(self.path).expanduser()
        config = _read_config(folder)
        classes = _classes_from_config(config, folder / ONNX_CONFIG_NAME)
        tokenizers = _require("tokenizers", "OnnxClassifier")
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(folder / TOKENIZER_NAME))
            _prepare_tokenizer(tokenizer, config)
        except Exception as exc:
            raise ModelNotFoundError(
                f"{folder / TOKENIZER_NAME} cannot be read ({type(exc).__name__}: {exc}); it is damaged, truncated "
                "or from another tokenizers version. Export again."
            ) from None
        model_bytes = None if config.get("external_data") else (folder / MODEL_NAME).read_bytes()
        session = self._session(model_bytes, folder.resolve(), config, len(classes))
        # assigned only now: a failed fit leaves a fitted classifier as it was
        self.config_, self.classes_, self.tokenizer_ = config, classes, tokenizer
        self.model_bytes_, self.path_, self.session_ = model_bytes, folder.resolve(), session
        return self

    def _session(self, model_bytes: bytes | None, folder: Path, config: dict, n_classes: int):
        """An onnxruntime session over the bytes (or the file) whose inputs and output are those of ``config``."""
        ort = _require("onnxruntime", "OnnxClassifier")
        providers = ["CPUExecutionProvider"] if self.providers is None else list(self.providers)
        available = ort.get_available_providers()
        unknown = [p for p in providers if (p if isinstance(p, str) else p[0]) not in available]
        if unknown:
            raise ValueError(f"providers {unknown} are not available in this onnxruntime; available: {available}.")
        options = ort.SessionOptions()
        if self.n_threads is not None:
            options.intra_op_num_threads = int(self.n_threads)
        file = folder / MODEL_NAME
        try:
            session = ort.InferenceSession(model_bytes if model_bytes is not None else str(file),
                                           sess_options=options, providers=providers)
        except Exception as exc:
            raise ModelNotFoundError(
                f"onnxruntime cannot load {file} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "it is damaged or truncated, or needs a newer onnxruntime. Export again."
            ) from None
        inputs = [i.name for i in session.get_inputs()]
        outputs = session.get_outputs()
        width = outputs[0].shape[-1] if outputs and outputs[0].shape else None
        if inputs != config["inputs"] or [o.name for o in outputs] != [config["output"]] or (
            isinstance(width, int) and width != n_classes
        ):
            raise ModelNotFoundError(
                f"{file} takes {inputs} and gives {[o.name for o in outputs]} of width {width}, but "
                f"{ONNX_CONFIG_NAME} says {config['inputs']} -> {config['output']!r} for {n_classes} classes: "
                "the files come from different exports. Export again."
            )
        return session

    def _check_fitted(self) -> None:
        if not hasattr(self, "session_"):
            raise NotFittedError(
                f"This OnnxClassifier is not fitted yet: call fit() to load the folder {os.fspath(self.path)!r} "
                "(X and y are ignored), or use OnnxClassifier.from_pretrained(path)."
            )

    def predict_logits(self, X) -> np.ndarray:
        """Raw logits, one column per class, shape (n_samples, n_classes), float32.

        Texts are tokenized in chunks, sorted by length, padded per batch and
        run through onnxruntime; results come back in the caller's order.
        """
        from ._neural import _CHUNK, length_sorted_batches

        self._check_fitted()
        self._validate_params()  # batch_size may have been changed since fit
        texts = encodable_texts(check_texts(X))
        config = self.config_
        out = np.empty((len(texts), len(self.classes_)), dtype=np.float32)
        for start in range(0, len(texts), _CHUNK):
            seqs = _encode(self.tokenizer_, texts[start : start + _CHUNK], config)
            for idx in length_sorted_batches([len(s) for s in seqs], self.batch_size):
                feeds = _collate([seqs[i] for i in idx], config["inputs"], config["pad_id"])
                out[start + idx] = self.session_.run([config["output"]], feeds)[0]
        return out

    # ------------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("session_", None)  # onnxruntime sessions cannot be pickled; rebuilt by __setstate__
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "config_" in state:
            _prepare_tokenizer(self.tokenizer_, self.config_)  # encode_special_tokens is not pickled
            self.session_ = self._session(self.model_bytes_, self.path_, self.config_, len(self.classes_))
