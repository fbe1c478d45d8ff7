"""Matching a transformer student's hidden states to its teacher's (TinyBERT / DistilBERT / the tutorial).

The pieces shared by :class:`~kdtext.DistillationClassifier`'s ``hidden_loss``
and :func:`kdtext.distill_encoder`:

- :func:`vocabulary_map`: each student token id -> the teacher's id of the same
  piece, so the teacher reads exactly the student's tokens (a student written by
  :func:`~kdtext.shrink.shrink_transformer` keeps a subset of the teacher's
  vocabulary); positions then line up one to one.
- :func:`layer_map`: which student hidden state is compared to which teacher one.
- :class:`HiddenMatcher`: the learned projection (when widths differ) and the
  losses, averaged over the mapped layers.

Hidden states are numbered as transformers' ``output_hidden_states`` numbers
them: 0 is the embedding output, ``i`` the output of layer ``i``.
"""

from __future__ import annotations

import logging
from numbers import Integral
from typing import Any, Mapping

import numpy as np
import torch

logger = logging.getLogger(__name__)

HIDDEN_LOSSES = ("cosine", "mse")


def vocabulary_map(student_tokenizer: Any, teacher_tokenizer: Any, n_student: int) -> np.ndarray:
    """Teacher token id of each student token id (by the piece's string), as an int64 array of length ``n_student``.

    Rows of the student's embedding table that no token names map to the
    teacher's pad (or 0) id; they never occur in tokenized text.

    Raises
    ------
    ValueError
        When student pieces are missing from the teacher's vocabulary: then the
        two tokenizers cut text differently and hidden states cannot be
        compared position by position.
    """
    s_vocab = student_tokenizer.get_vocab()
    t_vocab = teacher_tokenizer.get_vocab()
    fill = teacher_tokenizer.pad_token_id if teacher_tokenizer.pad_token_id is not None else 0
    table = np.full(int(n_student), fill, dtype=np.int64)
    missing = []
    for piece, sid in s_vocab.items():
        if not 0 <= sid < n_student:
            continue
        tid = t_vocab.get(piece)
        if tid is None:
            missing.append(piece)
        else:
            table[sid] = tid
    if missing:
        shown = ", ".join(repr(p) for p in sorted(missing)[:5])
        raise ValueError(
            f"{len(missing)} of the student's {len(s_vocab)} vocabulary pieces are not in the teacher's vocabulary "
            f"(e.g. {shown}), so the two models read different tokens and their hidden states cannot be compared "
            "position by position. Hidden-state distillation needs a student that shares the teacher's tokenizer: "
            "one written by kdtext.shrink_transformer(teacher, folder, ...) (a reduced vocabulary is fine) or the "
            "same checkpoint family."
        )
    return table


def _n_layers(config: Any, what: str) -> int:
    n = getattr(config, "num_hidden_layers", None)
    if not isinstance(n, int):
        raise ValueError(f"The {what}'s config has no num_hidden_layers; its hidden states cannot be mapped.")
    return n


