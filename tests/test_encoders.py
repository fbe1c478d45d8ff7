"""distill_encoder: task-agnostic distillation (MLM + KL + hidden cosine + pooled MSE) and DistilBERT's masking."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from kdtext import TransformerClassifier, distill_encoder, shrink_transformer
from kdtext.encoders import mask_tokens
from kdtext.exceptions import TrainingInterruptedWarning

from conftest import make_toy_texts


@pytest.fixture(scope="module")
def mlm_teacher_path(tmp_path_factory, tiny_bert_path):
    """A tiny random 4-layer BertForMaskedLM over the test vocabulary."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    path = tmp_path_factory.mktemp("mlm-teacher")
    config = BertConfig.from_pretrained(tiny_bert_path)
    config.num_hidden_layers = 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        BertForMaskedLM(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(path)
    return str(path)


def _config(folder) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


# ---------------------------------------------------------------- masking


def _mask(ids, probs=None, seed=0, vocab=60):
    special = torch.zeros(vocab, dtype=torch.bool)
    special[:5] = True
    probs = torch.ones(vocab) if probs is None else probs
    return mask_tokens(ids, (ids != 0).long(), special=special, token_probs=probs, mask_id=4, vocab_size=vocab,
                       generator=torch.Generator().manual_seed(seed))


def test_masking_proportions_follow_distilbert():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (200, 100), generator=gen)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    ids[:50, 80:] = 0  # padding
    inputs, labels = _mask(ids)
    picked = labels != -100
    n_real = int(((ids >= 5)).sum())
    assert int(picked.sum()) == int(np.ceil(0.15 * n_real))
    assert not picked[ids < 5].any()  # never specials or padding
    assert torch.equal(labels[picked], ids[picked])
    masked = (inputs[picked] == 4).float().mean().item()
    kept = (inputs[picked] == ids[picked]).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.03)
    assert kept == pytest.approx(0.1 + 0.1 / 55, abs=0.03)  # 10% kept, plus random draws that hit the same piece
    assert torch.equal(inputs[~picked], ids[~picked])
    assert (inputs[picked] >= 4).all()  # random replacements are never special pieces (4 is [MASK])


def test_frequent_pieces_are_picked_less_often_per_occurrence():
    ids = torch.full((400, 50), 7)
    ids[:, ::10] = 9  # piece 9 is 4x rarer than piece 7
    counts = torch.bincount(ids.flatten(), minlength=60).clamp(min=1).float()
    _, labels = _mask(ids, probs=counts ** -0.7)
    picked = labels != -100
    rate_7 = picked[ids == 7].float().mean().item()
    rate_9 = picked[ids == 9].float().mean().item()
    assert rate_9 > 2 * rate_7
    _, uniform = _mask(ids)
    flat = uniform != -100
    assert flat[ids == 9].float().mean().item() == pytest.approx(flat[ids == 7].float().mean().item(), abs=0.03)


# ---------------------------------------------------------------- distill_encoder


def test_distill_encoder_with_an_mlm_teacher(mlm_teacher_path, tmp_path):
    X, y = make_toy_texts(120, seed=0)
    student = shrink_transformer(mlm_teacher_path, tmp_path / "s", layers=2, texts=X)
    state = torch.get_rng_state()
    out = distill_encoder(mlm_teacher_path, student, X, tmp_path / "kd", epochs=4, batch_size=16,
                          learning_rate=2e-3, random_state=0)
    assert torch.equal(torch.get_rng_state(), state)
    info = _config(out)["kdtext_distilled"]
    assert info["mlm_head"] is True and info["steps"] == 4 * 8
    hist = info["history"]
    assert {"mlm", "kl", "hidden", "pooled"} <= set(hist[0])
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["mlm"] < hist[0]["mlm"]
    # the KL term alone goes down (with MLM on toy text the student learns peaked distributions the random
    # teacher does not have, so there it rises)
    kl = distill_encoder(mlm_teacher_path, student, X, tmp_path / "kl-only", mlm_weight=0, hidden_loss=None,
                         pooled_weight=0, epochs=4, batch_size=16, learning_rate=2e-3, random_state=0)
    hist = _config(kl)["kdtext_distilled"]["history"]
    assert set(hist[0]) == {"epoch", "loss", "kl"} and hist[-1]["kl"] < hist[0]["kl"]
    # the hidden term alone, from a student that starts far from the teacher, goes down too
    far = shrink_transformer(mlm_teacher_path, tmp_path / "far", layers=[3])
    only = distill_encoder(mlm_teacher_path, far, X, tmp_path / "hidden-only", mlm_weight=0, kl_weight=0,
                           pooled_weight=0, hidden_layers={1: 1}, epochs=4, batch_size=16, learning_rate=2e-3,
                           random_state=0)
    hist = _config(only)["kdtext_distilled"]["history"]
    assert set(hist[0]) == {"epoch", "loss", "hidden"} and hist[-1]["hidden"] < hist[0]["hidden"]
    # TransformerClassifier fine-tunes the result like any model
    clf = TransformerClassifier(out, epochs=2, batch_size=16, random_state=0, validation_fraction=None).fit(X, y)
    assert clf.predict(X[:5]).shape == (5,)
    assert clf.model_.config.vocab_size < 200  # the reduced vocabulary stayed


