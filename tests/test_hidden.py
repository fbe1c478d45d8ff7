"""Hidden-state distillation for transformer students: layer maps, the vocabulary map, the losses, the fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdtext import DistillationClassifier, TransformerClassifier, shrink_transformer
from kdtext._hidden import HiddenMatcher, HiddenTarget, layer_map, vocabulary_map
from kdtext.losses import cosine_hidden_loss, mse_hidden_loss, pooled_mse_loss

from conftest import make_toy_texts


@pytest.fixture(scope="module")
def teacher(deep_bert_path):
    X, y = make_toy_texts(120, seed=0)
    return TransformerClassifier(
        deep_bert_path, epochs=6, batch_size=8, learning_rate=1e-3, validation_fraction=None, random_state=0
    ).fit(X, y)


def _bound_student(folder, teacher, X, **target):
    """A student initialised on ``folder`` (as fit would), bound to a HiddenTarget of ``teacher``."""
    student = TransformerClassifier(folder)
    student.classes_ = np.array([0, 1])
    student.device_ = torch.device("cpu")
    student._init_model(X, 2)
    settings = {"loss": "cosine", "weight": 1.0, "layers": "auto", "pooled_weight": 0.0, **target}
    return student, HiddenTarget(teacher, **settings).bind(student)


def _batch(student, texts):
    return student._collate(student._encode(texts), torch.device("cpu"))


# ---------------------------------------------------------------- losses by hand


def test_mse_hidden_loss_by_hand():
    s = torch.randn(2, 3, 4)
    t = torch.randn(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    want = np.mean([((s[b, p] - t[b, p]) ** 2).mean().item() for b, p in [(0, 0), (0, 1), (1, 0)]])
    assert mse_hidden_loss(s, t, mask).item() == pytest.approx(want, rel=1e-6)
    assert mse_hidden_loss(s, t).item() == pytest.approx(((s - t) ** 2).mean().item(), rel=1e-6)
    zero = mse_hidden_loss(s.requires_grad_(), t, torch.zeros(2, 3))
    assert zero.item() == 0.0 and zero.requires_grad


def test_pooled_mse_loss_equals_two_minus_two_cosine():
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    cos = torch.nn.functional.cosine_similarity(s, t, dim=-1)
    assert pooled_mse_loss(s, t).item() == pytest.approx((2 - 2 * cos).mean().item(), rel=1e-5)
    assert pooled_mse_loss(3 * t, t).item() == pytest.approx(0.0, abs=1e-6)  # scale-free


@pytest.mark.parametrize("fn", [mse_hidden_loss, cosine_hidden_loss])
def test_hidden_losses_refuse_bad_shapes(fn):
    with pytest.raises(ValueError, match="same shape.*Project"):
        fn(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="mask must have shape"):
        fn(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.ones(2, 2))
    with pytest.raises(TypeError):
        fn(np.zeros((1, 2, 3)), torch.zeros(1, 2, 3))


def test_pooled_mse_loss_refuses_bad_shapes():
    with pytest.raises(ValueError, match=r"\(batch, hidden_size\)"):
        pooled_mse_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))


# ---------------------------------------------------------------- maps


class _Config:
    def __init__(self, n, **kw):
        self.num_hidden_layers = n
        self.__dict__.update(kw)


def test_layer_map_defaults_and_choices():
    assert layer_map(_Config(2), _Config(4)) == [(0, 0), (1, 2), (2, 4)]
    shrunk = _Config(2, kdtext_shrunk_from={"source_layers": 4, "kept_layers": [0, 3]})
    assert layer_map(shrunk, _Config(4)) == [(0, 0), (1, 1), (2, 4)]
    # shrunk from another (6-layer) model: its record does not apply to this teacher, uniform instead
    other = _Config(2, kdtext_shrunk_from={"source_layers": 6, "kept_layers": [0, 2]})
    assert layer_map(other, _Config(4)) == [(0, 0), (1, 2), (2, 4)]
    assert layer_map(shrunk, _Config(4), "last") == [(2, 4)]
    assert layer_map(shrunk, _Config(4), {2: 4, 1: 1}) == [(1, 1), (2, 4)]


@pytest.mark.parametrize("layers, match", [({3: 1}, "student 0..2"), ({1: 5}, "teacher 0..4"), ({}, "non-empty"),
                                           ("every", "'auto', 'last'"), ({1.0: 2}, "indices")])
def test_layer_map_refuses_bad_maps(layers, match):
    with pytest.raises(ValueError, match=match):
        layer_map(_Config(2), _Config(4), layers)


def test_layer_map_refuses_deeper_student_in_auto():
    with pytest.raises(ValueError, match="deeper or equal teacher"):
        layer_map(_Config(5), _Config(4))


def test_vocabulary_map_on_a_reduced_vocabulary(teacher, tmp_path):
    X, _ = make_toy_texts(60, seed=3)
    folder = shrink_transformer(teacher, tmp_path / "s", layers=2, texts=X)
    student = TransformerClassifier(folder)
    student.classes_ = np.array([0, 1])
    student.device_ = torch.device("cpu")
    student._init_model(X, 2)
    n = student.model_.get_input_embeddings().weight.shape[0]
    assert n < teacher.model_.get_input_embeddings().weight.shape[0]  # the vocabulary was cut
    table = vocabulary_map(student.tokenizer_, teacher.tokenizer_, n)
    for text in X[:20]:  # the teacher reads exactly the pieces it would have cut itself
        assert table[student._encode([text])[0]].tolist() == teacher._encode([text])[0]


def test_vocabulary_map_refuses_another_tokenizer(teacher, tmp_path):
    from transformers import BertTokenizer

    other = BertTokenizer(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "zebra"])})
    with pytest.raises(ValueError, match="not in the teacher's vocabulary.*zebra.*shrink_transformer"):
        vocabulary_map(other, teacher.tokenizer_, 5)


# ---------------------------------------------------------------- the bound loss


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_an_exact_copy_of_the_teacher_has_zero_hidden_and_pooled_loss(teacher, tmp_path, kind):
    X, _ = make_toy_texts(30, seed=4)
    folder = shrink_transformer(teacher, tmp_path / "copy", layers=4)  # all layers: the teacher's own encoder
    student, bound = _bound_student(folder, teacher, X, loss=kind, pooled_weight=1.0)
    assert bound.matcher.proj is None and bound.matcher.pairs == [(i, i) for i in range(5)]
    student.model_.eval()
    batch = _batch(student, X[:8])
    with torch.no_grad():
        _, states = student._forward_hidden(batch)
        assert float(bound.loss(batch, states)) == pytest.approx(0.0, abs=1e-5)
        # and it is not zero when the student differs
        noisy = tuple(h + torch.randn_like(h) for h in states)
        assert float(bound.loss(batch, noisy)) > 1e-3


def test_bound_loss_against_hand_computation(teacher, tmp_path):
    X, _ = make_toy_texts(30, seed=5)
    folder = shrink_transformer(teacher, tmp_path / "half", layers=[1, 3])
    student, bound = _bound_student(folder, teacher, X, loss="mse", weight=0.5, pooled_weight=2.0)
    batch = _batch(student, X[:6])
    student.model_.eval()
    with torch.no_grad():
        _, s = student._forward_hidden(batch)
        t = teacher.model_.base_model(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"]
        want = 0.5 * np.mean([mse_hidden_loss(s[a], t[b], mask).item() for a, b in [(0, 0), (1, 2), (2, 4)]])
        assert teacher.pooling_ == student.pooling_ == "mean"  # a plain encoder: pooling="auto" means the mean
        m = mask.unsqueeze(-1).float()
        want += 2.0 * pooled_mse_loss((s[-1] * m).sum(1) / m.sum(1), (t[-1] * m).sum(1) / m.sum(1)).item()
        assert float(bound.loss(batch, s)) == pytest.approx(want, rel=1e-5)


def test_projection_starts_as_the_sliced_dims():
    student = _Config(1, hidden_size=3, kdtext_shrunk_from={"hidden_dims": [0, 2, 5]})
    matcher = HiddenMatcher(student, _Config(2, hidden_size=6), loss="cosine")
    h = torch.randn(2, 4, 3)
    projected = matcher.project(h)
    assert torch.equal(projected[..., [0, 2, 5]], h)
    assert torch.equal(projected[..., [1, 3, 4]], torch.zeros(2, 4, 3))
    unknown = HiddenMatcher(_Config(1, hidden_size=3), _Config(2, hidden_size=6), loss="mse")
    assert unknown.proj.weight.shape == (6, 3)


def test_the_teacher_runs_without_gradients_and_keeps_its_mode(teacher, tmp_path):
    X, _ = make_toy_texts(30, seed=6)
    folder = shrink_transformer(teacher, tmp_path / "s", layers=2)
    student, bound = _bound_student(folder, teacher, X)
    before = {k: v.clone() for k, v in teacher.model_.state_dict().items()}
    batch = _batch(student, X[:8])
    student.model_.train()
    _, states = student._forward_hidden(batch)
    value = bound.loss(batch, states)
    value.backward()
    assert all(p.grad is None for p in teacher.model_.parameters())
    assert not teacher.model_.training
    assert all(torch.equal(before[k], v) for k, v in teacher.model_.state_dict().items())


# ---------------------------------------------------------------- DistillationClassifier


def _kd(teacher, folder, **kw):
    student = TransformerClassifier(folder, epochs=3, batch_size=8, learning_rate=1e-3, random_state=0,
                                    validation_fraction=None)
    return DistillationClassifier(teacher, student, loss="mse", report=False, **{"augment": 0, **kw})


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_distillation_with_hidden_loss_trains_and_differs(teacher, tmp_path, kind):
    X, y = make_toy_texts(80, seed=7)
    folder = shrink_transformer(teacher, tmp_path / "s", layers=2)
    plain = _kd(teacher, folder).fit(X, y)
    calls = []
    hook = teacher.model_.base_model.register_forward_hook(
        lambda module, args, kwargs, out: calls.append(kwargs.get("output_hidden_states")), with_kwargs=True)
    try:
        kd = _kd(teacher, folder, hidden_loss=kind, pooled_weight=0.5).fit(X, y)
    finally:
        hook.remove()
    # the teacher ran beside the student: once per training batch and epoch (10 batches x 3 epochs)
    assert calls.count(True) == 30
    assert kd.predict(X).shape == (80,)
    assert kd.fidelity_ > 0.5
    a = plain.student_.predict_logits(X)
    b = kd.student_.predict_logits(X)
    assert not np.allclose(a, b)  # the hidden terms changed training
    # the same fit again is the same model (the projection's init is seeded too)
    again = _kd(teacher, folder, hidden_loss=kind, pooled_weight=0.5).fit(X, y)
    np.testing.assert_allclose(again.student_.predict_logits(X), b, rtol=1e-5, atol=1e-6)


def test_hidden_loss_decreases_on_a_toy_run(teacher, tmp_path):
    X, y = make_toy_texts(80, seed=8)
    folder = shrink_transformer(teacher, tmp_path / "s", layers=1)
    kd = _kd(teacher, folder, hidden_loss="mse", hidden_weight=5.0).set_params(
        student__epochs=6).fit(X, np.full(len(X), -1))
    losses = [r["train_loss"] for r in kd.history_]
    assert losses[-1] < losses[0]


def test_hidden_loss_with_a_narrower_student_learns_a_projection(teacher, tmp_path):
    """A student of another width (here a fresh 16-wide BERT over the teacher's vocabulary)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    X, y = make_toy_texts(60, seed=9)
    config = BertConfig.from_pretrained(teacher.model_.config._name_or_path or teacher.model)
    config.hidden_size, config.num_attention_heads, config.intermediate_size, config.num_hidden_layers = 16, 2, 20, 2
    folder = tmp_path / "narrow"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(teacher.model).save_pretrained(folder)
    kd = _kd(teacher, folder, hidden_loss="cosine").fit(X, y)
    assert kd.student_.model_.config.hidden_size == 16
    assert not any("proj" in k for k in kd.student_.model_.state_dict())  # the projection is dropped


def test_hidden_loss_refuses_other_students_and_teachers_before_labeling(teacher, tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from kdtext import BiLSTMClassifier

    X, y = make_toy_texts(40, seed=10)
    calls = []
    hook = teacher.model_.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(TypeError, match="TransformerClassifier student on the 'soft' route.*BiLSTM"):
            DistillationClassifier(teacher, BiLSTMClassifier(), hidden_loss="cosine").fit(X, y)
        with pytest.raises(TypeError, match="pooled_weight=0.5.*LogisticRegression|Pipeline"):
            DistillationClassifier(teacher, make_pipeline(TfidfVectorizer(), LogisticRegression()),
                                   pooled_weight=0.5).fit(X, y)
    finally:
        hook.remove()
    assert not calls  # refused before the teacher labeled anything
    tfidf_teacher = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, y)
    with pytest.raises(TypeError, match="teacher must be a fitted TransformerClassifier, not Pipeline"):
        DistillationClassifier(tfidf_teacher, TransformerClassifier(teacher.model), hidden_loss="mse").fit(X, y)
    with pytest.raises(Exception, match="hidden_loss"):
        DistillationClassifier(teacher, TransformerClassifier(teacher.model), hidden_loss="l1").fit(X, y)


def test_failed_hidden_refit_leaves_the_fitted_estimator_as_it_was(teacher, tmp_path):
    X, y = make_toy_texts(60, seed=11)
    folder = shrink_transformer(teacher, tmp_path / "s", layers=2)
    kd = _kd(teacher, folder, hidden_loss="cosine").fit(X, y)
    before = kd.predict_proba(X)
    with pytest.raises(ValueError, match="hidden_layers maps"):
        kd.set_params(hidden_layers={9: 1}).fit(X, y)
    np.testing.assert_array_equal(kd.predict_proba(X), before)
