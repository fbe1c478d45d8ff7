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
import logging
import os
from numbers import Integral
from pathlib import Path
from typing import Any, Sequence

logger = logging.getLogger(__name__)

__all__ = ["shrink_transformer", "select_layers"]


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
    from transformers import AutoModel, AutoTokenizer

    from .exceptions import ModelNotFoundError
    from .teachers import _quiet_transformers, resolve_model_path

    path = resolve_model_path(source)
    try:
        with _quiet_transformers(verbose):
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
            model = AutoModel.from_pretrained(path, trust_remote_code=False)
    except OSError as exc:
        raise ModelNotFoundError(
            f"Could not load source={os.fspath(source)!r} ({exc.__class__.__name__}). Pass a model folder, a "
            "reachable hub id, or a fitted TransformerClassifier."
        ) from exc
    return model, tokenizer, os.fspath(source)


def shrink_transformer(
    source: Any,
    path: str | os.PathLike,
    *,
    layers: int | Sequence[int] | None = None,
    verbose: int = 0,
) -> str:
    """Write a shallower copy of a transformer, initialised from its layers.

    The copy keeps the source's embeddings, tokenizer and the chosen layers
    (by default every other one, as DistilBERT was initialised from BERT);
    a fitted classifier's head is kept too. Pass the folder to
    :class:`~kdtext.TransformerClassifier` and distil the source into it.

    Parameters
    ----------
    source : fitted TransformerClassifier, str or path-like
        The model to shrink: a fitted :class:`~kdtext.TransformerClassifier`
        (typically the teacher) or a model folder / hub id.
    path : str or path-like
        Folder to write (created if missing): config, safetensors weights and
        tokenizer, as ``save_pretrained`` writes them.
    layers : int, sequence of int or None, default=None
        Which source layers to keep; see :func:`select_layers`. None: every
        other layer from the first; an int: that many, spread uniformly.
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
    >>> kd = DistillationClassifier(teacher, TransformerClassifier(folder), loss="mse")  # doctest: +SKIP
    >>> kd.fit(X_all, y_all)  # doctest: +SKIP
    """
    import torch

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

    with torch.random.fork_rng(devices=[]):  # the throwaway random init must not move the user's RNG
        student = type(model)(config)
    try:
        student.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # pragma: no cover - an architecture whose keys do not follow its layer stack
        raise ValueError(
            f"Could not map {type(model).__name__}'s weights onto a {len(keep)}-layer copy: {exc}"
        ) from exc

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in student.parameters())
    logger.info(
        "shrink_transformer: kept layers %s of %d of %s (%.1fM parameters) in %s",
        keep, n_source, described, n_params / 1e6, out,
    )
    return str(out)
