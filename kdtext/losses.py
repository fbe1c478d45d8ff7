"""Distillation losses: small, pure torch functions.

Every function takes tensors and returns a scalar tensor that keeps the
autograd graph of its *student* inputs. None of them detaches the teacher's
tensors: compute those under ``torch.no_grad()`` (as kdtext does) or detach
them yourself.

The combination used by every kdtext student (see
:class:`kdtext.base.SoftTargetStudentMixin`) is::

    alpha * hard_loss(student_logits, y) + (1 - alpha) * soft

where ``soft`` is :func:`kl_loss` (Hinton et al., 2015 [1]_) or :func:`mse_loss`
(Tang et al., 2019 [2]_), and ``y`` holds the gold class index or -1 for texts
without a gold label. :func:`distillation_loss` computes exactly that; :func:`cosine_hidden_loss` is
DistilBERT's loss on hidden states [3]_.

References
----------
.. [1] G. Hinton, O. Vinyals and J. Dean, "Distilling the Knowledge in a Neural
   Network", 2015. arXiv:1503.02531.
.. [2] R. Tang, Y. Lu, L. Liu, L. Mou, O. Vechtomova and J. Lin, "Distilling
   Task-Specific Knowledge from BERT into Simple Neural Networks", 2019.
   arXiv:1903.12136.
.. [3] V. Sanh, L. Debut, J. Chaumond and T. Wolf, "DistilBERT, a distilled
   version of BERT: smaller, faster, cheaper and lighter", 2019.
   arXiv:1910.01108.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "SOFT_LOSSES",
    "kl_loss",
    "mse_loss",
    "soft_cross_entropy",
    "hard_loss",
    "distillation_loss",
    "cosine_hidden_loss",
    "mse_hidden_loss",
    "pooled_mse_loss",
]

#: Names accepted by the ``loss`` parameter of :func:`distillation_loss`.
SOFT_LOSSES = ("kl", "mse")


# --------------------------------------------------------------------------- checks


def _check_logits_pair(student: torch.Tensor, teacher: torch.Tensor, *, teacher_name: str = "teacher_logits") -> None:
    if not isinstance(student, torch.Tensor):
        raise TypeError(f"student_logits must be a torch.Tensor, got {type(student).__name__}.")
    if not isinstance(teacher, torch.Tensor):
        raise TypeError(f"{teacher_name} must be a torch.Tensor, got {type(teacher).__name__}.")
    if student.ndim != 2:
        raise ValueError(
            f"student_logits must be 2-D (n_samples, n_classes), got shape {tuple(student.shape)}."
        )
    if student.shape != teacher.shape:
        raise ValueError(
            f"student_logits and {teacher_name} must have the same shape, got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}. Check that teacher and "
            "student use the same classes in the same order."
        )


def _check_temperature(temperature: Any) -> float:
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not np.isfinite(temperature)
        or temperature <= 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}.")
    return float(temperature)


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (0.0 <= alpha <= 1.0):
        raise ValueError(
            f"alpha must be a number in [0, 1] (the weight of the hard-label loss), got {alpha!r}."
        )
    return float(alpha)


def _zero_like_graph(t: torch.Tensor) -> torch.Tensor:
    """A scalar zero that stays connected to ``t``'s autograd graph."""
    return t.sum() * 0.0


# --------------------------------------------------------------------------- soft losses


def kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r"""Temperature-scaled KL divergence of Hinton et al. (2015).

    .. math::

        T^2 \cdot \frac{1}{N} \sum_{i=1}^{N}
        \mathrm{KL}\big(\mathrm{softmax}(t_i / T) \,\|\, \mathrm{softmax}(s_i / T)\big)

    The factor :math:`T^2` keeps the gradient magnitude roughly independent
    of the temperature, so the soft term stays comparable to a hard-label
    cross-entropy. Both distributions are computed with ``log_softmax`` for
    numerical stability.

    Parameters
    ----------
    student_logits : torch.Tensor of shape (n_samples, n_classes)
        Raw scores of the student.
    teacher_logits : torch.Tensor of shape (n_samples, n_classes)
        Raw scores (or log-probabilities) of the teacher.
    temperature : float, default=1.0
        Softmax temperature ``T > 0``.

    Returns
    -------
    loss : torch.Tensor
        Scalar: the KL summed over classes, averaged over the batch, times ``T**2``.

    Raises
    ------
    ValueError
        If the shapes differ, are not 2-D, or ``temperature <= 0``.

    Examples
    --------
    >>> import torch
    >>> from kdtext.losses import kl_loss
    >>> t = torch.tensor([[2.0, 0.0, -1.0]])
    >>> round(kl_loss(t, t).item(), 6)
    0.0
    >>> s = torch.tensor([[0.0, 0.0, 0.0]])
    >>> round(kl_loss(s, t, temperature=2.0).item(), 4)  # 4 * KL(softmax([1, 0, -0.5]) || uniform)
    0.7706
    """
    _check_logits_pair(student_logits, teacher_logits)
    T = _check_temperature(temperature)
    log_p_student = F.log_softmax(student_logits / T, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.to(log_p_student.dtype) / T, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * (T * T)


def mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    r"""Mean squared error between student and teacher logits (Tang et al., 2019).

    .. math::

        \frac{1}{N K} \sum_{i=1}^{N} \sum_{k=1}^{K} (s_{ik} - t_{ik})^2

    i.e. the mean over *both* the batch and the classes (``torch``'s
    default ``reduction="mean"``). Tang et al. write the loss as a squared
    norm per example; that differs from this one by the constant factor
    ``K`` (the number of classes), which only rescales the learning rate.
    No temperature is applied: the loss works on raw logits.

    Parameters
    ----------
    student_logits : torch.Tensor of shape (n_samples, n_classes)
    teacher_logits : torch.Tensor of shape (n_samples, n_classes)

    Returns
    -------
    loss : torch.Tensor
        Scalar.

    Examples
    --------
    >>> import torch
    >>> from kdtext.losses import mse_loss
    >>> s = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    >>> t = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    >>> mse_loss(s, t).item()  # (0 + 4 + 1 + 1) / 4
    1.5
    """
    _check_logits_pair(student_logits, teacher_logits)
    return F.mse_loss(student_logits, teacher_logits.to(student_logits.dtype), reduction="mean")


def soft_cross_entropy(student_logits: torch.Tensor, target_proba: torch.Tensor) -> torch.Tensor:
    r"""Cross-entropy of the student against probability targets.

    .. math::

        -\frac{1}{N} \sum_{i=1}^{N} \sum_{k=1}^{K} p_{ik} \log \mathrm{softmax}(s_i)_k

    It differs from :func:`kl_loss` at ``T=1`` only by the entropy of the
    targets, a constant that does not depend on the student, so both give
    the same gradients.

    Parameters
    ----------
    student_logits : torch.Tensor of shape (n_samples, n_classes)
    target_proba : torch.Tensor of shape (n_samples, n_classes)
        Rows are probability distributions (non-negative, summing to 1);
        this is not checked.

    Returns
    -------
    loss : torch.Tensor
        Scalar, averaged over the batch.

    Examples
    --------
    >>> import torch
    >>> from kdtext.losses import soft_cross_entropy
    >>> s = torch.zeros(1, 4)
    >>> p = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    >>> round(soft_cross_entropy(s, p).item(), 6)  # log(4)
    1.386294
    """
    _check_logits_pair(student_logits, target_proba, teacher_name="target_proba")
    log_p = F.log_softmax(student_logits, dim=-1)
    return -(target_proba.to(log_p.dtype) * log_p).sum(dim=-1).mean()


# --------------------------------------------------------------------------- hard loss


def _as_label_tensor(y: Any, n: int, n_classes: int, device: torch.device) -> torch.Tensor:
    if isinstance(y, torch.Tensor):
        y_t = y.detach()
    else:
        y_arr = np.asarray(y)
        if y_arr.dtype.kind not in "iuf":
            raise TypeError(
                f"y must hold integer class indices (or -1 for no label), got dtype {y_arr.dtype}. "
                "Encode string labels first, e.g. with numpy.unique(..., return_inverse=True)."
            )
        y_t = torch.as_tensor(y_arr)
    if y_t.is_floating_point():
        if y_t.numel() and not bool(torch.all(y_t == torch.round(y_t))):
            raise TypeError("y must hold integer class indices (or -1 for no label), got non-integer floats.")
    elif y_t.dtype.is_complex or y_t.dtype == torch.bool:
        raise TypeError(f"y must hold integer class indices (or -1 for no label), got dtype {y_t.dtype}.")
    y_t = y_t.to(device=device, dtype=torch.long)
    if y_t.ndim != 1 or y_t.shape[0] != n:
        raise ValueError(
            f"y must be 1-D with one entry per row of student_logits ({n}), got shape {tuple(y_t.shape)}."
        )
    bad = (y_t < -1) | (y_t >= n_classes)
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0, 0])
        raise ValueError(
            f"y holds {int(y_t[first])} at position {first}; entries must be class indices in "
            f"[0, {n_classes - 1}] or -1 for no label."
        )
    return y_t


