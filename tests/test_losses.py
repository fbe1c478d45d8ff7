"""Tests of kdtext.losses against hand computations in plain Python / numpy."""

import math

import numpy as np
import pytest
import torch

from kdtext.losses import (
    cosine_hidden_loss,
    distillation_loss,
    hard_loss,
    kl_loss,
    mse_loss,
    soft_cross_entropy,
)

# A fixed 2x3 example used throughout.
S = [[1.0, 2.0, 0.0], [0.5, -1.0, 0.0]]
T_ = [[2.0, 0.0, 1.0], [0.0, 0.0, 3.0]]


def _softmax_row(row, temperature=1.0):
    exps = [math.exp(v / temperature) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _kl_by_hand(student, teacher, temperature=1.0):
    """sum_k p_k * (log p_k - log q_k), averaged over rows, no T^2 factor."""
    rows = []
    for s_row, t_row in zip(student, teacher):
        p = _softmax_row(t_row, temperature)
        q = _softmax_row(s_row, temperature)
        rows.append(sum(pk * (math.log(pk) - math.log(qk)) for pk, qk in zip(p, q)))
    return sum(rows) / len(rows)


def _t(x, grad=False):
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


# --------------------------------------------------------------------------- kl


def test_softmax_helper_by_hand():
    # softmax([1, 2, 0]) = [e, e^2, 1] / (e + e^2 + 1)
    denom = math.e + math.e**2 + 1.0
    assert _softmax_row(S[0]) == pytest.approx([math.e / denom, math.e**2 / denom, 1.0 / denom])


def test_kl_matches_hand_computation_t1():
    expected = _kl_by_hand(S, T_, 1.0)
    assert kl_loss(_t(S), _t(T_)).item() == pytest.approx(expected, rel=1e-10)


def test_kl_matches_hand_computation_t2_with_t_squared():
    unscaled = _kl_by_hand(S, T_, 2.0)
    got = kl_loss(_t(S), _t(T_), temperature=2.0).item()
    assert got == pytest.approx(4.0 * unscaled, rel=1e-10)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0, 7.5])
def test_kl_t_squared_scaling(temperature):
    # KL at temperature T equals T^2 * KL of the logits divided by T at T=1.
    s, t = _t(S), _t(T_)
    scaled = kl_loss(s, t, temperature=temperature)
    unscaled = kl_loss(s / temperature, t / temperature, temperature=1.0)
    assert scaled.item() == pytest.approx(temperature**2 * unscaled.item(), rel=1e-10)


def test_kl_is_zero_for_equal_logits_and_shift_invariant():
    s = _t(S)
    assert kl_loss(s, s.clone(), temperature=2.0).item() == pytest.approx(0.0, abs=1e-12)
    # Teacher log-probabilities instead of logits give the same loss.
    log_p = torch.log_softmax(_t(T_), dim=-1)
    assert kl_loss(s, log_p).item() == pytest.approx(kl_loss(s, _t(T_)).item(), rel=1e-10)


def test_kl_is_stable_for_extreme_logits():
    s = torch.tensor([[1000.0, -1000.0]])
    t = torch.tensor([[-1000.0, 1000.0]])
    assert torch.isfinite(kl_loss(s, t))


def test_kl_gradient_flows_to_student_only():
    s, t = _t(S, grad=True), _t(T_)
    kl_loss(s, t, temperature=2.0).backward()
    assert s.grad is not None and torch.any(s.grad != 0)
    # Gradient of T^2 * KL w.r.t. s is T * (q - p) / N.
    T = 2.0
    p = torch.softmax(t / T, -1)
    q = torch.softmax(s.detach() / T, -1)
    assert torch.allclose(s.grad, T * (q - p) / 2)


# --------------------------------------------------------------------------- mse


def test_mse_matches_hand_computation():
    diffs = [(a - b) ** 2 for rs, rt in zip(S, T_) for a, b in zip(rs, rt)]
    expected = sum(diffs) / 6  # mean over batch AND classes
    assert mse_loss(_t(S), _t(T_)).item() == pytest.approx(expected)
    # (1 + 4 + 1 + 0.25 + 1 + 9) / 6
    assert expected == pytest.approx(16.25 / 6)


def test_mse_gradient():
    s = _t(S, grad=True)
    mse_loss(s, _t(T_)).backward()
    assert torch.allclose(s.grad, 2 * (_t(S) - _t(T_)) / 6)