def layer_map(student_config: Any, teacher_config: Any, layers: Any = "auto") -> list[tuple[int, int]]:
    """Pairs (student hidden-state index, teacher hidden-state index) to compare.

    Parameters
    ----------
    student_config, teacher_config : transformers config
    layers : "auto", "last" or dict, default="auto"
        "auto": the embedding outputs (0 -> 0) and every student layer to the
        teacher layer it was copied from when
        :func:`~kdtext.shrink.shrink_transformer` wrote the student from this
        teacher (``kdtext_shrunk_from["kept_layers"]``), else to a uniform
        choice (:func:`~kdtext.shrink.select_layers`, TinyBERT's mapping).
        "last": the last hidden states only (DistilBERT's cosine loss). A dict
        ``{student_index: teacher_index}`` names the pairs.

    Examples
    --------
    >>> from types import SimpleNamespace as C
    >>> from kdtext._hidden import layer_map
    >>> layer_map(C(num_hidden_layers=3), C(num_hidden_layers=6))
    [(0, 0), (1, 2), (2, 4), (3, 6)]
    >>> shrunk = C(num_hidden_layers=3, kdtext_shrunk_from={"source_layers": 6, "kept_layers": [0, 2, 4]})
    >>> layer_map(shrunk, C(num_hidden_layers=6))
    [(0, 0), (1, 1), (2, 3), (3, 5)]
    >>> layer_map(shrunk, C(num_hidden_layers=6), "last")
    [(3, 6)]
    """
    from .shrink import select_layers

    ns, nt = _n_layers(student_config, "student"), _n_layers(teacher_config, "teacher")
    if isinstance(layers, str) and layers == "last":
        return [(ns, nt)]
    if isinstance(layers, str) and layers == "auto":
        info = getattr(student_config, "kdtext_shrunk_from", None)
        kept = info.get("kept_layers") if isinstance(info, dict) and info.get("source_layers") == nt else None
        if not isinstance(kept, list) or len(kept) != ns:
            kept = select_layers(nt, ns) if ns <= nt else None
        if kept is None:
            raise ValueError(
                f"hidden_layers='auto' maps a student onto a deeper or equal teacher; the student has {ns} layers, "
                f"the teacher {nt}. Pass a dict {{student_index: teacher_index}}."
            )
        return [(0, 0)] + [(i + 1, int(k) + 1) for i, k in enumerate(kept)]
    if isinstance(layers, Mapping) and layers:
        pairs = []
        for s, t in layers.items():
            ok = all(isinstance(v, Integral) and not isinstance(v, bool) for v in (s, t))
            if not ok or not 0 <= s <= ns or not 0 <= t <= nt:
                raise ValueError(
                    f"hidden_layers maps hidden-state indices (0 = embeddings, i = after layer i): student 0..{ns}, "
                    f"teacher 0..{nt}; got {s!r}: {t!r}."
                )
            pairs.append((int(s), int(t)))
        return sorted(pairs)
    raise ValueError(
        f"hidden_layers must be 'auto', 'last' or a non-empty dict {{student_index: teacher_index}}, got {layers!r}."
    )


def pooled_vector(hidden: Any, mask: Any, pooling: str):
    """The sentence vector a classification head reads: the first token's state ("cls") or the masked mean."""
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    return hidden[:, 0]


def _projection_init(student_config: Any, s_width: int, t_width: int):
    """The teacher dims the student's were sliced from (``kdtext_shrunk_from["hidden_dims"]``), if known."""
    info = getattr(student_config, "kdtext_shrunk_from", None)
    dims = info.get("hidden_dims") if isinstance(info, dict) else None
    if isinstance(dims, list) and len(dims) == s_width and all(isinstance(d, int) and 0 <= d < t_width for d in dims):
        return dims
    return None


class HiddenMatcher(torch.nn.Module):
    """Projection (student width -> teacher width, when they differ) and the hidden / pooled losses.

    One projection serves every mapped layer and the pooled vector, as
    TinyBERT's ``W_h``; when the student's dims were sliced from the
    teacher's (``shrink_transformer(hidden_size=...)``) it starts as that
    selection, else at PyTorch's default initialisation. The hidden term is
    the mean over the mapped layers, so ``hidden_weight`` does not grow with
    their number.
    """

    def __init__(self, student_config: Any, teacher_config: Any, *, loss: str | None, layers: Any = "auto"):
        super().__init__()
        s_width, t_width = int(student_config.hidden_size), int(teacher_config.hidden_size)
        self.loss = loss
        self.pairs = layer_map(student_config, teacher_config, layers) if loss is not None else []
        self.proj = None
        if s_width != t_width:
            self.proj = torch.nn.Linear(s_width, t_width, bias=False)
            dims = _projection_init(student_config, s_width, t_width)
            if dims is not None:
                with torch.no_grad():
                    self.proj.weight.zero_()
                    self.proj.weight[torch.as_tensor(dims), torch.arange(s_width)] = 1.0

    def project(self, h):
        return h if self.proj is None else self.proj(h)

    def hidden_term(self, s_states, t_states, mask):
        """Mean over the mapped layers of the position-wise loss, padding left out."""
        from .losses import cosine_hidden_loss, mse_hidden_loss

        fn = cosine_hidden_loss if self.loss == "cosine" else mse_hidden_loss
        terms = [fn(self.project(s_states[s]), t_states[t].to(s_states[s].dtype), mask) for s, t in self.pairs]
        return torch.stack(terms).mean()

    def pooled_term(self, s_vec, t_vec):
        """MSE between the L2-normalised pooled vectors (see :func:`kdtext.losses.pooled_mse_loss`)."""
        from .losses import pooled_mse_loss

        return pooled_mse_loss(self.project(s_vec), t_vec.to(s_vec.dtype))


