"""A shallower transformer initialised from a deeper one (DistilBERT-style).

Sanh et al. (2019) initialised DistilBERT from BERT by keeping every other
layer; TinyBERT maps student layers uniformly onto the teacher's. Both start
the student from the teacher's embeddings and a subset of its layers, which
is a far better starting point than random weights. :func:`shrink_transformer`
writes such a student to a folder that :class:`~kdtext.TransformerClassifier`
loads like any model, so it can then be distilled with
:class:`~kdtext.DistillationClassifier`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from numbers import Integral
from pathlib import Path
from typing import Any, Iterable, Sequence

logger = logging.getLogger(__name__)

__all__ = ["shrink_transformer", "select_layers"]

# config fields that hold token ids and must follow a reduced vocabulary
_CONFIG_TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "unk_token_id")


def select_layers(n_source: int, layers: int | Sequence[int] | None = None) -> list[int]:
    """Which source layers a shrunk model keeps, in order.

    Parameters
    ----------
    n_source : int
        Number of layers of the source model.
    layers : int, sequence of int or None, default=None
        None: every other layer from the first (0, 2, 4, ...), as DistilBERT
        was built. An int ``n``: ``n`` layers spread uniformly and ending with
        the last one (TinyBERT's mapping; 3 of 6 gives 1, 3, 5). A sequence:
        those layer indices, strictly increasing.

    Returns
    -------
    list of int

    Examples
    --------
    >>> from kdtext.shrink import select_layers
    >>> select_layers(6), select_layers(6, 3), select_layers(12, 4), select_layers(6, [0, 5])
    ([0, 2, 4], [1, 3, 5], [2, 5, 8, 11], [0, 5])
    """
    if layers is None:
        return list(range(0, n_source, 2))
    if isinstance(layers, Integral) and not isinstance(layers, bool):
        n = int(layers)
        if not 1 <= n <= n_source:
            raise ValueError(f"layers={n} must be between 1 and the source's {n_source} layers.")
        return [round((i + 1) * n_source / n) - 1 for i in range(n)]
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"layers must be None, an int or a sequence of layer indices, got {layers!r}.")
    chosen = list(layers)
    if not chosen or not all(isinstance(i, Integral) and not isinstance(i, bool) for i in chosen):
        raise ValueError(f"layers must be a non-empty sequence of ints, got {layers!r}.")
    chosen = [int(i) for i in chosen]
    if any(i < 0 or i >= n_source for i in chosen):
        raise ValueError(f"layers={chosen} holds indices outside 0..{n_source - 1} (the source has {n_source} layers).")
    if any(b <= a for a, b in zip(chosen, chosen[1:])):
        raise ValueError(f"layers={chosen} must be strictly increasing (a layer keeps its place in the stack).")
    return chosen


def _layer_stack(model: Any, n_layers: int) -> str:
    """Name of the ``nn.ModuleList`` holding the model's ``n_layers`` transformer layers."""
    import torch

    names = [
        name for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers and name
    ]
    if len(names) != 1:
        raise ValueError(
            f"Cannot tell which module of {type(model).__name__} holds its {n_layers} layers "
            f"(candidates: {names or 'none'}). shrink_transformer supports encoders with one stack of "
            "layers, such as BERT, RoBERTa, XLM-R, ELECTRA and DistilBERT."
        )
    return names[0]


def _source_pooling(source: Any, model: Any) -> str:
    """The pooling the source's head reads: a fitted teacher's ``pooling_``, else what ``pooling="auto"`` finds."""
    from .teachers import TransformerClassifier, auto_pooling, resolve_model_path

    if isinstance(source, TransformerClassifier):
        return getattr(source, "pooling_", "cls")
    return auto_pooling(resolve_model_path(source), model)[0]


def _load_source(source: Any, verbose: int):
    """(model, tokenizer, description) of a fitted TransformerClassifier or a model folder / hub id."""
    from .teachers import TransformerClassifier

    if isinstance(source, TransformerClassifier):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(source, "model_")
        return source.model_, source.tokenizer_, f"TransformerClassifier({source.model!r})"
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a fitted TransformerClassifier or a model folder / hub id, got {type(source).__name__}."
        )
    from transformers import AutoModel

    from .teachers import load_tokenizer_and_model, resolve_model_path

    path = resolve_model_path(source)
    # checks the folder (config, weights, tokenizer files) and names the file at fault
    tokenizer, model = load_tokenizer_and_model(path, AutoModel, verbose=verbose, what="source")
    return model, tokenizer, os.fspath(source)


