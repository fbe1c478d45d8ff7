"""A shallower transformer initialised from a deeper one (DistilBERT-style).

Sanh et al. (2019) initialised DistilBERT from BERT by keeping every other
layer; TinyBERT maps student layers uniformly onto the teacher's. Both start
the student from the teacher's embeddings and a subset of its layers, which
is a far better starting point than random weights. The Russian rubert-tiny
tutorial also narrowed its student (312 -> 256 hidden dims, fewer heads, a
smaller feed-forward layer) by slicing the teacher's matrices, and cut the
vocabulary to the pieces of its corpus. :func:`shrink_transformer` does all
three and writes such a student to a folder that :class:`~kdtext.TransformerClassifier`
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


# ------------------------------------------------------------ width reduction
# model types whose weight layout _width_roles knows (BERT incl. multilingual-e5, the RoBERTa family, DistilBERT)
_WIDTH_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert")
# the config fields holding the three widths, where a model type names them otherwise
_WIDTH_CONFIG_NAMES = {
    "distilbert": {"hidden_size": "dim", "num_attention_heads": "n_heads", "intermediate_size": "hidden_dim"},
}
_WIDTH_SELECTIONS = ("first", "norm")
# per-layer weights, after "<stack>.<i>.": the role of each axis (H hidden, QK / V attention, F feed-forward, None kept)
_LAYER_ROLES = {
    "attention.self.query.weight": ("QK", "H"), "attention.self.query.bias": ("QK",),
    "attention.self.key.weight": ("QK", "H"), "attention.self.key.bias": ("QK",),
    "attention.self.value.weight": ("V", "H"), "attention.self.value.bias": ("V",),
    "attention.output.dense.weight": ("H", "V"), "attention.output.dense.bias": ("H",),
    "attention.output.LayerNorm.weight": ("H",), "attention.output.LayerNorm.bias": ("H",),
    "intermediate.dense.weight": ("F", "H"), "intermediate.dense.bias": ("F",),
    "output.dense.weight": ("H", "F"), "output.dense.bias": ("H",),
    "output.LayerNorm.weight": ("H",), "output.LayerNorm.bias": ("H",),
    # DistilBERT
    "attention.q_lin.weight": ("QK", "H"), "attention.q_lin.bias": ("QK",),
    "attention.k_lin.weight": ("QK", "H"), "attention.k_lin.bias": ("QK",),
    "attention.v_lin.weight": ("V", "H"), "attention.v_lin.bias": ("V",),
    "attention.out_lin.weight": ("H", "V"), "attention.out_lin.bias": ("H",),
    "sa_layer_norm.weight": ("H",), "sa_layer_norm.bias": ("H",),
    "ffn.lin1.weight": ("F", "H"), "ffn.lin1.bias": ("F",), "ffn.lin2.weight": ("H", "F"), "ffn.lin2.bias": ("H",),
    "output_layer_norm.weight": ("H",), "output_layer_norm.bias": ("H",),
}
# every other weight, by how its key ends: embeddings, pooler, classifier heads (BERT, RoBERTa), MLM heads
_OTHER_ROLES = {
    "embeddings.word_embeddings.weight": (None, "H"), "embeddings.position_embeddings.weight": (None, "H"),
    "embeddings.token_type_embeddings.weight": (None, "H"),
    "embeddings.LayerNorm.weight": ("H",), "embeddings.LayerNorm.bias": ("H",),
    "pooler.dense.weight": ("H", "H"), "pooler.dense.bias": ("H",),
    "classifier.weight": (None, "H"), "classifier.bias": (None,),
    "classifier.dense.weight": ("H", "H"), "classifier.dense.bias": ("H",),
    "classifier.out_proj.weight": (None, "H"), "classifier.out_proj.bias": (None,),
    "qa_outputs.weight": (None, "H"), "qa_outputs.bias": (None,),
    "cls.predictions.transform.dense.weight": ("H", "H"), "cls.predictions.transform.dense.bias": ("H",),
    "cls.predictions.transform.LayerNorm.weight": ("H",), "cls.predictions.transform.LayerNorm.bias": ("H",),
    "cls.predictions.decoder.weight": (None, "H"), "cls.predictions.decoder.bias": (None,),
    "cls.predictions.bias": (None,), "cls.seq_relationship.weight": (None, "H"), "cls.seq_relationship.bias": (None,),
    "lm_head.dense.weight": ("H", "H"), "lm_head.dense.bias": ("H",),
    "lm_head.layer_norm.weight": ("H",), "lm_head.layer_norm.bias": ("H",),
    "lm_head.decoder.weight": (None, "H"), "lm_head.decoder.bias": (None,), "lm_head.bias": (None,),
    "pre_classifier.weight": ("H", "H"), "pre_classifier.bias": ("H",),  # DistilBERT's heads
    "vocab_transform.weight": ("H", "H"), "vocab_transform.bias": ("H",),
    "vocab_layer_norm.weight": ("H",), "vocab_layer_norm.bias": ("H",),
    "vocab_projector.weight": (None, "H"), "vocab_projector.bias": (None,),
}


def _width_config_names(config: Any) -> dict[str, str]:
    """The config fields holding hidden_size, num_attention_heads and intermediate_size for this model type."""
    names = {name: name for name in ("hidden_size", "num_attention_heads", "intermediate_size")}
    return {**names, **_WIDTH_CONFIG_NAMES.get(getattr(config, "model_type", None), {})}


def _check_width(name: str, value: Any) -> int | None:
    """``value`` as a positive int, or None; a bool, float or non-positive width is refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be None or an int >= 1, got {value!r}.")
    return int(value)


