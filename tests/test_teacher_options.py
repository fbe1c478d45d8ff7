"""Teacher options for small labeled sets: pooling, head learning rate, class weights, epochs="auto"."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from kdtext import BiLSTMClassifier, TransformerClassifier
from kdtext.teachers import auto_pooling, sentence_transformers_pooling

from conftest import make_toy_texts


def _fast(path, **kw):
    params = dict(epochs=2, batch_size=8, learning_rate=1e-3, validation_fraction=None, random_state=0)
    return TransformerClassifier(path, **{**params, **kw})


@pytest.fixture
def st_folder(tiny_bert_path, tmp_path):
    """The tiny BERT with a sentence-transformers pooling config (mean pooling), as all-MiniLM-L6-v2 ships."""
    folder = tmp_path / "st-bert"
    shutil.copytree(tiny_bert_path, folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": False,
                                                                  "pooling_mode_mean_tokens": True}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    return str(folder)


def test_sentence_transformers_pooling_is_read(st_folder, tiny_bert_path, tmp_path):
    assert sentence_transformers_pooling(st_folder) == "mean"
    assert sentence_transformers_pooling(tiny_bert_path) is None
    assert sentence_transformers_pooling("some-org/some-model") is None


def test_auto_pooling_follows_the_checkpoint(st_folder, tiny_bert_path, tmp_path):
    X, y = make_toy_texts(40, seed=0)
    assert TransformerClassifier().pooling == "auto"  # the default
    assert _fast(st_folder, epochs=1).fit(X, y).pooling_ == "mean"  # its sentence-transformers config
    assert _fast(tiny_bert_path, epochs=1).fit(X, y).pooling_ == "mean"  # a plain BertModel encoder
    cls_st = tmp_path / "st-cls"
    shutil.copytree(st_folder, cls_st)
    (cls_st / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert _fast(str(cls_st), epochs=1).fit(X, y).pooling_ == "cls"
    # a checkpoint that already is a fine-tuned classifier keeps the vector its head was trained on
    fitted = _fast(tiny_bert_path, pooling="cls", epochs=1).fit(X, y)
    hf_folder = tmp_path / "hf-classifier"
    fitted.model_.save_pretrained(hf_folder)
    fitted.tokenizer_.save_pretrained(hf_folder)
    assert auto_pooling(hf_folder)[0] == "cls"  # read from its config.json
    assert auto_pooling(tiny_bert_path)[0] == "mean"
    assert _fast(str(hf_folder), epochs=1).fit(X, y).pooling_ == "cls"
    # a kdtext folder refitted as a starting point keeps the pooling it was fitted with
    kd_folder = _fast(tiny_bert_path, pooling="cls", epochs=1).fit(X, y).save_pretrained(tmp_path / "kd")
    assert auto_pooling(kd_folder) == ("cls", "the pooling of the kdtext model saved there (kdtext_config.json)")
    assert _fast(tiny_bert_path, pooling="mean", epochs=1).fit(X, y).save_pretrained(tmp_path / "kd2").exists()
    assert auto_pooling(tmp_path / "kd2")[0] == "mean"


def test_mean_pooling_is_the_masked_mean_through_the_head(tiny_bert_path):
    X, y = make_toy_texts(40, seed=0)
    clf = _fast(tiny_bert_path, pooling="mean", epochs=1).fit(X, y)
    texts = ["a good film", "the plot was very very boring indeed"]  # different lengths: padding must not count
    enc = clf.tokenizer_(texts, padding=True, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        hidden = clf.model_.bert(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        expected = clf.model_.classifier((hidden * m).sum(1) / m.sum(1))
        cls_logits = clf.model_(**enc).logits
    got = clf.predict_logits(texts)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    assert not np.allclose(got, cls_logits.numpy(), atol=1e-3)  # not the [CLS] head


def test_pooling_survives_save_and_load(st_folder, tmp_path):
    X, y = make_toy_texts(40, seed=0)
    clf = _fast(st_folder, pooling="auto", epochs=1).fit(X, y)
    loaded = TransformerClassifier.from_pretrained(clf.save_pretrained(tmp_path / "saved"), device="cpu")
    assert loaded.pooling_ == "mean"
    np.testing.assert_allclose(loaded.predict_logits(X), clf.predict_logits(X), atol=1e-5)


def test_head_learning_rate_gets_its_own_groups(tiny_bert_path):
    X, y = make_toy_texts(40, seed=0)
    clf = _fast(tiny_bert_path, head_learning_rate=5e-2, epochs=1).fit(X, y)
    groups = clf._param_groups()
    head = {id(p) for p in clf.model_.classifier.parameters()}
    for g in groups:
        ids = {id(p) for p in g["params"]}
        assert ids <= head or not (ids & head)
        if ids <= head:
            assert g["lr"] == 5e-2
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in clf.model_.parameters() if p.requires_grad)


@pytest.mark.parametrize("make", ["bilstm", "transformer"])
def test_class_weight_balanced_changes_the_loss(make, tiny_bert_path):
    X, y = make_toy_texts(60, seed=0)
    y = np.where(np.arange(60) % 5 == 0, 1, 0)  # imbalanced: 12 of 60
    if make == "bilstm":
        base = dict(vocab_size=300, embedding_dim=16, hidden_dim=16, epochs=2, batch_size=8,
                    validation_fraction=None, random_state=0)
        plain, weighted = BiLSTMClassifier(**base).fit(X, y), BiLSTMClassifier(**base, class_weight="balanced").fit(X, y)
    else:
        plain = _fast(tiny_bert_path, class_weight=None).fit(X, y)
        weighted = _fast(tiny_bert_path).fit(X, y)  # "balanced" is the teacher's default
        assert weighted.class_weight == "balanced"
    w = weighted._class_weights(np.asarray(y), 2)
    np.testing.assert_allclose(w, [60 / (2 * 48), 60 / (2 * 12)])
    assert weighted.history_[0]["train_loss"] != plain.history_[0]["train_loss"]
    # the minority class gets more probability on average when it weighs more
    assert weighted.predict_proba(X)[:, 1].mean() > plain.predict_proba(X)[:, 1].mean()


def test_class_weight_dict_is_checked(tiny_bert_path):
    X, y = make_toy_texts(40, seed=0)
    with pytest.raises(ValueError, match="not among the labels"):
        _fast(tiny_bert_path, class_weight={5: 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="positive"):
        _fast(tiny_bert_path, class_weight={0: -1.0}).fit(X, y)


def test_epochs_auto_reaches_enough_steps():
    clf = BiLSTMClassifier(epochs="auto")
    assert clf._n_epochs(10) == 30  # 600 steps wanted, capped at 30 passes
    assert clf._n_epochs(100) == 6
    assert clf._n_epochs(1000) == 3  # at least 3
    assert BiLSTMClassifier(epochs=4)._n_epochs(10) == 4
    X, y = make_toy_texts(40, seed=0)
    fitted = BiLSTMClassifier(vocab_size=300, embedding_dim=8, hidden_dim=8, batch_size=32, epochs="auto",
                              validation_fraction=None, n_iter_no_change=None, random_state=0).fit(X, y)
    assert fitted.n_iter_ == 30  # 2 steps per epoch