# --------------------------------------------------------------------------- soft CE


def test_soft_cross_entropy_matches_hand_computation():
    p = [_softmax_row(r) for r in T_]
    expected = 0.0
    for s_row, p_row in zip(S, p):
        q = _softmax_row(s_row)
        expected += -sum(pk * math.log(qk) for pk, qk in zip(p_row, q))
    expected /= 2
    assert soft_cross_entropy(_t(S), _t(p)).item() == pytest.approx(expected, rel=1e-10)


def test_soft_cross_entropy_minus_entropy_is_kl():
    p = torch.softmax(_t(T_), -1)
    entropy = -(p * p.log()).sum(-1).mean()
    assert (soft_cross_entropy(_t(S), p) - entropy).item() == pytest.approx(kl_loss(_t(S), _t(T_)).item())


def test_soft_cross_entropy_one_hot_equals_hard_loss():
    one_hot = _t([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert soft_cross_entropy(_t(S), one_hot).item() == pytest.approx(hard_loss(_t(S), [1, 2]).item())


# --------------------------------------------------------------------------- hard


def test_hard_loss_matches_hand_computation():
    # -log softmax(S[0])[1], -log softmax(S[1])[2], averaged
    expected = (-math.log(_softmax_row(S[0])[1]) - math.log(_softmax_row(S[1])[2])) / 2
    assert hard_loss(_t(S), [1, 2]).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("y", [[1, -1], np.array([1, -1]), torch.tensor([1, -1])])
def test_hard_loss_ignores_minus_one(y):
    expected = -math.log(_softmax_row(S[0])[1])  # only row 0 counts, average over 1 item
    assert hard_loss(_t(S), y).item() == pytest.approx(expected, rel=1e-10)


def test_hard_loss_all_unlabeled_is_graph_connected_zero():
    s = _t(S, grad=True)
    loss = hard_loss(s, [-1, -1])
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(s.grad, torch.zeros_like(s))


def test_hard_loss_gradient_only_on_labeled_rows():
    s = _t(S, grad=True)
    hard_loss(s, [-1, 0]).backward()
    assert torch.all(s.grad[0] == 0)
    assert torch.any(s.grad[1] != 0)


@pytest.mark.parametrize("y", [[3, 0], [-2, 0], [0]])
def test_hard_loss_bad_labels_raise(y):
    with pytest.raises(ValueError):
        hard_loss(_t(S), y)


def test_hard_loss_string_labels_raise():
    with pytest.raises(TypeError, match="class indices"):
        hard_loss(_t(S), ["a", "b"])


# --------------------------------------------------------------------------- combined


def test_distillation_loss_combination_by_hand():
    alpha, T = 0.3, 2.0
    y = [1, -1]
    hard = -math.log(_softmax_row(S[0])[1])  # labeled items only
    soft = T * T * _kl_by_hand(S, T_, T)  # all items
    got = distillation_loss(_t(S), _t(T_), y, loss="kl", temperature=T, alpha=alpha).item()
    assert got == pytest.approx(alpha * hard + (1 - alpha) * soft, rel=1e-10)


def test_distillation_loss_mse_ignores_temperature():
    a = distillation_loss(_t(S), _t(T_), [0, 1], loss="mse", temperature=1.0, alpha=0.5)
    b = distillation_loss(_t(S), _t(T_), [0, 1], loss="mse", temperature=5.0, alpha=0.5)
    expected = 0.5 * hard_loss(_t(S), [0, 1]) + 0.5 * mse_loss(_t(S), _t(T_))
    assert torch.allclose(a, b) and torch.allclose(a, expected)


def test_distillation_loss_alpha_not_renormalised_without_labels():
    alpha = 0.4
    soft = kl_loss(_t(S), _t(T_), temperature=2.0)
    for y in ([-1, -1], None):
        got = distillation_loss(_t(S), _t(T_), y, alpha=alpha)
        assert got.item() == pytest.approx((1 - alpha) * soft.item(), rel=1e-10)


def test_distillation_loss_alpha_extremes():
    s, t, y = _t(S), _t(T_), [0, 2]
    assert distillation_loss(s, t, y, alpha=0.0).item() == pytest.approx(kl_loss(s, t, 2.0).item())
    assert distillation_loss(s, t, y, alpha=1.0).item() == pytest.approx(hard_loss(s, y).item())
    # alpha=1 and no labels: zero, still differentiable
    s2 = _t(S, grad=True)
    out = distillation_loss(s2, t, [-1, -1], alpha=1.0)
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(s2.grad, torch.zeros_like(s2))


def test_distillation_loss_default_is_kl_t2():
    assert distillation_loss(_t(S), _t(T_)).item() == pytest.approx(kl_loss(_t(S), _t(T_), 2.0).item())


def test_distillation_loss_gradient_flows():
    s = _t(S, grad=True)
    distillation_loss(s, _t(T_), [1, -1], alpha=0.5).backward()
    assert s.grad is not None and torch.all(torch.isfinite(s.grad)) and torch.any(s.grad != 0)


def test_float32_input_works():
    s = torch.tensor(S, requires_grad=True)
    out = distillation_loss(s, torch.tensor(T_), [0, -1], alpha=0.5)
    assert out.dtype == torch.float32
    out.backward()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss": "ce"}, "loss must be one of"),
        ({"loss": "KL"}, "loss must be one of"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
    ],
)
def test_distillation_loss_bad_params_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distillation_loss(_t(S), _t(T_), [0, 1], **kwargs)


def test_kl_bad_temperature_raises():
    with pytest.raises(ValueError, match="temperature"):
        kl_loss(_t(S), _t(T_), temperature=0.0)


@pytest.mark.parametrize("fn", [kl_loss, mse_loss, soft_cross_entropy, distillation_loss])
def test_shape_mismatch_raises(fn):
    with pytest.raises(ValueError, match="same shape"):
        fn(_t(S), _t([[1.0, 2.0], [3.0, 4.0]]))


def test_non_2d_logits_raise():
    with pytest.raises(ValueError, match="2-D"):
        kl_loss(_t([1.0, 2.0]), _t([1.0, 2.0]))
    with pytest.raises(ValueError, match="2-D"):
        hard_loss(_t([1.0, 2.0]), [0, 1])


# --------------------------------------------------------------------------- cosine


def test_cosine_hidden_loss_by_hand():
    s = [[[1.0, 2.0], [3.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]]
    t = [[[2.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [-2.0, -2.0]]]
    cosines = []
    for bs, bt in zip(s, t):
        for a, b in zip(bs, bt):
            a_, b_ = np.array(a), np.array(b)
            cosines.append(a_ @ b_ / (np.linalg.norm(a_) * np.linalg.norm(b_)))
    # cos values: 4/5, 1, 0, -1
    assert cosines == pytest.approx([0.8, 1.0, 0.0, -1.0])
    expected_all = np.mean([1 - c for c in cosines])  # (0.2 + 0 + 1 + 2) / 4 = 0.8
    assert cosine_hidden_loss(_t(s), _t(t)).item() == pytest.approx(expected_all)
    mask = torch.tensor([[1, 1], [1, 0]])  # drops the last position
    assert cosine_hidden_loss(_t(s), _t(t), mask).item() == pytest.approx((0.2 + 0 + 1) / 3)
    bool_mask = mask.bool()
    assert cosine_hidden_loss(_t(s), _t(t), bool_mask).item() == pytest.approx((0.2 + 0 + 1) / 3)


def test_cosine_hidden_loss_gradient_and_empty_mask():
    s = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 4, dtype=torch.float64)
    cosine_hidden_loss(s, t, torch.ones(2, 3)).backward()
    assert torch.any(s.grad != 0)
    s.grad = None
    out = cosine_hidden_loss(s, t, torch.zeros(2, 3))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(s.grad, torch.zeros_like(s))


def test_cosine_hidden_loss_scale_invariant():
    s = torch.randn(2, 3, 4, dtype=torch.float64)
    t = torch.randn(2, 3, 4, dtype=torch.float64)
    assert cosine_hidden_loss(3 * s, 0.5 * t).item() == pytest.approx(cosine_hidden_loss(s, t).item())


def test_cosine_hidden_loss_bad_shapes_raise():
    with pytest.raises(ValueError, match="same shape"):
        cosine_hidden_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="mask"):
        cosine_hidden_loss(torch.ones(2, 3, 4), torch.ones(2, 3, 4), torch.ones(2, 4))