def hard_loss(student_logits: torch.Tensor, y: Any, class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy with gold labels, ignoring unlabeled items (``y == -1``).

    Parameters
    ----------
    student_logits : torch.Tensor of shape (n_samples, n_classes)
    y : torch.Tensor or array-like of int, shape (n_samples,)
        Index of the gold class, or -1 where an item has no gold label.
    class_weight : torch.Tensor of shape (n_classes,), default=None
        Weight of each class, as ``weight`` of ``torch.nn.functional.cross_entropy``
        (a weighted mean over the labeled items).

    Returns
    -------
    loss : torch.Tensor
        Scalar: the cross-entropy averaged over the *labeled* items only.
        When no item is labeled, a zero that stays connected to the graph of
        ``student_logits`` (so ``backward()`` still works and gives zero
        gradients).

    Raises
    ------
    ValueError
        If ``y`` has the wrong length or holds indices outside
        ``[-1, n_classes - 1]``.

    Examples
    --------
    >>> import torch
    >>> from kdtext.losses import hard_loss
    >>> s = torch.zeros(3, 2)
    >>> round(hard_loss(s, [0, -1, 1]).item(), 6)  # log(2), the -1 is ignored
    0.693147
    >>> hard_loss(s, [-1, -1, -1]).item()
    0.0
    """
    if not isinstance(student_logits, torch.Tensor):
        raise TypeError(f"student_logits must be a torch.Tensor, got {type(student_logits).__name__}.")
    if student_logits.ndim != 2:
        raise ValueError(
            f"student_logits must be 2-D (n_samples, n_classes), got shape {tuple(student_logits.shape)}."
        )
    n, n_classes = student_logits.shape
    y_t = _as_label_tensor(y, n, n_classes, student_logits.device)
    labeled = y_t != -1
    if not bool(labeled.any()):
        return _zero_like_graph(student_logits)
    return F.cross_entropy(student_logits[labeled], y_t[labeled], weight=class_weight, reduction="mean")


# --------------------------------------------------------------------------- combined


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    y: Optional[Any] = None,
    *,
    loss: str = "kl",
    temperature: float = 2.0,
    alpha: float = 0.0,
    class_weight: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The loss every kdtext student minimises: ``alpha * hard + (1 - alpha) * soft``.

    Parameters
    ----------
    student_logits : torch.Tensor of shape (n_samples, n_classes)
    teacher_logits : torch.Tensor of shape (n_samples, n_classes)
    y : torch.Tensor or array-like of int, shape (n_samples,), default=None
        Gold class index per item, or -1 where there is none. ``None`` means
        no item is labeled.
    loss : {"kl", "mse"}, default="kl"
        The soft term: :func:`kl_loss` at ``temperature`` (scaled by ``T**2``)
        or :func:`mse_loss` on raw logits. ``temperature`` is ignored by
        ``"mse"`` (but still validated).
    temperature : float, default=2.0
        Softmax temperature of the ``"kl"`` loss, ``> 0``.
    alpha : float, default=0.0
        Weight of the hard-label cross-entropy, in ``[0, 1]``.
    class_weight : torch.Tensor of shape (n_classes,), default=None
        Per-class weights of the hard term (see :func:`hard_loss`).

    Returns
    -------
    loss : torch.Tensor
        Scalar.

    Notes
    -----
    The hard term (:func:`hard_loss`) is averaged over the *labeled* items of
    the batch, the soft term over *all* items. When no item of the batch is
    labeled the hard term is 0, and ``alpha`` is **not** renormalised: the
    batch's loss is then ``(1 - alpha) * soft``. Renormalising per batch
    would make the weight of the soft term jump between batches with and
    without labels; keeping ``alpha`` fixed means a mini-batch gradient is an
    unbiased (up to the per-batch averaging of the hard term) estimate of one
    fixed objective.

    When ``alpha == 0`` the hard term is not computed (``y`` may be anything
    valid or ``None``); when ``alpha == 1`` the soft term is not computed.

    Raises
    ------
    ValueError
        If ``loss`` is not ``"kl"`` or ``"mse"``, ``alpha`` is outside
        ``[0, 1]``, ``temperature <= 0``, or the shapes do not match.

    Examples
    --------
    >>> import torch
    >>> from kdtext.losses import distillation_loss, kl_loss, hard_loss
    >>> s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> t = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
    >>> y = [0, -1]
    >>> total = distillation_loss(s, t, y, loss="kl", temperature=2.0, alpha=0.5)
    >>> expected = 0.5 * hard_loss(s, y) + 0.5 * kl_loss(s, t, temperature=2.0)
    >>> torch.allclose(total, expected)
    True
    """
    if loss not in SOFT_LOSSES:
        raise ValueError(f"loss must be one of {SOFT_LOSSES!r}, got {loss!r}.")
    T = _check_temperature(temperature)
    a = _check_alpha(alpha)
    _check_logits_pair(student_logits, teacher_logits)

    total = _zero_like_graph(student_logits)
    if a < 1.0:
        if loss == "kl":
            soft = kl_loss(student_logits, teacher_logits, temperature=T)
        else:
            soft = mse_loss(student_logits, teacher_logits)
        total = total + (1.0 - a) * soft
    if a > 0.0 and y is not None:
        total = total + a * hard_loss(student_logits, y, class_weight)
    return total


# --------------------------------------------------------------------------- hidden states


def cosine_hidden_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Cosine embedding loss on hidden states, as in DistilBERT (Sanh et al., 2019).

    ``1 - cos(student_hidden[..., :], teacher_hidden[..., :])`` per position,
    averaged over the positions that ``mask`` keeps. The cosine is taken
    along the last dimension, so student and teacher must share the hidden
    size (project the student first if they do not).

    Parameters
    ----------
    student_hidden : torch.Tensor of shape (..., hidden_size)
        E.g. ``(batch, seq_len, hidden_size)``.
    teacher_hidden : torch.Tensor, same shape as ``student_hidden``
    mask : torch.Tensor of shape ``student_hidden.shape[:-1]``, default=None
        Non-zero / ``True`` where a position counts (e.g. the attention mask,
        so padding is ignored). ``None`` keeps every position.

    Returns
    -------
    loss : torch.Tensor
        Scalar in ``[0, 2]``. A graph-connected zero when the mask keeps no
        position.

    Examples
    --------
    >>> import torch
    >>> from kdtext.losses import cosine_hidden_loss
    >>> s = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    >>> t = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [-1.0, -1.0]]])
    >>> cosine_hidden_loss(s, t).item()  # (0 + 1 + 2) / 3
    1.0
    >>> cosine_hidden_loss(s, t, mask=torch.tensor([[1, 1, 0]])).item()  # (0 + 1) / 2
    0.5
    """
    keep = _masked_positions(student_hidden, teacher_hidden, mask)
    cos = F.cosine_similarity(student_hidden, teacher_hidden.to(student_hidden.dtype), dim=-1, eps=1e-8)
    per_pos = 1.0 - cos
    if keep is None:
        return per_pos.mean()
    if not bool(keep.any()):
        return _zero_like_graph(student_hidden)
    return per_pos[keep].mean()


def mse_hidden_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Mean squared error on hidden states, as TinyBERT matches them (Jiao et al., 2020).

    The squared difference averaged over the hidden dimension and over the
    positions that ``mask`` keeps (padding left out).

    Parameters
    ----------
    student_hidden : torch.Tensor of shape (..., hidden_size)
        E.g. ``(batch, seq_len, hidden_size)``, projected to the teacher's width.
    teacher_hidden : torch.Tensor, same shape as ``student_hidden``
    mask : torch.Tensor of shape ``student_hidden.shape[:-1]``, default=None
        Non-zero where a position counts. ``None`` keeps every position.

    Returns
    -------
    loss : torch.Tensor
        Non-negative scalar. A graph-connected zero when the mask keeps no position.

    Examples
    --------
    >>> import torch
    >>> from kdtext.losses import mse_hidden_loss
    >>> s = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]]])
    >>> t = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]]])
    >>> mse_hidden_loss(s, t, mask=torch.tensor([[1, 1, 0]])).item()  # ((0 + 4) / 2 + (0 + 4) / 2) / 2
    2.0
    """
    per_pos = _masked_positions(student_hidden, teacher_hidden, mask)
    diff = (student_hidden - teacher_hidden.to(student_hidden.dtype)).pow(2).mean(dim=-1)
    if per_pos is None:
        return diff.mean()
    if not bool(per_pos.any()):
        return _zero_like_graph(student_hidden)
    return diff[per_pos].mean()