def _source_folder(source: Any) -> str | None:
    """The local folder ``source`` is read from, or None (a hub id, or not a path at all).

    For a fitted :class:`~kdtext.TransformerClassifier` it is the folder its
    ``model`` parameter names (the embedded default model for None). Nothing
    is loaded and a bad source is left for :func:`_load_source` to report.
    """
    from .exceptions import ModelNotFoundError
    from .teachers import TransformerClassifier, default_model_path

    model = source.model if isinstance(source, TransformerClassifier) else source
    if model is None and isinstance(source, TransformerClassifier):
        try:
            model = default_model_path()
        except ModelNotFoundError:
            return None
    if not isinstance(model, (str, os.PathLike)):
        return None
    folder = os.path.expanduser(os.fspath(model))
    return folder if os.path.isdir(folder) else None


def _check_output_folder(source: Any, path: str | os.PathLike) -> Path:
    """``path`` as a Path, refusing the source's own folder (writing there would overwrite the source).

    Writing only touches files directly in the output folder (config,
    weights, tokenizer files), so an output folder inside the source's folder,
    or one that holds the source's folder, leaves the source intact and is
    allowed.
    """
    out = Path(path).expanduser()
    folder = _source_folder(source)
    if folder is None:
        return out
    same = os.path.realpath(folder) == os.path.realpath(out)
    if not same and out.exists():
        try:
            same = os.path.samefile(folder, out)  # the same folder under two names, e.g. a bind mount
        except OSError:
            pass
    if same:
        shown = os.fspath(path)
        resolved = os.path.realpath(out)
        suggestion = resolved.rstrip(os.sep) + "-shrunk"
        raise ValueError(
            f"path={shown!r} is the source model's own folder ({folder!r}"
            + (f"; both resolve to {resolved!r}" if resolved not in (shown, folder) else "")
            + "): shrink_transformer would overwrite the source's config, weights and tokenizer with the "
            f"shrunk copy. Choose another output folder, e.g. path={suggestion!r}."
        )
    return out


def _reduce_vocabulary(tokenizer: Any, texts: Any, min_frequency: int, config: Any) -> tuple[list[int], Any]:
    """The source token ids to keep, ascending, and the reduced ``tokenizers.Tokenizer``.

    Kept: every piece the texts use at least ``min_frequency`` times, every
    special or added token, the token ids the config names, and every
    single-character piece, so that a word the texts never showed still
    splits into characters instead of becoming the unknown token. Ids are
    renumbered in their old order, so special tokens at the start keep their ids.
    """
    import json
    from collections import Counter

    from tokenizers import Tokenizer

    from .base import check_texts, encodable_texts

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(
            f"Reducing the vocabulary needs a fast (tokenizers-backed) tokenizer; {type(tokenizer).__name__} is not "
            "one. Pass texts=None to keep the whole vocabulary."
        )
    serialized = backend.to_str()
    spec = json.loads(serialized)
    kind = spec["model"]["type"]
    if kind not in ("WordPiece", "Unigram"):
        raise ValueError(
            f"Reducing the vocabulary supports WordPiece (BERT, DistilBERT, ELECTRA, rubert-tiny) and Unigram "
            f"(XLM-R, multilingual-e5) tokenizers; this one is {kind}, whose merges tie pieces together. Pass "
            "texts=None to keep the whole vocabulary."
        )
    # lone surrogates (e.g. "x \ud800") cannot reach a tokenizer; the same rule as kdtext's estimators
    texts = encodable_texts(check_texts(texts, name="texts"))
    counter = Tokenizer.from_str(serialized)  # a copy, so the source tokenizer's settings are untouched
    counter.no_truncation()
    counter.no_padding()
    counts: Counter = Counter()
    for start in range(0, len(texts), 4096):
        for enc in counter.encode_batch(texts[start:start + 4096], add_special_tokens=False):
            counts.update(enc.ids)

    model = spec["model"]
    if kind == "WordPiece":
        prefix = model.get("continuing_subword_prefix") or "##"
        pieces = dict(model["vocab"])  # token -> id
        single = {i for t, i in pieces.items() if len(t) == 1 or (t.startswith(prefix) and len(t) == len(prefix) + 1)}
        unk = pieces.get(model.get("unk_token"))
    else:
        pieces = {entry[0]: i for i, entry in enumerate(model["vocab"])}
        single = {i for t, i in pieces.items() if len(t) == 1 or (t.startswith("\u2581") and len(t) == 2)}
        unk = model.get("unk_id")
    keep = {i for i, c in counts.items() if c >= min_frequency} | single
    keep |= {a["id"] for a in spec.get("added_tokens") or []}
    keep |= {getattr(config, a) for a in _CONFIG_TOKEN_IDS if isinstance(getattr(config, a, None), int)}
    if unk is not None:
        keep.add(unk)
    n_source = getattr(config, "vocab_size", None) or len(pieces)
    kept = sorted(i for i in keep if 0 <= i < n_source)
    new = {old: k for k, old in enumerate(kept)}

    if kind == "WordPiece":
        model["vocab"] = {t: new[i] for t, i in sorted(pieces.items(), key=lambda kv: kv[1]) if i in new}
    else:
        model["vocab"] = [model["vocab"][i] for i in kept]
        if model.get("unk_id") is not None:
            model["unk_id"] = new[model["unk_id"]]
    for added in spec.get("added_tokens") or []:
        added["id"] = new[added["id"]]
    if isinstance(spec.get("padding"), dict) and isinstance(spec["padding"].get("pad_id"), int):
        spec["padding"]["pad_id"] = new.get(spec["padding"]["pad_id"], 0)

    def remap(node: Any) -> None:  # special-token ids inside the post-processor (Template, Bert, Roberta, Sequence)
        if isinstance(node, dict):
            if isinstance(node.get("ids"), list):
                node["ids"] = [new[i] for i in node["ids"]]
            for key in ("cls", "sep"):
                pair = node.get(key)
                if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], int):
                    pair[1] = new[pair[1]]
            for value in node.values():
                remap(value)
        elif isinstance(node, list):
            for value in node:
                remap(value)

    remap(spec.get("post_processor"))
    for attr in _CONFIG_TOKEN_IDS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and value in new:
            setattr(config, attr, new[value])
    config.vocab_size = len(kept)
    return kept, Tokenizer.from_str(json.dumps(spec))