class HiddenTarget:
    """What :class:`~kdtext.DistillationClassifier` hands a transformer student for hidden-state losses.

    It holds the fitted teacher (not a copy) and the settings; :meth:`bind`
    builds, for the student being trained, the vocabulary map and the
    :class:`HiddenMatcher`. The teacher runs beside the student, batch by
    batch, without gradients, on the student's tokens.
    """

    def __init__(self, teacher: Any, *, loss: str | None, weight: float, layers: Any, pooled_weight: float):
        self.teacher = teacher
        self.loss = loss
        self.weight = float(weight)
        self.layers = layers
        self.pooled_weight = float(pooled_weight)

    def describe(self) -> dict:
        """Settings and teacher identity, for a student's checkpoint fingerprint."""
        return {"loss": self.loss, "weight": self.weight, "layers": repr(self.layers),
                "pooled_weight": self.pooled_weight, "teacher": self.teacher._fingerprint()}

    def bind(self, student: Any) -> "BoundHidden":
        return BoundHidden(self, student)


class BoundHidden:
    """A :class:`HiddenTarget` bound to one student's model and tokenizer, on the student's device."""

    def __init__(self, target: HiddenTarget, student: Any):
        teacher = target.teacher
        self.target = target
        self.t_model = teacher.model_.base_model
        self.t_device = next(teacher.model_.parameters()).device
        self.t_pooling = getattr(teacher, "pooling_", "cls")
        self.s_pooling = getattr(student, "pooling_", "cls")
        s_model = student.model_
        n_student = s_model.get_input_embeddings().weight.shape[0]
        self.ids = torch.as_tensor(vocabulary_map(student.tokenizer_, teacher.tokenizer_, n_student))
        t_limit = teacher._token_limit()
        if student._token_limit() > t_limit:
            raise ValueError(
                f"The student reads up to {student._token_limit()} tokens but the teacher only {t_limit}; "
                f"set the student's max_length to at most {t_limit} for hidden-state distillation."
            )
        self.matcher = HiddenMatcher(s_model.config, teacher.model_.config, loss=target.loss, layers=target.layers)
        self.matcher.to(student.device_)

    def parameters(self):
        return list(self.matcher.parameters())

    def state_dict(self) -> dict:
        return self.matcher.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.matcher.load_state_dict(state)

    def teacher_states(self, batch: dict):
        """The teacher's hidden states (a tuple) on the student's batch, without gradients."""
        ids = self.ids.to(batch["input_ids"].device)[batch["input_ids"]]
        was_training = self.t_model.training
        self.t_model.eval()
        try:
            with torch.no_grad():
                out = self.t_model(input_ids=ids.to(self.t_device),
                                   attention_mask=batch["attention_mask"].to(self.t_device),
                                   output_hidden_states=True)
        finally:
            self.t_model.train(was_training)
        device = batch["input_ids"].device
        return tuple(h.to(device).float() for h in out.hidden_states)

    def loss(self, batch: dict, s_states: tuple):
        """``weight * hidden term + pooled_weight * pooled term`` for one batch."""
        mask = batch["attention_mask"]
        t_states = self.teacher_states(batch)
        s_states = tuple(h.float() for h in s_states)
        total = 0.0
        if self.target.loss is not None:
            total = total + self.target.weight * self.matcher.hidden_term(s_states, t_states, mask)
        if self.target.pooled_weight > 0:
            s_vec = pooled_vector(s_states[-1], mask, self.s_pooling)
            t_vec = pooled_vector(t_states[-1], mask, self.t_pooling)
            total = total + self.target.pooled_weight * self.matcher.pooled_term(s_vec, t_vec)
        return total