def test_distill_encoder_is_repeatable(mlm_teacher_path, tmp_path):
    X, _ = make_toy_texts(40, seed=1)
    student = shrink_transformer(mlm_teacher_path, tmp_path / "s", layers=1)
    a = distill_encoder(mlm_teacher_path, student, X, tmp_path / "a", random_state=3)
    b = distill_encoder(mlm_teacher_path, student, X, tmp_path / "b", random_state=3)
    from safetensors.torch import load_file

    wa, wb = load_file(Path(a) / "model.safetensors"), load_file(Path(b) / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_teacher_without_mlm_head_skips_mlm_and_kl(tiny_bert_path, tmp_path, caplog):
    X, _ = make_toy_texts(40, seed=2)
    student = shrink_transformer(tiny_bert_path, tmp_path / "s", layers=1)
    with caplog.at_level(logging.INFO, logger="kdtext.encoders"):
        out = distill_encoder(tiny_bert_path, student, X, tmp_path / "kd", random_state=0)
    assert "no masked-LM head" in caplog.text
    info = _config(out)["kdtext_distilled"]
    assert info["mlm_head"] is False
    assert set(info["history"][0]) == {"epoch", "loss", "hidden", "pooled"}
    with pytest.raises(ValueError, match="Nothing to learn: the teacher has no masked-LM head"):
        distill_encoder(tiny_bert_path, student, X, tmp_path / "kd2", hidden_loss=None, pooled_weight=0)


def test_fitted_classifier_teacher_and_a_narrower_student(tiny_bert_path, tmp_path):
    """A fitted TransformerClassifier teacher (encoder only) and a student of another width: a projection."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    X, y = make_toy_texts(60, seed=3)
    teacher = TransformerClassifier(tiny_bert_path, epochs=1, random_state=0, validation_fraction=None).fit(X, y)
    config = BertConfig.from_pretrained(tiny_bert_path)
    config.hidden_size, config.num_attention_heads, config.intermediate_size, config.num_hidden_layers = 16, 2, 20, 1
    folder = tmp_path / "narrow"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(folder)
    before = {k: v.clone() for k, v in teacher.model_.state_dict().items()}
    out = distill_encoder(teacher, folder, X, tmp_path / "kd", hidden_loss="mse", epochs=2, random_state=0)
    assert _config(out)["hidden_size"] == 16
    assert all(torch.equal(before[k], v) for k, v in teacher.model_.state_dict().items())  # the teacher is untouched
    assert not teacher.model_.training


def test_distill_encoder_refuses_bad_input_before_loading(tiny_bert_path, tmp_path):
    X, _ = make_toy_texts(20, seed=4)
    student = shrink_transformer(tiny_bert_path, tmp_path / "s", layers=1)
    with pytest.raises(ValueError, match="student's own folder"):
        distill_encoder(tiny_bert_path, student, X, student)
    with pytest.raises(ValueError, match="teacher's own folder"):
        distill_encoder(tiny_bert_path, student, X, tiny_bert_path)
    with pytest.raises(ValueError, match="texts is empty"):
        distill_encoder(tiny_bert_path, student, [], tmp_path / "o")
    with pytest.raises(TypeError, match="list"):
        distill_encoder(tiny_bert_path, student, "one text", tmp_path / "o")
    with pytest.raises(ValueError, match="kl_weight must be a finite number >= 0"):
        distill_encoder(tiny_bert_path, student, X, tmp_path / "o", kl_weight=-1)
    with pytest.raises(ValueError, match="hidden_loss must be"):
        distill_encoder(tiny_bert_path, student, X, tmp_path / "o", hidden_loss="l2")
    with pytest.raises(ValueError, match="mask_probability"):
        distill_encoder(tiny_bert_path, student, X, tmp_path / "o", mask_probability=1.5)
    with pytest.raises(TypeError, match="student must be a model folder"):
        distill_encoder(tiny_bert_path, object(), X, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_student_with_another_vocabulary_is_refused(mlm_teacher_path, tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path / "other"
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "zebra"])})
    BertModel(BertConfig(vocab_size=6, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=20)).save_pretrained(folder)
    tok.save_pretrained(folder)
    with pytest.raises(ValueError, match="not in the teacher's vocabulary"):
        distill_encoder(mlm_teacher_path, folder, ["zebra zebra"], tmp_path / "o")


def test_an_interrupt_writes_the_student_so_far(mlm_teacher_path, tmp_path, monkeypatch):
    X, _ = make_toy_texts(80, seed=5)
    student = shrink_transformer(mlm_teacher_path, tmp_path / "s", layers=1)
    real = torch.nn.utils.clip_grad_norm_
    calls = []

    def stop_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", stop_on_third)
    with pytest.warns(TrainingInterruptedWarning, match="after 2 of"):
        out = distill_encoder(mlm_teacher_path, student, X, tmp_path / "kd", batch_size=8, random_state=0)
    info = _config(out)["kdtext_distilled"]
    assert info["interrupted"] is True and info["steps"] == 2