def _embedding_keys(model: Any) -> list[str]:
    """State-dict keys of the input (and any output) embedding weights and biases indexed by token id."""
    import torch

    tables = [model.get_input_embeddings()]
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(out, torch.nn.Module):
        tables.append(out)
    keys = []
    for name, module in model.named_modules():
        if any(module is t for t in tables):
            keys.append(f"{name}.weight")
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor) and bias.shape[0] == module.weight.shape[0]:
                keys.append(f"{name}.bias")
    return keys


def shrink_transformer(
    source: Any,
    path: str | os.PathLike,
    *,
    layers: int | Sequence[int] | None = None,
    texts: Iterable[str] | None = None,
    min_frequency: int = 1,
    verbose: int = 0,
) -> str:
    """Write a shallower copy of a transformer, initialised from its layers.

    The copy keeps the source's embeddings, tokenizer and the chosen layers
    (by default every other one, as DistilBERT was initialised from BERT);
    a fitted classifier's head is kept too. Pass the folder to
    :class:`~kdtext.TransformerClassifier` and distil the source into it.

    With ``texts``, the vocabulary is reduced too, as the Russian rubert-tiny
    tutorial did for its 3-layer student: only the pieces those texts use
    (plus special tokens and single characters) keep their embedding rows.
    For a small model most parameters sit in the word embeddings (MiniLM:
    11.7M of 22.7M), so this shrinks the file and memory; it does not make
    inference faster.

    Parameters
    ----------
    source : fitted TransformerClassifier, str or path-like
        The model to shrink: a fitted :class:`~kdtext.TransformerClassifier`
        (typically the teacher) or a model folder / hub id.
    path : str or path-like
        Folder to write (created if missing): config, safetensors weights and
        tokenizer, as ``save_pretrained`` writes them, and
        ``1_Pooling/config.json`` naming the vector the head reads (the
        fitted source's ``pooling_``, or what ``pooling="auto"`` finds for a
        folder), so that ``TransformerClassifier(path)`` pools as the source
        did. It must not be the source's own folder (a ValueError says so
        before anything is loaded); a folder inside it is fine, as only
        files inside ``path`` are written.
    layers : int, sequence of int or None, default=None
        Which source layers to keep; see :func:`select_layers`. None: every
        other layer from the first; an int: that many, spread uniformly.
        Pass the source's number of layers to keep them all.
    texts : iterable of str or None, default=None
        Texts whose pieces the reduced vocabulary keeps (typically the
        transfer set). None keeps the whole vocabulary. WordPiece (BERT
        family) and Unigram (XLM-R, multilingual-e5) tokenizers are
        supported; a word the texts never showed splits into characters.
        Lone surrogates (e.g. ``"x \\ud800"``) are read as U+FFFD, as
        :func:`kdtext.base.encodable_texts` does for every kdtext tokenizer.
    min_frequency : int, default=1
        With ``texts``: keep a piece only if the texts use it at least this
        many times (special tokens and single characters are always kept).
    verbose : int, default=0
        0 hides transformers' loading messages.

    Returns
    -------
    path : str
        The folder, ready for ``TransformerClassifier(path)``.

    Examples
    --------
    >>> from kdtext import DistillationClassifier, TransformerClassifier
    >>> from kdtext.shrink import shrink_transformer
    >>> teacher = TransformerClassifier().fit(X_labeled, y_labeled)  # doctest: +SKIP
    >>> folder = shrink_transformer(teacher, "student-3l", layers=3)  # doctest: +SKIP
    >>> folder = shrink_transformer(teacher, "student-3l-small-vocab", texts=X_all)  # doctest: +SKIP
    >>> kd = DistillationClassifier(teacher, TransformerClassifier(folder), loss="mse")  # doctest: +SKIP
    >>> kd.fit(X_all, y_all)  # doctest: +SKIP
    """
    import torch

    if isinstance(min_frequency, bool) or not isinstance(min_frequency, Integral) or min_frequency < 1:
        raise ValueError(f"min_frequency must be an int >= 1, got {min_frequency!r}.")
    out = _check_output_folder(source, path)  # before any loading or writing
    model, tokenizer, described = _load_source(source, verbose)
    n_source = getattr(model.config, "num_hidden_layers", None)
    if not isinstance(n_source, int):
        raise ValueError(f"{type(model).__name__}'s config has no num_hidden_layers; it cannot be shrunk here.")
    keep = select_layers(n_source, layers)
    stack = _layer_stack(model, n_source)
    new_index = {old: new for new, old in enumerate(keep)}

    prefix = stack + "."
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith(prefix):
            index, rest = key[len(prefix):].split(".", 1)
            if int(index) in new_index:
                state[f"{prefix}{new_index[int(index)]}.{rest}"] = value.detach().to("cpu")
        else:
            state[key] = value.detach().to("cpu")

    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(keep)
    for per_layer in ("layer_types",):  # configs that describe each layer keep the chosen ones
        values = getattr(config, per_layer, None)
        if isinstance(values, list) and len(values) == n_source:
            setattr(config, per_layer, [values[i] for i in keep])
    config.kdtext_shrunk_from = {"source": described, "source_layers": n_source, "kept_layers": keep}
    reduced_tokenizer = None
    if texts is not None:
        source_vocab = config.vocab_size
        kept_ids, reduced_tokenizer = _reduce_vocabulary(tokenizer, texts, int(min_frequency), config)
        index = torch.as_tensor(kept_ids, dtype=torch.long)
        for key in _embedding_keys(model):
            state[key] = state[key].index_select(0, index).clone()
        config.kdtext_shrunk_from.update(source_vocab_size=source_vocab, vocab_size=len(kept_ids))

    with torch.random.fork_rng(devices=[]):  # the throwaway random init must not move the user's RNG
        student = type(model)(config)
    try:
        student.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # pragma: no cover - an architecture whose keys do not follow its layer stack
        raise ValueError(
            f"Could not map {type(model).__name__}'s weights onto a {len(keep)}-layer copy: {exc}"
        ) from exc

    pooling = _source_pooling(source, model)
    config.kdtext_shrunk_from["pooling"] = pooling
    out.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # the student's head reads the vector the source's did: TransformerClassifier(out) with pooling="auto" finds it here
    pooling_dir = out / "1_Pooling"
    pooling_dir.mkdir(exist_ok=True)
    (pooling_dir / "config.json").write_text(json.dumps({
        "word_embedding_dimension": int(getattr(config, "hidden_size", 0) or 0),
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
    }, indent=2), encoding="utf-8")
    if reduced_tokenizer is not None:  # the same tokenizer class and settings, over the reduced vocabulary
        reduced_tokenizer.save(os.fspath(out / "tokenizer.json"))
        for stale in ("vocab.txt", "sentencepiece.bpe.model", "spiece.model"):  # slow-tokenizer files would disagree
            (out / stale).unlink(missing_ok=True)
    n_params = sum(p.numel() for p in student.parameters())
    logger.info(
        "shrink_transformer: kept layers %s of %d of %s (%.1fM parameters) in %s",
        keep, n_source, described, n_params / 1e6, out,
    )
    return str(out)
