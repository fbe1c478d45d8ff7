"""BiLSTMClassifier(pretrained=folder): the teacher's tokenizer and Model2Vec vectors start the student."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("model2vec")

from kdtext import BiLSTMClassifier, DistillationClassifier  # noqa: E402
from kdtext.exceptions import ModelNotFoundError  # noqa: E402
from kdtext.static import piece_vectors  # noqa: E402

from conftest import make_toy_texts  # noqa: E402

FAST = dict(embedding_dim=8, hidden_dim=8, epochs=20, batch_size=8, learning_rate=1e-2, validation_fraction=None,
            n_iter_no_change=None, random_state=0)
ODD = ["a GREAT film", "", "   ", "шедевр 你好世界", "the [SEP] film", "good,bad!film?plot", "a" * 300]


@pytest.fixture(scope="module")
def toy():
    return make_toy_texts(96, seed=1)


@pytest.fixture(scope="module")
def fitted(tiny_bert_path, toy):
    X, y = toy
    return BiLSTMClassifier(pretrained=tiny_bert_path, **FAST).fit(X, y)


def test_learns_the_toy_task(fitted):
    X, y = make_toy_texts(60, seed=7)
    assert fitted.score(X, y) >= 0.9


def test_uses_the_models_tokenizer_and_vectors(tiny_bert_path, toy):
    from transformers import AutoTokenizer

    X, y = toy
    est = BiLSTMClassifier(pretrained=tiny_bert_path, **{**FAST, "epochs": 1, "learning_rate": 1e-12})
    est.fit(X, y)
    hf = AutoTokenizer.from_pretrained(tiny_bert_path)
    assert est.tokenizer_.get_vocab() == hf.backend_tokenizer.get_vocab()
    assert est._encode(["a great film"]) == [hf("a great film", add_special_tokens=False)["input_ids"]]
    # the rows start as the PCA'd Model2Vec vectors of the corpus pieces, scaled to unit standard deviation
    pieces = piece_vectors(tiny_bert_path, X, max_length=128, pca_dims=8, sif_coefficient=None)
    rows = est.model_.id_map[torch.from_numpy(pieces.kept)].numpy()
    assert (rows > 0).all() and len(set(rows)) == len(rows)
    weights = est.model_.embedding.weight.detach().numpy()
    expected = pieces.vectors / pieces.vectors.std()
    np.testing.assert_allclose(weights[rows], expected, atol=1e-6)
    assert not weights[0].any()  # pieces without a row, and padding
    assert int(est.model_.id_map.count_nonzero()) == len(pieces.kept)


def test_pieces_unseen_in_training_map_to_the_zero_row(fitted, toy):
    unseen = fitted.tokenizer_.token_to_id("mediocre")  # a word of the tiny vocabulary the 2-class texts lack
    assert unseen is not None and not any("mediocre" in t for t in toy[0])
    assert fitted._encode(["mediocre"]) == [[unseen]]
    assert int(fitted.model_.id_map[unseen]) == 0
    seen = fitted.tokenizer_.token_to_id("film")
    assert int(fitted.model_.id_map[seen]) > 0


def test_odd_texts_predict(fitted):
    proba = fitted.predict_proba(ODD)
    assert proba.shape == (len(ODD), 2) and np.isfinite(proba).all()


def test_narrow_tiny_corpus_still_gets_embedding_dim(tiny_bert_path):
    # 4 distinct pieces: too few for Model2Vec's PCA to 8 dimensions; the SVD fallback pads to the width
    X, y = ["good", "bad", "great", "awful"] * 4, [1, 0, 1, 0] * 4
    est = BiLSTMClassifier(pretrained=tiny_bert_path, **FAST).fit(X, y)
    assert est.model_.embedding.weight.shape == (5, 8)


def test_embedding_wider_than_the_model_is_a_clear_error(tiny_bert_path):
    from transformers import AutoTokenizer

    words = [w for w in AutoTokenizer.from_pretrained(tiny_bert_path).get_vocab() if w.isalpha()]
    assert len(words) > 32  # more pieces than the model is wide: PCA cannot make 64 dimensions
    X, y = words, np.arange(len(words)) % 2
    with pytest.raises(ValueError, match=r"embedding_dim=64 is wider than the 32-dimensional"):
        BiLSTMClassifier(pretrained=tiny_bert_path, **{**FAST, "embedding_dim": 64}).fit(X, y)


@pytest.mark.parametrize("kw", [{"tokenizer": "wordpiece"}, {"embeddings": np.zeros((3, 8))}])
def test_pretrained_with_own_tokenizer_or_embeddings_is_refused(tiny_bert_path, toy, kw):
    X, y = toy
    with pytest.raises(ValueError, match="brings its own tokenizer and vectors"):
        BiLSTMClassifier(pretrained=tiny_bert_path, **FAST, **kw).fit(X, y)


def test_missing_model_is_a_clear_error(toy, tmp_path):
    X, y = toy
    with pytest.raises(ModelNotFoundError, match="not a folder that exists"):
        BiLSTMClassifier(pretrained=str(tmp_path / "nope"), **FAST).fit(X, y)


def test_failed_refit_keeps_the_fitted_model(fitted, toy, tmp_path):
    X, y = toy
    est = pickle.loads(pickle.dumps(fitted))
    before = est.predict_logits(X)
    est.set_params(pretrained=str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError):
        est.fit(X, y)
    np.testing.assert_array_equal(est.predict_logits(X), before)


def test_save_load_and_pickle_predict_the_same(fitted, tmp_path):
    X = make_toy_texts(30, seed=3)[0] + ODD
    fitted.save_pretrained(tmp_path / "s")
    back = BiLSTMClassifier.from_pretrained(tmp_path / "s")
    np.testing.assert_array_equal(back.predict_logits(X), fitted.predict_logits(X))
    assert back.model_.config["n_rows"] == fitted.model_.config["n_rows"]
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).predict_logits(X), fitted.predict_logits(X))


def test_onnx_export_agrees(fitted, tmp_path):
    pytest.importorskip("onnxruntime")
    from kdtext import OnnxClassifier

    X = make_toy_texts(20, seed=4)[0] + ODD
    served = OnnxClassifier.from_pretrained(fitted.export_onnx(tmp_path / "onnx"))
    np.testing.assert_allclose(served.predict_logits(X), fitted.predict_logits(X), atol=1e-4)


def test_random_state_repeats(tiny_bert_path, toy):
    X, y = toy
    a = BiLSTMClassifier(pretrained=tiny_bert_path, **FAST).fit(X, y).predict_logits(X)
    b = BiLSTMClassifier(pretrained=tiny_bert_path, **FAST).fit(X, y).predict_logits(X)
    np.testing.assert_array_equal(a, b)


def test_distillation_fits_it_on_the_whole_transfer_set(tiny_bert_path, toy):
    from sklearn.linear_model import LogisticRegression
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    X, y = toy
    teacher = make_pipeline(TfidfVectorizer(), LogisticRegression(C=10)).fit(X, y)
    kd = DistillationClassifier(teacher, BiLSTMClassifier(pretrained=tiny_bert_path, **FAST), random_state=0)
    kd.fit(X + make_toy_texts(40, seed=5)[0], np.r_[y, -np.ones(40, int)])
    assert kd.student_.model_.id_map.count_nonzero() > 0
    assert kd.fidelity_ >= 0.9
    assert kd.streamed_ is False


# ----------------------------------------------------------------------------- pretrained="auto"
@pytest.fixture(scope="module")
def transformer_teacher(tiny_bert_path, toy):
    from kdtext import TransformerClassifier

    X, y = toy
    return TransformerClassifier(tiny_bert_path, epochs=1, batch_size=16, validation_fraction=None,
                                 random_state=0).fit(X, y)


def _unlabeled(X, y, n=40):
    return X + make_toy_texts(n, seed=5)[0], np.r_[y, -np.ones(n, int)]


def test_auto_alone_learns_its_own_vocabulary(toy):
    X, y = toy
    kw = {**FAST, "epochs": 2}
    auto = BiLSTMClassifier(pretrained="auto", vocab_size=300, **kw).fit(X, y)
    plain = BiLSTMClassifier(vocab_size=300, **kw).fit(X, y)
    assert auto.model_.id_map is None
    np.testing.assert_array_equal(auto.predict_logits(X), plain.predict_logits(X))


def test_auto_in_distillation_starts_from_the_teachers_checkpoint(transformer_teacher, tiny_bert_path, toy):
    kd = DistillationClassifier(transformer_teacher, BiLSTMClassifier(pretrained="auto", **FAST), random_state=0)
    kd.fit(*_unlabeled(*toy))
    assert kd.student_.pretrained == tiny_bert_path
    assert kd.student.pretrained == "auto"  # the parameter itself is left as given
    assert kd.student_.model_.id_map is not None


def test_auto_with_a_scikit_learn_teacher_learns_its_own_vocabulary(toy):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X, y = toy
    teacher = make_pipeline(TfidfVectorizer(), LogisticRegression(C=10)).fit(X, y)
    kd = DistillationClassifier(teacher, BiLSTMClassifier(pretrained="auto", vocab_size=300, **FAST),
                                random_state=0).fit(*_unlabeled(X, y))
    assert kd.student_.pretrained is None and kd.student_.model_.id_map is None


def test_auto_without_model2vec_warns_and_learns_its_own_vocabulary(transformer_teacher, toy, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "model2vec.distill", None)
    monkeypatch.setitem(sys.modules, "model2vec.distill.inference", None)
    kd = DistillationClassifier(transformer_teacher, BiLSTMClassifier(pretrained="auto", vocab_size=300, **FAST),
                                random_state=0)
    with pytest.warns(UserWarning, match=r"kdtext\[static\]"):
        kd.fit(*_unlabeled(*toy))
    assert kd.student_.pretrained is None
