"""StaticEmbeddingClassifier: vectors made from the model by Model2Vec, the word cache, fast inference, persistence."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("model2vec")

from kdtext import DistillationClassifier, StaticEmbeddingClassifier  # noqa: E402
from kdtext.exceptions import ModelNotFoundError  # noqa: E402
from kdtext.static import _PY_WHITESPACE, _WordCache  # noqa: E402

from conftest import make_toy_texts  # noqa: E402

FAST = dict(pca_dims=8, hidden_dim=8, epochs=6, batch_size=8, learning_rate=1e-2, validation_fraction=None,
            random_state=0)

# texts where a home-made split could go wrong: every whitespace str.split knows, control and format
# characters, accents, other scripts, a special token written in the text, empty and blank texts
TRICKY = [
    "a GREAT film", "Café déjà vu naïve", "good\x1cbad", "good\x0bbad\x0cfilm", "good\u2028bad\u2029film",
    "good\xa0bad\u3000film\u2009plot", "good\x85bad", "good\u200bbad\ufeffplot", "the [SEP] film [MASK]",
    "шедевр 你好世界 🙂", "", "   ", "\t\n", "good,bad!film?plot", "good-bad so-so", "a" * 300,
] + ["good\t" + c + "bad" for c in _PY_WHITESPACE]


@pytest.fixture(scope="module")
def toy():
    return make_toy_texts(96, seed=1)


@pytest.fixture(scope="module")
def fitted(tiny_bert_path, toy):
    X, y = toy
    return StaticEmbeddingClassifier(tiny_bert_path, **FAST).fit(X, y)


def _encoder_vectors(path, ids):
    """Mean of the encoder's last hidden state over [CLS] piece [SEP], computed here without model2vec."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    seqs = torch.tensor([[tok.cls_token_id, int(i), tok.sep_token_id] for i in ids])
    with torch.no_grad():
        out = model(input_ids=seqs, attention_mask=torch.ones_like(seqs), token_type_ids=torch.zeros_like(seqs))
    return out.last_hidden_state.mean(dim=1).numpy()


def test_learns_the_toy_task(fitted, toy):
    X, y = make_toy_texts(60, seed=7)
    assert fitted.score(X, y) >= 0.9
    assert fitted.predict_proba(X).shape == (60, 2)


def test_vectors_are_the_encoders_outputs_for_the_corpus_pieces(tiny_bert_path, toy):
    X, y = toy
    est = StaticEmbeddingClassifier(tiny_bert_path, **{**FAST, "pca_dims": None, "sif_coefficient": None},
                                    freeze_embeddings=True).fit(X, y)
    used = sorted({i for s in est._encode(X) for i in s})
    assert est.n_pieces_ == len(used)
    id_map = est.model_.id_map.numpy()
    rows = id_map[used]
    assert sorted(rows) == list(range(1, len(used) + 1))  # every corpus piece has its own row
    assert (np.delete(id_map, used) == 0).all()  # and no other piece
    want = _encoder_vectors(tiny_bert_path, used)
    got = est.model_.embedding.weight.detach().numpy()[rows]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not est.model_.embedding.weight[0].any()  # the row of pieces left out is zero


def test_sif_weights_follow_the_real_piece_frequencies(tiny_bert_path, toy):
    X, y = toy
    params = {**FAST, "pca_dims": None, "freeze_embeddings": True}
    plain = StaticEmbeddingClassifier(tiny_bert_path, **params, sif_coefficient=None).fit(X, y)
    a = 0.01
    sif = StaticEmbeddingClassifier(tiny_bert_path, **params, sif_coefficient=a).fit(X, y)
    ids = np.concatenate([np.asarray(s) for s in sif._encode(X)])
    counts = np.bincount(ids, minlength=len(sif.model_.id_map))
    used = np.flatnonzero(counts)
    ratio = (sif.model_.embedding.weight.detach().numpy()[1:] / plain.model_.embedding.weight.detach().numpy()[1:])
    p = counts[used] / counts.sum()
    rows = sif.model_.id_map.numpy()[used] - 1
    np.testing.assert_allclose(ratio[rows, 0], a / (a + p), rtol=1e-4)
    frequent, rare = used[np.argmax(counts[used])], used[np.argmin(counts[used])]
    assert ratio[rows[list(used).index(frequent)], 0] < ratio[rows[list(used).index(rare)], 0]


def test_pca_reduces_the_width(fitted):
    assert fitted.model_.embedding.weight.shape[1] == 8
    assert fitted.model_.config["embedding_dim"] == 8


