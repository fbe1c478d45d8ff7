"""Task-agnostic distillation of a transformer encoder on unlabeled text (DistilBERT / the rubert-tiny tutorial).

Before any labels, a small student (typically written by
:func:`~kdtext.shrink_transformer`: fewer layers, a narrower width, the
corpus's vocabulary) learns to behave like its teacher on raw text. Then
:class:`~kdtext.TransformerClassifier` fine-tunes it, or
:class:`~kdtext.DistillationClassifier` distils a fitted teacher into it.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Iterable

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["distill_encoder", "mask_tokens"]

#: DistilBERT's smoothing of the token choice: a token is picked for masking with probability ~ count ** -0.7
MASK_SMOOTHING = 0.7


def mask_tokens(ids, attention_mask, *, special, token_probs, mask_id: int, vocab_size: int, generator,
                probability: float = 0.15):
    """DistilBERT's masking: pick ``probability`` of the real tokens, then 80% [MASK], 10% random, 10% kept.

    Tokens are picked without replacement with probabilities proportional to
    ``token_probs[id]`` (DistilBERT: count ** -0.7, so frequent pieces are
    picked less often than uniform choice would); special tokens and padding
    are never picked.

    Parameters
    ----------
    ids, attention_mask : torch.LongTensor of shape (batch, seq_len)
    special : torch.BoolTensor of shape (vocab_size,)
        Ids never picked (and never drawn as random replacements).
    token_probs : torch.Tensor of shape (vocab_size,)
        Relative probability of picking each id.
    mask_id, vocab_size : int
    generator : torch.Generator
    probability : float, default=0.15

    Returns
    -------
    inputs : torch.LongTensor
        ``ids`` with the picked positions masked, replaced or kept.
    labels : torch.LongTensor
        The original id at picked positions, -100 elsewhere.

    Examples
    --------
    >>> import torch
    >>> from kdtext.encoders import mask_tokens
    >>> ids = torch.arange(5, 105).reshape(1, 100)
    >>> special = torch.zeros(110, dtype=torch.bool); special[:5] = True
    >>> inputs, labels = mask_tokens(ids, torch.ones_like(ids), special=special, token_probs=torch.ones(110),
    ...                              mask_id=4, vocab_size=110, generator=torch.Generator().manual_seed(0))
    >>> int((labels != -100).sum())  # 15% of 100 tokens
    15
    """
    import torch

    real = (attention_mask != 0) & ~special[ids]
    weights = token_probs[ids].float() * real.float()
    n_pick = int(math.ceil(probability * int(real.sum())))
    labels = torch.full_like(ids, -100)
    inputs = ids.clone()
    if n_pick == 0 or float(weights.sum()) <= 0:
        return inputs, labels
    n_pick = min(n_pick, int(real.sum()))
    flat = torch.multinomial(weights.flatten() / weights.sum(), n_pick, replacement=False, generator=generator)
    picked = torch.zeros(ids.numel(), dtype=torch.bool)
    picked[flat] = True
    picked = picked.view_as(ids).to(ids.device)
    labels[picked] = ids[picked]
    draw = torch.rand(ids.shape, generator=generator).to(ids.device)
    to_mask = picked & (draw < 0.8)
    to_random = picked & (draw >= 0.8) & (draw < 0.9)
    inputs[to_mask] = mask_id
    candidates = torch.nonzero(~special[:vocab_size]).flatten()
    choice = torch.randint(len(candidates), (int(to_random.sum()),), generator=generator)
    inputs[to_random] = candidates[choice].to(ids.device)
    return inputs, labels


def _load_encoder(source: Any, what: str, verbose: int):
    """(model, tokenizer, has_mlm_head, description) of a folder / hub id or a fitted TransformerClassifier."""
    from transformers import AutoModel, AutoModelForMaskedLM

    from .teachers import TransformerClassifier, _quiet_transformers, load_tokenizer_and_model, resolve_model_path

    if isinstance(source, TransformerClassifier):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(source, "model_")
        return source.model_.base_model, source.tokenizer_, False, f"TransformerClassifier({source.model!r})"
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"{what} must be a model folder, a hub id or (teacher only) a fitted TransformerClassifier, "
            f"got {type(source).__name__}."
        )
    path = resolve_model_path(source)
    tokenizer, model = load_tokenizer_and_model(path, AutoModel, verbose=verbose, what=what)
    architectures = getattr(model.config, "architectures", None) or []
    if any(str(a).endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures):
        with _quiet_transformers(verbose):
            mlm, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
        if not info.get("missing_keys"):
            return mlm, tokenizer, True, os.fspath(source)
    return model, tokenizer, False, os.fspath(source)


def _check_weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


def distill_encoder(
    teacher: Any,
    student: str | os.PathLike,
    texts: Iterable[str],
    output_dir: str | os.PathLike,
    *,
    mlm_weight: float = 2.0,
    kl_weight: float = 5.0,
    hidden_loss: str | None = "cosine",
    hidden_weight: float = 1.0,
    hidden_layers: Any = "auto",
    pooled_weight: float = 1.0,
    temperature: float = 2.0,
    mask_probability: float = 0.15,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 5e-4,
    warmup_ratio: float = 0.05,
    max_length: int = 128,
    device: str = "auto",
    random_state: Any = None,
    verbose: int = 0,
) -> str:
    """Distil a transformer encoder into a smaller one on unlabeled text, before any labels.

    The student learns, on the teacher's own inputs and batch by batch with
    the teacher run beside it (no gradients):

    - when the teacher has a masked-LM head (a ``*ForMaskedLM`` checkpoint):
      DistilBERT's masking (15% of the real tokens picked, with frequent
      pieces picked less often, probability ~ count^-0.7; of those, 80%
      [MASK], 10% a random piece, 10% kept), the MLM loss on the picked
      pieces (``mlm_weight``) and the KL divergence between teacher and
      student token distributions there at ``temperature``, times T^2
      (``kl_weight``; the teacher's distribution restricted to the student's
      vocabulary). The student then needs an MLM head: loaded from its folder
      when present, else a new one (tied to its embeddings);
    - always: ``hidden_loss`` ("cosine" as DistilBERT, "mse" as TinyBERT,
      None for neither) between the hidden states of mapped layers, position
      by position (``hidden_layers``, as for
      :class:`~kdtext.DistillationClassifier`), through a learned projection
      when the widths differ; and the squared distance between the
      L2-normalised sentence vectors ([CLS] state or masked mean, as each
      model's ``1_Pooling`` config says; ``pooled_weight``), as the rubert-tiny
      tutorial aligned them.

    Without an MLM head in the teacher (the sentence-transformers MiniLM, the
    multilingual-e5 built here) the MLM and KL terms are skipped with a
    logged message, and the text is not masked.

    The default weights are DistilBERT's (5 KL, 2 MLM, 1 cosine) plus the
    tutorial's pooled term at 1; they were not tuned here.

    Parameters
    ----------
    teacher : str, path-like or fitted TransformerClassifier
        A model folder / hub id, or a fitted classifier (whose encoder is
        used; it has no MLM head).
    student : str or path-like
        A model folder sharing the teacher's tokenizer, typically written by
        :func:`~kdtext.shrink_transformer` (fewer layers, narrower, a reduced
        vocabulary are all fine).
    texts : iterable of str
        Unlabeled text (the transfer set).
    output_dir : str or path-like
        Where the trained student is written (config, weights, tokenizer,
        ``1_Pooling``), ready for ``TransformerClassifier(output_dir)``. Must
        differ from the teacher's and the student's folders.
    mlm_weight, kl_weight, hidden_weight, pooled_weight : float
        Weights of the terms (>= 0; 0 turns a term off).
    hidden_loss : {"cosine", "mse"} or None, default="cosine"
    hidden_layers : "auto", "last" or dict, default="auto"
    temperature : float, default=2.0
        Of the token-distribution KL.
    mask_probability : float, default=0.15
    epochs, batch_size, learning_rate, warmup_ratio, max_length
        AdamW with linear warm-up and decay; texts are cut to ``max_length``
        pieces.
    device : str, default="auto"
    random_state : int, RandomState instance or None, default=None
        Seeds masking, batching and new weights; the global RNGs are untouched.
    verbose : int, default=0
        1 shows a progress bar per epoch.

    Returns
    -------
    output_dir : str

    Examples
    --------
    >>> from kdtext import DistillationClassifier, TransformerClassifier, distill_encoder, shrink_transformer
    >>> small = shrink_transformer(teacher, "student-3l", layers=3, texts=X_all)  # doctest: +SKIP
    >>> ready = distill_encoder(teacher, small, X_all, "student-3l-distilled")  # doctest: +SKIP
    >>> kd = DistillationClassifier(teacher, TransformerClassifier(ready), loss="mse").fit(X_all, y_all)  # doctest: +SKIP

    On a tiny model built for the example:

    >>> folder = shrink_transformer(tiny_bert, "tiny-1l", layers=1)  # doctest: +SKIP
    >>> distill_encoder(tiny_bert, folder, ["good film", "bad plot"] * 20, "tiny-1l-kd")  # doctest: +SKIP
    'tiny-1l-kd'
    """
    import torch

    from ._hidden import HIDDEN_LOSSES, HiddenMatcher, pooled_vector, vocabulary_map
    from ._neural import bucketed_batches
    from .base import check_texts, encodable_texts, isolated_torch_rng, resolve_device, seed_from_random_state
    from .exceptions import TrainingInterruptedWarning
    from .shrink import _source_folder
    from .teachers import auto_pooling, resolve_model_path

    # ------------------------------------------------ validate everything before loading anything
    weights = {k: _check_weight(k, v) for k, v in
               dict(mlm_weight=mlm_weight, kl_weight=kl_weight, hidden_weight=hidden_weight,
                    pooled_weight=pooled_weight).items()}
    if hidden_loss is not None and hidden_loss not in HIDDEN_LOSSES:
        raise ValueError(f"hidden_loss must be 'cosine', 'mse' or None, got {hidden_loss!r}.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("max_length", max_length)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    for name, value, low, high in (("mask_probability", mask_probability, 0, 1), ("warmup_ratio", warmup_ratio, 0, 1)):
        if isinstance(value, bool) or not isinstance(value, Real) or not low <= value < high:
            raise ValueError(f"{name} must be a number in [{low}, {high}), got {value!r}.")
    if isinstance(temperature, bool) or not isinstance(temperature, Real) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}.")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, Real) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}.")
    texts = encodable_texts(check_texts(texts, name="texts"))
    if not texts:
        raise ValueError("texts is empty: distill_encoder needs unlabeled text to learn from.")
    if not isinstance(student, (str, os.PathLike)):
        raise TypeError(f"student must be a model folder (e.g. written by shrink_transformer), got {type(student).__name__}.")
    out = Path(output_dir).expanduser()
    for what, source in (("teacher", teacher), ("student", student)):
        folder = _source_folder(source)
        if folder is not None and os.path.realpath(folder) == os.path.realpath(out):
            raise ValueError(
                f"output_dir={os.fspath(output_dir)!r} is the {what}'s own folder; distill_encoder would overwrite it. "
                f"Choose another folder, e.g. {os.path.realpath(out).rstrip(os.sep) + '-distilled'!r}."
            )
    dev = resolve_device(device)
    seed = seed_from_random_state(random_state)

    # ------------------------------------------------ load
    with isolated_torch_rng(seed):  # loading may initialise weights; the global RNG must not move
        t_model, t_tok, t_mlm, t_described = _load_encoder(teacher, "teacher", verbose)
    s_path = resolve_model_path(student)
    use_mlm = t_mlm and (weights["mlm_weight"] > 0 or weights["kl_weight"] > 0)
    if not t_mlm and (weights["mlm_weight"] > 0 or weights["kl_weight"] > 0):
        logger.info("distill_encoder: the teacher %s has no masked-LM head; the MLM and KL terms are skipped "
                    "(hidden-state and pooled terms only, on unmasked text)", t_described)
    if not use_mlm and (hidden_loss is None or weights["hidden_weight"] == 0) and weights["pooled_weight"] == 0:
        raise ValueError(
            "Nothing to learn: " + ("the teacher has no masked-LM head, so the MLM and KL terms do not apply, "
                                    if not t_mlm else "mlm_weight and kl_weight are 0, ")
            + "and hidden_loss=None / hidden_weight=0 and pooled_weight=0. Give one term a weight."
        )
    with isolated_torch_rng(seed):
        from transformers import AutoModel, AutoModelForMaskedLM

        from .teachers import load_tokenizer_and_model

        s_tok, s_model = load_tokenizer_and_model(
            s_path, AutoModelForMaskedLM if use_mlm else AutoModel, verbose=verbose, what="student")
        s_encoder = s_model.base_model if use_mlm else s_model
        ids_map = torch.as_tensor(vocabulary_map(s_tok, t_tok, s_model.get_input_embeddings().weight.shape[0]))
        t_config = t_model.config
        matcher = HiddenMatcher(s_encoder.config, t_config, loss=hidden_loss if weights["hidden_weight"] > 0 else None,
                                layers=hidden_layers)
    t_pooling = teacher.pooling_ if hasattr(teacher, "pooling_") else auto_pooling(resolve_model_path(teacher), t_model)[0]
    s_pooling = auto_pooling(s_path, s_encoder)[0]
    n_vocab = s_model.get_input_embeddings().weight.shape[0]
    special = torch.zeros(n_vocab, dtype=torch.bool)
    special[[i for i in s_tok.all_special_ids if 0 <= i < n_vocab]] = True
    limit = min(int(max_length), *(int(getattr(m.config, "max_position_embeddings", 10**9)) for m in (s_encoder, t_model)))
    if getattr(t_config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"}:
        limit = min(limit, int(t_config.max_position_embeddings) - 2)
    encoded = s_tok(texts, truncation=True, max_length=limit, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]
    lengths = np.fromiter((len(s) for s in encoded), dtype=np.int64, count=len(encoded))
    counts = np.bincount(np.fromiter((i for s in encoded for i in s), dtype=np.int64), minlength=n_vocab)
    token_probs = torch.as_tensor(np.maximum(counts, 1).astype(np.float64) ** -MASK_SMOOTHING, dtype=torch.float32)
    pad_id = s_tok.pad_token_id if s_tok.pad_token_id is not None else 0
    mask_id = s_tok.mask_token_id
    if use_mlm and mask_id is None:
        raise ValueError("The student's tokenizer has no mask token, so it cannot learn masked-LM; "
                         "pass mlm_weight=0, kl_weight=0.")

    from .teachers import TransformerClassifier

    if isinstance(teacher, TransformerClassifier):  # a fitted estimator runs where it is; it is not moved
        t_dev = next(t_model.parameters()).device
    else:
        t_dev = dev
        t_model.to(dev)
    t_was_training = t_model.training
    t_model.eval()
    s_model.to(dev)
    matcher.to(dev)
    params = [p for p in s_model.parameters() if p.requires_grad] + list(matcher.parameters())
    optimizer = torch.optim.AdamW(params, lr=float(learning_rate), weight_decay=0.01)
    steps = max(1, math.ceil(len(texts) / batch_size) * int(epochs))
    warm = int(warmup_ratio * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (step + 1) / (warm + 1) if step < warm else max(0.0, (steps - step) / max(1, steps - warm)))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    interrupted, done_steps = False, 0
    n_terms = {"mlm": 0.0, "kl": 0.0, "hidden": 0.0, "pooled": 0.0}

    def collate(idx):
        width = int(lengths[idx].max())
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        att = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, : lengths[i]] = torch.as_tensor(encoded[i])
            att[row, : lengths[i]] = 1
        return ids, att

    try:
        with isolated_torch_rng(seed):
            s_model.train()
            for epoch in range(1, int(epochs) + 1):
                sums = dict.fromkeys(n_terms, 0.0)
                total, n_batches = 0.0, 0
                batches = bucketed_batches(lengths, int(batch_size), rng)
                bar = None
                if verbose:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=len(batches), desc=f"distill_encoder {epoch}/{epochs}", unit="batch")
                for b in batches:
                    ids, att = collate(b)
                    labels = None
                    if use_mlm:
                        ids, labels = mask_tokens(ids, att, special=special, token_probs=token_probs, mask_id=mask_id,
                                                  vocab_size=n_vocab, generator=gen, probability=float(mask_probability))
                    ids, att = ids.to(dev), att.to(dev)
                    t_ids = ids_map.to(dev)[ids]
                    with torch.no_grad():
                        t_out = t_model(input_ids=t_ids.to(t_dev), attention_mask=att.to(t_dev),
                                        output_hidden_states=True)
                    s_out = s_model(input_ids=ids, attention_mask=att, output_hidden_states=True)
                    terms = {}
                    if use_mlm:
                        picked = labels.to(dev) != -100
                        s_logits = s_out.logits[picked].float()
                        terms["mlm"] = weights["mlm_weight"] * torch.nn.functional.cross_entropy(
                            s_logits, labels.to(dev)[picked]) if weights["mlm_weight"] else None
                        if weights["kl_weight"]:
                            from .losses import kl_loss

                            t_logits = t_out.logits.to(dev)[picked].float()[:, ids_map.to(dev)]
                            terms["kl"] = weights["kl_weight"] * kl_loss(s_logits, t_logits, float(temperature))
                    s_states = tuple(h.float() for h in s_out.hidden_states)
                    t_states = tuple(h.to(dev).float() for h in t_out.hidden_states)
                    if matcher.loss is not None:
                        terms["hidden"] = weights["hidden_weight"] * matcher.hidden_term(s_states, t_states, att)
                    if weights["pooled_weight"]:
                        terms["pooled"] = weights["pooled_weight"] * matcher.pooled_term(
                            pooled_vector(s_states[-1], att, s_pooling), pooled_vector(t_states[-1], att, t_pooling))
                    terms = {k: v for k, v in terms.items() if v is not None}
                    loss = sum(terms.values())
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    scheduler.step()
                    done_steps += 1
                    n_batches += 1
                    total += float(loss.detach())
                    for k, v in terms.items():
                        sums[k] += float(v.detach())
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{total / n_batches:.4f}")
                if bar is not None:
                    bar.close()
                record = {"epoch": epoch, "loss": total / max(1, n_batches)}
                record.update({k: v / max(1, n_batches) for k, v in sums.items() if v})
                history.append(record)
                logger.info("distill_encoder: %s", record)
    except KeyboardInterrupt:
        if done_steps == 0:
            raise
        interrupted = True
        warnings.warn(
            f"distill_encoder was interrupted after {done_steps} of {steps} steps; the student trained so far is "
            f"written to {os.fspath(out)!r} (its config says interrupted=true). Run again to train it fully.",
            TrainingInterruptedWarning,
            stacklevel=2,
        )
    finally:
        t_model.train(t_was_training)

    # ------------------------------------------------ write
    s_model.eval()
    s_model.zero_grad(set_to_none=True)
    s_model.config.kdtext_distilled = {
        "teacher": t_described, "student": os.fspath(student), "texts": len(texts), "steps": done_steps,
        "interrupted": interrupted, "mlm_head": bool(use_mlm), "hidden_loss": matcher.loss,
        "hidden_layers": [list(p) for p in matcher.pairs], "weights": weights, "temperature": float(temperature),
        "history": history,
    }
    from .teachers import _quiet_transformers

    out.mkdir(parents=True, exist_ok=True)
    with _quiet_transformers(verbose):
        s_model.to("cpu").save_pretrained(out)
        s_tok.save_pretrained(out)
    pooling_config = Path(s_path) / "1_Pooling" / "config.json"
    if pooling_config.is_file():
        (out / "1_Pooling").mkdir(exist_ok=True)
        (out / "1_Pooling" / "config.json").write_bytes(pooling_config.read_bytes())
    logger.info("distill_encoder: %d steps; the student is in %s", done_steps, out)
    return str(out)