def _width_targets(config: Any, hidden_size: Any, num_attention_heads: Any, intermediate_size: Any) -> dict[str, int]:
    """The student's widths, checked against the source's config (a ValueError says what cannot be sliced)."""
    model_type = getattr(config, "model_type", None)
    if model_type not in _WIDTH_MODEL_TYPES:
        raise ValueError(
            f"Width reduction (hidden_size / num_attention_heads / intermediate_size) supports the weight layout of "
            f"{', '.join(_WIDTH_MODEL_TYPES)} models (BERT, incl. multilingual-e5, RoBERTa, XLM-R, DistilBERT); this "
            f"source is "
            f"model_type={model_type!r}. Pass only layers= and texts= to shrink it."
        )
    source = {name: getattr(config, field) for name, field in _width_config_names(config).items()}
    embedding_size = getattr(config, "embedding_size", None)
    if embedding_size is not None and embedding_size != source["hidden_size"]:
        raise ValueError(
            f"The source's embeddings ({embedding_size}) are projected to its hidden size ({source['hidden_size']}) "
            "(ELECTRA style); width reduction does not slice that projection."
        )
    given = {
        "hidden_size": hidden_size, "num_attention_heads": num_attention_heads, "intermediate_size": intermediate_size,
    }
    target = {name: source[name] if value is None else value for name, value in given.items()}
    for name, value in target.items():
        if value > source[name]:
            raise ValueError(
                f"{name}={value} is larger than the source's {source[name]}: slicing can only narrow a model."
            )
    source_head = source["hidden_size"] // source["num_attention_heads"]
    if target["hidden_size"] % target["num_attention_heads"]:
        fewest = next(n for n in range(-(-target["hidden_size"] // source_head), target["hidden_size"] + 1)
                      if target["hidden_size"] % n == 0)
        raise ValueError(
            f"hidden_size={target['hidden_size']} is not divisible by num_attention_heads="
            f"{target['num_attention_heads']}: every head gets hidden_size / num_attention_heads dimensions, at most "
            f"the source's {source_head}. Pass e.g. num_attention_heads={fewest}."
        )
    head = target["hidden_size"] // target["num_attention_heads"]
    if head > source_head:
        raise ValueError(
            f"hidden_size={target['hidden_size']} with num_attention_heads={target['num_attention_heads']} gives heads "
            f"of {head} dimensions, larger than the source's {source_head}: a head can only lose dimensions. Pass "
            f"num_attention_heads >= {-(-target['hidden_size'] // source_head)}."
        )
    return target


def _width_roles(key: str, stack: str) -> tuple[int | None, tuple[str | None, ...]]:
    """(layer index or None, role of each axis) of a state-dict key; a ValueError for a weight it does not know."""
    prefix = stack + "."
    if key.startswith(prefix):
        index, rest = key[len(prefix):].split(".", 1)
        if rest in _LAYER_ROLES:
            return int(index), _LAYER_ROLES[rest]
    else:
        for suffix, roles in _OTHER_ROLES.items():
            if key == suffix or key.endswith("." + suffix):
                return None, roles
    raise ValueError(
        f"Width reduction does not know how to slice the weight {key!r}; it supports BERT, RoBERTa / XLM-R and "
        "DistilBERT encoders with their pooler, classification, question-answering and masked-LM heads."
    )


def _rank(scores: Any, k: int, rule: str) -> list[int]:
    """The first ``k`` indices ("first") or the ``k`` largest scores ("norm"), ascending."""
    import torch

    if rule == "first":
        return list(range(k))
    top = torch.topk(scores, k, sorted=False).indices  # ties: torch picks; scores are norms of real weights
    return sorted(int(i) for i in top)


def _slice_norms(tensor: Any, axis: int) -> Any:
    """L2 norm of every slice of ``tensor`` along ``axis`` (over all other axes)."""
    dims = [d for d in range(tensor.dim()) if d != axis]
    t = tensor.detach().float()
    return t.pow(2).sum(dim=dims).sqrt() if dims else t.abs()


def _width_plan(state: dict, stack: str, n_layers: int, source: dict[str, int], target: dict[str, int],
                rule: str) -> dict[str, Any]:
    """Which hidden dims, heads, within-head dims and feed-forward units the student keeps.

    "first" keeps the first indices. "norm" ranks: a hidden dim by the summed L2
    norm of every weight slice that reads or writes it (embeddings, every
    kept layer, pooler, heads); a head by the norms of its Q, K, V rows and
    attention-output columns; within a kept head, a Q/K dim by its Q and K
    rows (the same dims for both) and a V dim by its V row and output
    column; a feed-forward unit by its intermediate row (and bias) and
    output column. Norms are computed on the shrunk model's weights (after
    ``layers=`` and ``texts=``), and kept indices are sorted ascending.
    """
    import torch

    n_heads, head = source["num_attention_heads"], source["hidden_size"] // source["num_attention_heads"]
    new_heads, new_head = target["num_attention_heads"], target["hidden_size"] // target["num_attention_heads"]
    hidden = torch.zeros(source["hidden_size"])
    per_layer = [{"QK": torch.zeros(n_heads * head), "V": torch.zeros(n_heads * head),
                  "F": torch.zeros(source["intermediate_size"])} for _ in range(n_layers)]
    for key, tensor in state.items():
        layer, roles = _width_roles(key, stack)
        for axis, role in enumerate(roles):
            if role == "H":
                hidden += _slice_norms(tensor, axis)
            elif role is not None:
                per_layer[layer][role] += _slice_norms(tensor, axis)
    plan = {"hidden": _rank(hidden, target["hidden_size"], rule), "QK": [], "V": [], "F": [], "heads": []}
    for scores in per_layer:
        qk, v = scores["QK"].view(n_heads, head), scores["V"].view(n_heads, head)
        heads = _rank(qk.sum(1) + v.sum(1), new_heads, rule)
        plan["heads"].append(heads)
        for role, per_dim in (("QK", qk), ("V", v)):
            plan[role].append([h * head + d for h in heads for d in _rank(per_dim[h], new_head, rule)])
        plan["F"].append(_rank(scores["F"], target["intermediate_size"], rule))
    return plan


def _narrow_state(state: dict, stack: str, plan: dict[str, Any]) -> dict:
    """``state`` with every weight sliced to the kept hidden dims, heads and feed-forward units of ``plan``."""
    import torch

    hidden = torch.as_tensor(plan["hidden"], dtype=torch.long)
    narrowed = {}
    for key, tensor in state.items():
        layer, roles = _width_roles(key, stack)
        for axis, role in enumerate(roles):
            if role == "H":
                tensor = tensor.index_select(axis, hidden)
            elif role is not None:
                tensor = tensor.index_select(axis, torch.as_tensor(plan[role][layer], dtype=torch.long))
        narrowed[key] = tensor.clone()
    return narrowed


def shrink_transformer(
    source: Any,
    path: str | os.PathLike,
    *,
    layers: int | Sequence[int] | None = None,
    texts: Iterable[str] | None = None,
    min_frequency: int = 1,
    hidden_size: int | None = None,
    num_attention_heads: int | None = None,
    intermediate_size: int | None = None,
    width_selection: str = "first",
    verbose: int = 0,
) -> str:
    """Write a shallower (and optionally narrower) copy of a transformer, initialised from its weights.

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

    With ``hidden_size``, ``num_attention_heads`` or ``intermediate_size``
    the copy is narrowed too, as rubert-tiny's student was, by slicing the
    source's matrices (no weight is recomputed):

    - one set of kept hidden (residual-stream) dims serves every layer: the
      embedding tables' columns and LayerNorm, every layer's Q/K/V and
      intermediate input columns, the attention-output and output dense rows
      and their LayerNorms, the pooler, a classifier head (BERT's
      ``classifier``, RoBERTa's ``dense`` and ``out_proj``) and a masked-LM
      head's transform and decoder columns;
    - each layer keeps ``num_attention_heads`` of its heads, each of size
      ``hidden_size / num_attention_heads``, at most the source's head size;
      a smaller head keeps some of its dims (Q and K the same ones, V its
      own, which the attention-output dense's columns follow). Q is not
      rescaled, so a smaller head's attention scores are divided by the
      square root of the new head size;
    - each layer keeps ``intermediate_size`` feed-forward units (rows of the
      intermediate dense, columns of the output dense).

    The config gets the new widths, and ``config.kdtext_shrunk_from`` the
    source's widths, the rule, the kept hidden dims (``hidden_dims``, so
    that later code can map student dims to teacher dims) and the kept heads
    of each layer (``heads``). Width reduction supports BERT (including
    multilingual-e5, a BertModel), the RoBERTa family (RoBERTa, XLM-R,
    CamemBERT) and DistilBERT; other architectures (e.g. ELECTRA, whose
    embeddings are projected to the hidden size) are refused.

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
    hidden_size : int or None, default=None
        Hidden size of the narrowed copy, at most the source's. None keeps it.
    num_attention_heads : int or None, default=None
        Heads per layer, at most the source's; ``hidden_size`` must be a
        multiple of it and the head size ``hidden_size / num_attention_heads``
        at most the source's (a ValueError suggests a count). None keeps the
        source's count (so narrowing ``hidden_size`` alone makes the heads
        smaller).
    intermediate_size : int or None, default=None
        Feed-forward units per layer, at most the source's. None keeps them.
    width_selection : {"first", "norm"}, default="first"
        Which hidden dims, heads, within-head dims and feed-forward units a
        narrowed copy keeps. "first": the first ones, as the rubert-tiny
        tutorial did. "norm": the ones whose weights have the largest L2
        norms, computed on the copy's weights (kept layers and vocabulary):
        a hidden dim by the summed norms of every weight slice reading or
        writing it, a head by its Q, K, V rows and attention-output columns,
        a feed-forward unit by its intermediate row and output column; kept
        indices stay in ascending order. The default is "first" because it
        was better in ``benchmarks/shrink_width.py``: all-MiniLM-L6-v2 cut
        to 3 layers and 256 hidden / 8 heads / 1024 units, fine-tuned with
        ``TransformerClassifier`` defaults on 2,000 SST-2 sentences, dev
        accuracy 0.764 and 0.770 (seeds 0, 1) with "first", 0.742 and 0.757
        with "norm", 0.702 and 0.705 from random weights, 0.801 and 0.778
        at full width; and multilingual-e5-small cut the same way, with
        frozen embeddings, on 2,000 ru_toxic texts: test F1 0.786 and 0.813
        with "first", 0.740 and 0.784 with "norm" (see
        ``benchmarks/README.md``).
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
    >>> folder = shrink_transformer(teacher, "student-3l-256", layers=3, hidden_size=256,
    ...                             num_attention_heads=8, intermediate_size=1024)  # doctest: +SKIP
    >>> kd = DistillationClassifier(teacher, TransformerClassifier(folder), loss="mse")  # doctest: +SKIP
    >>> kd.fit(X_all, y_all)  # doctest: +SKIP
    """
    import torch

    if isinstance(min_frequency, bool) or not isinstance(min_frequency, Integral) or min_frequency < 1:
        raise ValueError(f"min_frequency must be an int >= 1, got {min_frequency!r}.")
    widths = {
        "hidden_size": _check_width("hidden_size", hidden_size),
        "num_attention_heads": _check_width("num_attention_heads", num_attention_heads),
        "intermediate_size": _check_width("intermediate_size", intermediate_size),
    }
    if width_selection not in _WIDTH_SELECTIONS:
        raise ValueError(f"width_selection must be one of {_WIDTH_SELECTIONS}, got {width_selection!r}.")
    narrow = any(v is not None for v in widths.values())
    out = _check_output_folder(source, path)  # before any loading or writing
    model, tokenizer, described = _load_source(source, verbose)
    n_source = getattr(model.config, "num_hidden_layers", None)
    if not isinstance(n_source, int):
        raise ValueError(f"{type(model).__name__}'s config has no num_hidden_layers; it cannot be shrunk here.")
    keep = select_layers(n_source, layers)
    stack = _layer_stack(model, n_source)
    if narrow:  # every width is checked against the source before any work
        target = _width_targets(model.config, **widths)
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
    if narrow:
        fields = _width_config_names(config)
        source_widths = {name: getattr(config, fields[name]) for name in target}
        plan = _width_plan(state, stack, len(keep), source_widths, target, width_selection)
        state = _narrow_state(state, stack, plan)
        for name, value in target.items():
            setattr(config, fields[name], value)
        if getattr(config, "head_dim", None) is not None:
            config.head_dim = target["hidden_size"] // target["num_attention_heads"]
        config.kdtext_shrunk_from.update(
            {f"source_{name}": value for name, value in source_widths.items()},
            **target, width_selection=width_selection, hidden_dims=plan["hidden"], heads=plan["heads"],
        )

    with torch.random.fork_rng(devices=[]):  # the throwaway random init must not move the user's RNG
        student = type(model)(config)
    try:
        student.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # pragma: no cover - an architecture whose keys do not follow its layer stack
        raise ValueError(
            f"Could not map {type(model).__name__}'s weights onto a {len(keep)}-layer"
            + (" narrowed" if narrow else "") + f" copy: {exc}"
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
        "shrink_transformer: kept layers %s of %d of %s%s (%.1fM parameters) in %s",
        keep, n_source, described,
        f", narrowed to {target} ({width_selection!r} selection)" if narrow else "", n_params / 1e6, out,
    )
    return str(out)