def test_full_vocabulary_keeps_every_piece_but_padding(tiny_bert_path, toy):
    from transformers import AutoTokenizer

    X, y = toy
    est = StaticEmbeddingClassifier(tiny_bert_path, vocabulary="full", **FAST).fit(X, y)
    tok = AutoTokenizer.from_pretrained(tiny_bert_path)
    assert est.n_pieces_ < len(tok) and est.n_pieces_ >= len(tok) - len(tok.all_special_ids)
    assert est.model_.id_map[tok.pad_token_id] == 0
    corpus = StaticEmbeddingClassifier(tiny_bert_path, **FAST).fit(X, y)
    assert corpus.n_pieces_ < est.n_pieces_


def test_word_cache_gives_the_tokenizers_ids(fitted, toy):
    cache = fitted._word_cache
    assert cache is not None
    exact = [e.ids for e in fitted.tokenizer_.encode_batch(TRICKY, add_special_tokens=False)]
    assert cache.encode(fitted.tokenizer_, TRICKY) == exact
    assert cache.encode(fitted.tokenizer_, TRICKY) == exact  # from the cache this time
    # the characters BERT's normaliser deletes, where str.split would cut a word in two
    assert {"\x1c", "\x0b", "\x85"} <= set(cache.unsafe_chars)


def test_no_word_cache_for_a_tokenizer_that_joins_words(tiny_bert_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(make_toy_texts(50)[0], trainers.BpeTrainer(vocab_size=300, show_progress=False))
    assert _WordCache.build(tok, make_toy_texts(50)[0]) is None  # "Ġword" in a text, "word" alone


def test_word_cache_is_bounded(fitted, monkeypatch):
    import kdtext.static as static

    monkeypatch.setattr(static, "_CACHE_LIMIT", 5)
    cache = _WordCache(fitted._word_cache.unsafe_chars)
    texts = ["good bad film", "great awful plot story", "the a was very this"]
    exact = [e.ids for e in fitted.tokenizer_.encode_batch(texts, add_special_tokens=False)]
    for t, want in zip(texts, exact):
        assert cache.encode(fitted.tokenizer_, [t]) == [want]
        assert len(cache.words) <= 5


def test_fast_inference_equals_the_padded_forward(fitted):
    texts = TRICKY + ["zzzz qqqq", "good", "bad film " * 40]
    fast = fitted.predict_logits(texts)
    with torch.no_grad():
        seqs = fitted._encode(texts)
        padded = fitted._forward(fitted._collate(seqs, "cpu")).numpy()
    np.testing.assert_allclose(fast, padded, rtol=1e-5, atol=1e-6)


def test_pieces_unseen_in_training_are_left_out(fitted):
    # "zzzz qqqq" is made of pieces the toy corpus never used: no row, so the text is the empty bag
    z = fitted.predict_logits(["zzzz qqqq", "", "good zzzz"])
    np.testing.assert_allclose(z[0], z[1], atol=1e-6)
    np.testing.assert_allclose(z[2], fitted.predict_logits(["good"])[0], atol=1e-5)


def test_distillation_fit_soft(tiny_bert_path, toy):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X, y = toy
    teacher = make_pipeline(TfidfVectorizer(), LogisticRegression(C=10)).fit(X[:40], y[:40])
    kd = DistillationClassifier(teacher, StaticEmbeddingClassifier(tiny_bert_path, **FAST)).fit(
        X, np.r_[y[:40], -np.ones(len(X) - 40, dtype=int)])
    assert kd.fidelity_ >= 0.9
    assert isinstance(kd.student_, StaticEmbeddingClassifier)


def test_teacher_folder_gives_the_vectors(tiny_bert_path, toy, tmp_path):
    from kdtext import TransformerClassifier

    X, y = toy
    teacher = TransformerClassifier(tiny_bert_path, epochs=1, validation_fraction=None, random_state=0).fit(X, y)
    folder = teacher.save_pretrained(tmp_path / "teacher")
    est = StaticEmbeddingClassifier(str(folder), **FAST).fit(X, y)
    base = StaticEmbeddingClassifier(tiny_bert_path, **FAST).fit(X, y)
    # the fine-tuned encoder, not the starting checkpoint, made the vectors
    assert not np.allclose(est.model_.embedding.weight.detach().numpy(), base.model_.embedding.weight.detach().numpy())


def test_save_and_load(fitted, tmp_path):
    folder = fitted.save_pretrained(tmp_path / "static")
    back = StaticEmbeddingClassifier.from_pretrained(folder)
    np.testing.assert_array_equal(back.predict_logits(TRICKY), fitted.predict_logits(TRICKY))
    assert back._word_cache is not None and back._word_cache.unsafe_chars == fitted._word_cache.unsafe_chars
    assert back.n_pieces_ == fitted.n_pieces_


def test_damaged_folder_is_a_clear_error(fitted, tmp_path):
    folder = fitted.save_pretrained(tmp_path / "static")
    (folder / "static_config.json").write_text("{", encoding="utf-8")
    with pytest.raises(ModelNotFoundError, match="damaged"):
        StaticEmbeddingClassifier.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="lacks model.safetensors"):
        StaticEmbeddingClassifier.from_pretrained(folder)


