"""Tests of BiLSTMClassifier (kdtext.students). Small models, a few seconds each."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError
from tokenizers import Tokenizer

from kdtext.students import BiLSTMClassifier, BiLSTMModule, train_tokenizer

from conftest import make_toy_texts

# trains in well under 2 s on the toy data and still learns it
FAST = dict(
    vocab_size=400,
    embedding_dim=32,
    hidden_dim=32,
    epochs=10,
    batch_size=16,
    learning_rate=1e-2,
    validation_fraction=None,
    n_iter_no_change=None,
    device="cpu",
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny models: one thread avoids OpenMP overhead on a busy 2-core machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy():
    return make_toy_texts(120, seed=0), make_toy_texts(60, seed=1)


@pytest.fixture(scope="module")
def fitted(toy):
    (X, y), _ = toy
    return BiLSTMClassifier(random_state=0, **FAST).fit(X, y)


def test_learns_separable_toy_task(fitted, toy):
    _, (X_test, y_test) = toy
    assert fitted.score(X_test, y_test) >= 0.9
    proba = fitted.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert isinstance(fitted.model_, BiLSTMModule)
    assert fitted.n_iter_ == FAST["epochs"]


@pytest.mark.parametrize("pooling", ["last", "max", "mean", "max_mean"])
def test_every_pooling_learns(pooling, toy):
    (X, y), (X_test, y_test) = toy
    clf = BiLSTMClassifier(pooling=pooling, random_state=0, **FAST).fit(X, y)
    assert clf.score(X_test, y_test) >= 0.9


def test_three_classes_and_early_stopping():
    X, y = make_toy_texts(150, seed=2, n_classes=3)
    params = {**FAST, "validation_fraction": 0.2, "n_iter_no_change": 2, "epochs": 15}
    clf = BiLSTMClassifier(random_state=0, **params).fit(X, y)
    assert clf.predict_proba(X).shape == (150, 3)
    assert 1 <= clf.best_epoch_ <= clf.n_iter_ <= 15
    assert all("valid_score" in h for h in clf.history_)


@pytest.mark.parametrize("kind", ["bpe", "unicode_bpe", "wordpiece"])
def test_tokenizer_is_learnt_from_training_texts_deterministically(kind, toy):
    (X, y), _ = toy
    tok = train_tokenizer(X, kind, vocab_size=300)
    assert tok.token_to_id("[PAD]") == 0 and tok.token_to_id("[UNK]") == 1
    assert tok.get_vocab_size() <= 300
    if kind != "wordpiece":  # tokenizers' WordPiece trainer numbers "##" pieces in hash-map order
        assert all(tok.to_str() == train_tokenizer(X, kind, vocab_size=300).to_str() for _ in range(3))
    # lowercase by default
    assert tok.encode("GOOD film", add_special_tokens=False).ids == tok.encode("good film", add_special_tokens=False).ids
    clf = BiLSTMClassifier(kind, random_state=0, **{**FAST, "vocab_size": 400}).fit(X, y)
    assert isinstance(clf.tokenizer_, Tokenizer)
    assert clf.tokenizer_.get_vocab_size() <= 400
    assert "good" in clf.tokenizer_.get_vocab() or "Ġgood" in clf.tokenizer_.get_vocab()
    # unseen words and characters, empty and blank strings never crash
    odd = ["", "   ", "zzqx unseenword", "неведомое слово 😀 ✓", "good"]
    assert clf.predict(odd).shape == (5,)
    assert all(1 <= len(s) for s in clf._encode(odd))


def test_lowercase_false_keeps_case(toy):
    (X, _), _ = toy
    tok = train_tokenizer([x.upper() for x in X] + X, vocab_size=300, lowercase=False)
    assert tok.encode("GOOD", add_special_tokens=False).ids != tok.encode("good", add_special_tokens=False).ids


def test_empty_strings_at_fit_and_predict(toy):
    (X, y), _ = toy
    X = list(X)
    X[0] = X[1] = ""
    clf = BiLSTMClassifier(random_state=0, **FAST).fit(X, y)
    assert clf._encode([""]) == [[clf._pad_id]]
    assert clf.predict_proba(["", ""]).shape == (2, 2)


def test_long_texts_are_truncated(fitted):
    long_text = " ".join(["good film"] * 5000)
    seqs = fitted._encode([long_text, "bad"])
    assert len(seqs[0]) == fitted.max_length
    clf = clone(fitted).set_params(max_length=8)
    clf.fit(*make_toy_texts(60, seed=3))
    assert max(len(s) for s in clf._encode([long_text, "x " * 100])) == 8
    # the prediction only depends on the first max_length tokens
    prefix = clf.tokenizer_.decode(clf._encode([long_text])[0])
    np.testing.assert_allclose(clf.predict_logits([long_text]), clf.predict_logits([prefix]), rtol=1e-5, atol=1e-6)


def test_prediction_is_independent_of_batch_composition(fitted, toy):
    _, (X_test, _) = toy
    together = fitted.predict_logits(X_test)
    alone = np.vstack([fitted.predict_logits([x]) for x in X_test[:10]])
    np.testing.assert_allclose(together[:10], alone, rtol=1e-4, atol=1e-5)


def test_pickle_round_trip_gives_identical_predictions(fitted, toy):
    _, (X_test, _) = toy
    clone_ = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(clone_.predict_proba(X_test), fitted.predict_proba(X_test))
    assert clone_.tokenizer_.to_str() == fitted.tokenizer_.to_str()
    # the tokenizers.Tokenizer pickles on its own too
    tok = pickle.loads(pickle.dumps(fitted.tokenizer_))
    assert tok.encode("good film").ids == fitted.tokenizer_.encode("good film").ids


def test_save_pretrained_from_pretrained_identical(fitted, toy, tmp_path):
    _, (X_test, _) = toy
    path = fitted.save_pretrained(tmp_path / "bilstm")
    assert {"model.safetensors", "tokenizer.json", "kdtext_config.json", "bilstm_config.json"} <= {
        p.name for p in path.iterdir()
    }
    loaded = BiLSTMClassifier.from_pretrained(path, device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(X_test), fitted.predict_proba(X_test))
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    assert loaded.get_params()["hidden_dim"] == FAST["hidden_dim"]


def test_class_weight_keys_survive_save_and_load(toy, tmp_path):
    (X, y), _ = toy
    fast = {**FAST, "epochs": 1}
    for labels, weights in ((y, {0: 1.0, 1: 3.0}), (np.array(["neg", "pos"])[y], {"neg": 1.0, "pos": 3.0})):
        clf = BiLSTMClassifier(random_state=0, class_weight=weights, **fast).fit(X, labels)
        loaded = BiLSTMClassifier.from_pretrained(clf.save_pretrained(tmp_path / str(labels.dtype)), device="cpu")
        assert loaded.get_params()["class_weight"] == weights  # JSON writes int keys as str: they come back
        loaded.fit(X, labels)  # and name the classes again, so a refit accepts them


def test_string_labels(toy):
    (X, y), (X_test, y_test) = toy
    names = np.array(["neg", "pos"])
    clf = BiLSTMClassifier(random_state=0, **FAST).fit(X, names[1 - y])
    assert clf.classes_.tolist() == ["neg", "pos"]
    pred = clf.predict(X_test)
    assert pred.dtype.kind == "U"
    assert np.mean(pred == names[1 - y_test]) >= 0.9


def _rule_task(n, seed):
    X, rule = make_toy_texts(n, seed=seed)
    noise = np.random.default_rng(seed + 100).permutation(rule)  # balanced, unrelated to the texts
    logits = np.where(rule[:, None] == np.arange(2)[None, :], 3.0, -3.0).astype(np.float32)
    return X, rule, noise, logits


@pytest.mark.parametrize("loss", ["mse", "kl"])
def test_fit_soft_learns_what_only_the_soft_targets_carry(loss):
    X, rule, noise, logits = _rule_task(160, seed=4)
    X_test, rule_test, _, _ = _rule_task(80, seed=5)
    student = BiLSTMClassifier(random_state=0, **FAST)
    student.fit_soft(X, logits, noise, classes=np.array([0, 1]), loss=loss, alpha=0.0)
    assert np.mean(student.predict(X_test) == rule_test) >= 0.9
    # the hard labels alone do not hold the rule
    hard = BiLSTMClassifier(random_state=0, **FAST).fit(X, noise)
    assert np.mean(hard.predict(X_test) == rule_test) < 0.75


def test_embeddings_shape_validation(toy):
    (X, y), _ = toy
    tok = train_tokenizer(X, vocab_size=150)
    n = tok.get_vocab_size()
    with pytest.raises(ValueError, match=r"shape \(vocab_size, embedding_dim\)"):
        BiLSTMClassifier(tok, embeddings=np.zeros((n + 1, 32)), **FAST).fit(X, y)
    with pytest.raises(ValueError, match="embedding_dim=8"):
        BiLSTMClassifier(tok, embeddings=np.zeros((n, 8)), **FAST).fit(X, y)
    with pytest.raises(ValueError, match="learns a new vocabulary"):
        BiLSTMClassifier("bpe", embeddings=np.zeros((400, 32)), **FAST).fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        BiLSTMClassifier(tok, embeddings=np.full((n, 32), np.nan), **FAST).fit(X, y)
    emb = np.random.default_rng(0).normal(size=(n, 32)).astype(np.float32)
    clf = BiLSTMClassifier(tok, embeddings=emb, freeze_embeddings=True, random_state=0, **FAST).fit(X, y)
    np.testing.assert_array_equal(clf.model_.embedding.weight.detach().numpy(), emb)
    assert clf.score(X, y) >= 0.9


def test_user_tokenizer_is_used_unchanged_and_clones(toy, tmp_path):
    (X, y), (X_test, _) = toy
    tok = train_tokenizer(X, "wordpiece", vocab_size=150)
    before = tok.to_str()
    clf = BiLSTMClassifier(tok, vocab_size=50, random_state=0, **{k: v for k, v in FAST.items() if k != "vocab_size"})
    cloned = clone(clf)
    assert isinstance(cloned.tokenizer, Tokenizer) and cloned.tokenizer is not tok
    assert cloned.tokenizer.to_str() == before
    clf.fit(X, y)
    assert tok.to_str() == before  # not retrained or mutated
    assert clf.tokenizer_.get_vocab() == tok.get_vocab()  # vocab_size ignored
    loaded = BiLSTMClassifier.from_pretrained(clf.save_pretrained(tmp_path / "m"), device="cpu")
    assert isinstance(loaded.tokenizer, Tokenizer)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), clf.predict_proba(X_test))


def test_same_seed_same_predictions_and_global_rng_untouched(toy):
    (X, y), (X_test, _) = toy
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a = BiLSTMClassifier(random_state=7, **{**FAST, "validation_fraction": 0.2}).fit(X, y)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    b = BiLSTMClassifier(random_state=7, **{**FAST, "validation_fraction": 0.2}).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X_test), b.predict_proba(X_test))
    c = BiLSTMClassifier(random_state=8, **FAST).fit(X, y)
    assert not np.array_equal(a.predict_proba(X_test), c.predict_proba(X_test))


@pytest.mark.parametrize(
    "params",
    [{"tokenizer": "sentencepiece"}, {"pooling": "attention"}, {"dropout": 1.0}, {"vocab_size": 0}, {"tokenizer": 3}],
)
def test_invalid_parameters(params, toy):
    (X, y), _ = toy
    with pytest.raises(InvalidParameterError):
        BiLSTMClassifier(**params).fit(X, y)


def test_mixed_precision_on_cpu_trains_and_predicts(fitted, toy):
    """mixed_precision=True autocasts the BiLSTM to bf16 on the CPU; "auto" keeps exact fp32."""
    (X, y), (X_test, y_test) = toy
    exact = fitted.predict_logits(X_test)
    bf16 = BiLSTMClassifier(random_state=0, **{**FAST, "mixed_precision": True}).fit(X, y)
    assert bf16._amp_dtype() == torch.bfloat16 and fitted._amp_dtype() is None
    assert bf16.score(X_test, y_test) >= 0.9
    fitted.set_params(mixed_precision=True)
    try:
        assert not np.array_equal(fitted.predict_logits(X_test), exact)
        np.testing.assert_allclose(fitted.predict_logits(X_test), exact, atol=0.1)
    finally:
        fitted.set_params(mixed_precision="auto")
    np.testing.assert_array_equal(fitted.predict_logits(X_test), exact)


# ------------------------------------------------------- review regressions
def test_small_data_still_gets_a_validation_set():
    """Per-class rounding can give no validation text; the split tops up instead of silently skipping it."""
    X, y = make_toy_texts(10, seed=0)
    clf = BiLSTMClassifier(random_state=0, **{**FAST, "epochs": 2, "validation_fraction": 0.1}).fit(X, y)
    assert all("valid_score" in r for r in clf.history_)
    with pytest.raises(ValueError, match="leaves no validation texts"):
        BiLSTMClassifier(random_state=0, **{**FAST, "validation_fraction": 0.5}).fit(X[:2], y[:2])


def test_a_failed_refit_leaves_the_fitted_estimator_usable(fitted, toy):
    import copy

    (X, y), (X_test, _) = toy
    clf = copy.deepcopy(fitted)
    before = clf.predict_proba(X_test)
    X3, y3 = make_toy_texts(60, seed=2, n_classes=3)
    with pytest.raises(ValueError):
        clf.set_params(embeddings=np.zeros((5, 16))).fit(X3, y3)  # wrong embedding shape: fails in init
    assert len(clf.classes_) == 2
    np.testing.assert_array_equal(clf.predict_proba(X_test), before)


def test_fit_leaves_global_torch_rng_untouched(toy):
    (X, y), _ = toy
    state = torch.random.get_rng_state()
    BiLSTMClassifier(random_state=0, **{**FAST, "epochs": 1}).fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_fit_soft_checks_temperature_and_alpha_before_training(toy):
    (X, y), _ = toy
    clf = BiLSTMClassifier(random_state=0, **FAST)
    logits = np.zeros((len(X), 2), dtype=np.float32)
    with pytest.raises(ValueError, match="temperature"):
        clf.fit_soft(X, logits, classes=[0, 1], temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        clf.fit_soft(X, logits, classes=[0, 1], alpha=1.5)
    assert not hasattr(clf, "model_")


@pytest.mark.parametrize("seed", range(40))
def test_score_from_confusion_is_scikit_learns_score(seed):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

    from kdtext._neural import SCORINGS, score_from_confusion

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    n = int(rng.integers(1, 60))
    # some classes absent from the targets, some from the predictions, some from both
    target = rng.choice(rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False), size=n)
    pred = rng.choice(rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False), size=n)
    cm = confusion_matrix(target, pred, labels=np.arange(k))
    expected = {
        "accuracy": accuracy_score(target, pred),
        "f1_macro": f1_score(target, pred, average="macro", zero_division=0),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        expected["balanced_accuracy"] = balanced_accuracy_score(target, pred)
    assert set(expected) == set(SCORINGS)
    for scoring, value in expected.items():
        assert score_from_confusion(cm, scoring) == pytest.approx(value, abs=1e-12), scoring


def _fixed_logits_evaluation(clf, logits, target, parallel=None):
    """``clf._evaluate`` on validation texts whose logits are ``logits`` (a stand-in for the model)."""
    def batch_loss(idx):
        return torch.tensor(0.5), torch.as_tensor(logits[idx])

    idx = np.arange(len(target))
    return clf._evaluate(idx, np.ones(len(target), dtype=np.int64), batch_loss, target, parallel)


@pytest.mark.parametrize("scoring", ["accuracy", "balanced_accuracy", "f1_macro"])
def test_validation_score_follows_scoring_in_one_process_and_across_two(fitted, scoring):
    from sklearn.metrics import get_scorer

    from kdtext._neural import score_from_confusion

    rng = np.random.default_rng(0)
    target = np.r_[np.zeros(45, dtype=np.int64), np.ones(5, dtype=np.int64)]  # imbalanced: the scores differ
    logits = rng.normal(size=(50, 2)).astype(np.float32)
    pred = logits.argmax(1)
    clf = clone(fitted).set_params(scoring=scoring)
    clf.model_, clf.classes_ = fitted.model_, fitted.classes_
    expected = get_scorer(scoring)._score_func(target, pred, **get_scorer(scoring)._kwargs)
    loss, score = _fixed_logits_evaluation(clf, logits, target)
    assert loss == pytest.approx(0.5) and score == pytest.approx(expected)

    class Share:  # process `rank` of 2: scores positions rank, rank + 2, ...; sum adds the other share's values
        world_size = 2

        def __init__(self, rank, other=None):
            self.rank, self.other, self.sent = rank, other, None

        def sum(self, values):
            self.sent = list(values)
            if self.other is None:
                raise StopIteration  # the first process only reports what it would send
            return [a + b for a, b in zip(values, self.other)]

    first = Share(1)
    with pytest.raises(StopIteration):
        _fixed_logits_evaluation(clf, logits, target, first)
    loss2, score2 = _fixed_logits_evaluation(clf, logits, target, Share(0, first.sent))
    assert score2 == pytest.approx(expected) and loss2 == pytest.approx(0.5)
    assert score_from_confusion(np.eye(2), scoring) == 1.0


def test_scoring_picks_the_best_epoch_by_that_score():
    X, y = make_toy_texts(150, seed=3)
    keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:20]]  # 75 vs 20: imbalanced
    X, y = [X[i] for i in keep], y[keep]
    params = {**FAST, "validation_fraction": 0.3, "epochs": 6, "learning_rate": 3e-3}
    runs = {s: BiLSTMClassifier(random_state=0, scoring=s, **params).fit(X, y)
            for s in ["accuracy", "balanced_accuracy", "f1_macro"]}
    losses = [[h["valid_loss"] for h in clf.history_] for clf in runs.values()]
    assert losses[0] == losses[1] == losses[2]  # the same training; only the score differs
    for clf in runs.values():
        scores = [h["valid_score"] for h in clf.history_]
        best = max(range(len(scores)), key=lambda i: (scores[i], -clf.history_[i]["valid_loss"]))
        assert clf.best_epoch_ == best + 1
    acc, bal = ([h["valid_score"] for h in runs[s].history_] for s in ["accuracy", "balanced_accuracy"])
    assert acc != bal


def test_unknown_scoring_is_refused(toy):
    (X, y), _ = toy
    with pytest.raises(InvalidParameterError, match="scoring"):
        BiLSTMClassifier(scoring="roc_auc", **FAST).fit(X, y)