def _masked_positions(student_hidden: Any, teacher_hidden: Any, mask: Any) -> Optional[torch.Tensor]:
    """Shape checks shared by the hidden-state losses; the boolean mask of kept positions (None: all)."""
    if not isinstance(student_hidden, torch.Tensor) or not isinstance(teacher_hidden, torch.Tensor):
        raise TypeError("student_hidden and teacher_hidden must be torch.Tensor.")
    if student_hidden.ndim < 2:
        raise ValueError(
            f"student_hidden must be at least 2-D (..., hidden_size), got shape {tuple(student_hidden.shape)}."
        )
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(
            f"student_hidden and teacher_hidden must have the same shape, got "
            f"{tuple(student_hidden.shape)} and {tuple(teacher_hidden.shape)}. Project the "
            "student's hidden states to the teacher's size first."
        )
    if mask is None:
        return None
    mask_t = torch.as_tensor(mask, device=student_hidden.device)
    if tuple(mask_t.shape) != tuple(student_hidden.shape[:-1]):
        raise ValueError(
            f"mask must have shape {tuple(student_hidden.shape[:-1])} (the hidden states without their last "
            f"dimension), got {tuple(mask_t.shape)}."
        )
    return mask_t != 0


def pooled_mse_loss(student_vector: torch.Tensor, teacher_vector: torch.Tensor) -> torch.Tensor:
    """Squared distance between L2-normalised sentence vectors, averaged over the batch.

    The Russian rubert-tiny tutorial aligned the student's pooled ([CLS])
    vector with the teacher's this way. For unit vectors the squared distance
    equals ``2 * (1 - cos)``, so the loss lies in ``[0, 4]`` whatever the width.

    Parameters
    ----------
    student_vector : torch.Tensor of shape (batch, hidden_size)
        Projected to the teacher's width.
    teacher_vector : torch.Tensor of shape (batch, hidden_size)

    Returns
    -------
    loss : torch.Tensor

    Examples
    --------
    >>> import torch
    >>> from kdtext.losses import pooled_mse_loss
    >>> pooled_mse_loss(torch.tensor([[3.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]])).item()
    1.0
    """
    if not isinstance(student_vector, torch.Tensor) or not isinstance(teacher_vector, torch.Tensor):
        raise TypeError("student_vector and teacher_vector must be torch.Tensor.")
    if student_vector.ndim != 2 or student_vector.shape != teacher_vector.shape:
        raise ValueError(
            "student_vector and teacher_vector must both have shape (batch, hidden_size), got "
            f"{tuple(student_vector.shape)} and {tuple(teacher_vector.shape)}."
        )
    s = F.normalize(student_vector, dim=-1, eps=1e-8)
    t = F.normalize(teacher_vector.to(student_vector.dtype), dim=-1, eps=1e-8)
    return (s - t).pow(2).sum(dim=-1).mean()