def test_pickle_keeps_predictions_not_the_cached_words(fitted):
    fitted.predict(TRICKY)
    assert fitted._word_cache.words
    back = pickle.loads(pickle.dumps(fitted))
    assert back._word_cache.words == {}
    np.testing.assert_array_equal(back.predict_logits(TRICKY), fitted.predict_logits(TRICKY))


def test_onnx_export_agrees(fitted, tmp_path):
    pytest.importorskip("onnxruntime")
    from kdtext import OnnxClassifier

    folder = fitted.export_onnx(tmp_path / "onnx")
    served = OnnxClassifier.from_pretrained(folder)
    np.testing.assert_allclose(served.predict_logits(TRICKY), fitted.predict_logits(TRICKY), atol=1e-4)


def test_missing_model_is_a_clear_error(toy, tmp_path):
    X, y = toy
    with pytest.raises(ModelNotFoundError, match="not a folder that exists"):
        StaticEmbeddingClassifier(str(tmp_path / "nope"), **FAST).fit(X, y)


def test_missing_model2vec_says_how_to_install(tiny_bert_path, toy, monkeypatch):
    X, y = toy
    monkeypatch.setitem(sys.modules, "model2vec.distill", None)
    monkeypatch.setitem(sys.modules, "model2vec.distill.inference", None)
    with pytest.raises(ImportError, match=r"kdtext\[static\]"):
        StaticEmbeddingClassifier(tiny_bert_path, **FAST).fit(X, y)


def test_failed_refit_keeps_the_fitted_model(fitted, toy, tmp_path):
    X, _ = toy
    before = fitted.predict_logits(X)
    est = pickle.loads(pickle.dumps(fitted))
    est.set_params(model=str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError):
        est.fit(X, make_toy_texts(96, seed=1)[1])
    np.testing.assert_array_equal(est.predict_logits(X), before)


def test_silent_unless_verbose(tiny_bert_path, toy, capfd):
    X, y = toy
    StaticEmbeddingClassifier(tiny_bert_path, **FAST).fit(X, y)
    assert "Encoding tokens" not in capfd.readouterr().err
    StaticEmbeddingClassifier(tiny_bert_path, **{**FAST, "epochs": 1}, verbose=1).fit(X, y)
    assert "Encoding tokens" in capfd.readouterr().err


def test_random_state_repeats(tiny_bert_path, toy):
    X, y = toy
    a = StaticEmbeddingClassifier(tiny_bert_path, **FAST).fit(X, y).predict_logits(X)
    b = StaticEmbeddingClassifier(tiny_bert_path, **FAST).fit(X, y).predict_logits(X)
    np.testing.assert_array_equal(a, b)


def test_token_dropout_leaves_pieces_out_in_training_only(fitted):
    from kdtext.static import StaticEmbeddingModule

    module = StaticEmbeddingModule(**{**fitted.model_.config, "token_dropout": 0.5})
    module.load_state_dict(fitted.model_.state_dict())
    seqs = fitted._encode(["good film plot", "bad", "good bad film plot story"])
    batch = tuple(fitted._collate(seqs, "cpu").values())  # input_ids, lengths
    module.eval()
    with torch.no_grad():
        plain = module(*batch)
        torch.testing.assert_close(plain, fitted.model_(*batch))  # prediction uses every piece
        module.train()
        module.dropout.p = 0.0  # isolate the word dropout
        torch.manual_seed(0)
        dropped = torch.stack([module.embed(*batch) for _ in range(200)])
    full = fitted.model_.embed(*batch)
    assert torch.isfinite(dropped).all()
    # a one-piece text can never lose its piece; longer texts see other means
    torch.testing.assert_close(dropped[:, 1], full[1].expand(200, -1))
    assert not torch.allclose(dropped[:, 2], full[2].expand(200, -1))
    assert (dropped[:, 2] - full[2]).abs().sum(dim=1).gt(1e-6).float().mean() > 0.5


def test_token_dropout_fits_and_is_saved(tiny_bert_path, toy, tmp_path):
    X, y = toy
    clf = StaticEmbeddingClassifier(tiny_bert_path, token_dropout=0.3, **FAST).fit(X, y)
    assert clf.model_.config["token_dropout"] == 0.3
    assert clf.score(*make_toy_texts(60, seed=7)) >= 0.9
    clf.save_pretrained(tmp_path / "s")
    again = StaticEmbeddingClassifier.from_pretrained(tmp_path / "s")
    assert again.token_dropout == 0.3
    np.testing.assert_allclose(again.predict_logits(X), clf.predict_logits(X), rtol=1e-6)
