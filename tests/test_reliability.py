"""Reliability of the neural estimators: transactional refits, the one text rule,
use-time parameter checks, compact tokenization, and checkpoint / resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from kdtext import BiLSTMClassifier, TransformerClassifier
from kdtext.base import encodable_texts
from kdtext.exceptions import TrainingInterruptedWarning

from conftest import make_toy_texts

PROBE = ["a good film", "awful plot", "the music was nice", ""]


def _bilstm(**kw):
    params = dict(vocab_size=300, embedding_dim=16, hidden_dim=16, epochs=3, batch_size=8, learning_rate=1e-2,
                  validation_fraction=0.2, random_state=0)
    return BiLSTMClassifier(**{**params, **kw})


def _transformer(path, **kw):
    params = dict(epochs=2, batch_size=8, learning_rate=1e-3, validation_fraction=None, random_state=0)
    return TransformerClassifier(path, **{**params, **kw})


@pytest.fixture(params=["bilstm", "transformer"])
def fitted(request, tiny_bert_path):
    X, y = make_toy_texts(64, seed=1)
    est = _bilstm() if request.param == "bilstm" else _transformer(tiny_bert_path)
    return est.fit(X, y)


def _state(est):
    return est.predict_proba(PROBE), est.classes_.copy(), [dict(r) for r in est.history_]


def _same(before, est):
    proba, classes, history = before
    assert np.array_equal(est.predict_proba(PROBE), proba)
    assert np.array_equal(est.classes_, classes)
    assert [{k: v for k, v in r.items()} for r in est.history_] == history


# ------------------------------------------------------------- transactions
def test_refit_failing_in_training_leaves_the_model_as_it_was(fitted, monkeypatch):
    before = _state(fitted)
    real = type(fitted)._forward
    calls = {"n": 0}

    def failing(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom in the third batch")
        return real(self, batch)

    monkeypatch.setattr(type(fitted), "_forward", failing)
    X, y = make_toy_texts(40, seed=7, n_classes=3)  # other classes: classes_ must not change either
    with pytest.raises(RuntimeError, match="boom"):
        fitted.fit(X, np.array(["x", "y", "z"])[y])
    monkeypatch.undo()
    _same(before, fitted)


def test_ctrl_c_while_tokenizing_leaves_the_model_as_it_was(fitted, monkeypatch):
    before = _state(fitted)

    def interrupted(self, texts):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(fitted), "_encode_store", interrupted)
    X, y = make_toy_texts(40, seed=7)
    with pytest.raises(KeyboardInterrupt):
        fitted.fit(X, y)
    monkeypatch.undo()
    _same(before, fitted)


def test_ctrl_c_in_the_first_epoch_reraises_and_keeps_the_old_model(fitted, monkeypatch):
    before = _state(fitted)
    real = type(fitted)._forward

    def interrupting(self, batch):
        if self.model_.training:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(type(fitted), "_forward", interrupting)
    X, y = make_toy_texts(40, seed=7)
    with pytest.raises(KeyboardInterrupt):
        fitted.fit(X, y)
    monkeypatch.undo()
    _same(before, fitted)


def test_ctrl_c_after_an_epoch_keeps_the_best_weights():
    X, y = make_toy_texts(80, seed=0)
    real = BiLSTMClassifier._forward
    calls = {"n": 0}

    def interrupting(self, batch):
        if self.model_.training:
            calls["n"] += 1
            if calls["n"] == 12:  # 8 training batches per epoch: during epoch 2
                raise KeyboardInterrupt
        return real(self, batch)

    BiLSTMClassifier._forward = interrupting
    try:
        with pytest.warns(TrainingInterruptedWarning, match="best weights"):
            clf = _bilstm(epochs=5).fit(X, y)
    finally:
        BiLSTMClassifier._forward = real
    assert clf.interrupted_ and clf.n_iter_ == 1 and clf.best_epoch_ == 1 and len(clf.history_) == 1


def test_refit_keeps_foreign_attributes(fitted):
    """Only fitted state is swapped: attributes set by others (e.g. scikit-learn's callback context) stay."""
    fitted._some_outside_context = object()
    marker = fitted._some_outside_context
    X, y = make_toy_texts(40, seed=2)
    fitted.fit(X, y)
    assert fitted._some_outside_context is marker


# ------------------------------------------------------------- text rule
def test_encodable_texts_replaces_lone_surrogates_only():
    texts = ["plain", "emoji \U0001F600 and \u05e9\u05dc\u05d5\u05dd", "lone \ud800 and \udfff"]
    out = encodable_texts(texts)
    assert out[:2] == texts[:2] and out[0] is texts[0]
    assert out[2] == "lone \ufffd and \ufffd"
    assert encodable_texts(texts[:2]) is not None and encodable_texts(texts[:2]) == texts[:2]


def test_lone_surrogates_fit_predict_score(fitted):
    X, y = make_toy_texts(40, seed=2)
    X = [t + " \ud800" if i % 3 == 0 else t for i, t in enumerate(X)]
    before = fitted.predict_proba(["x \ufffd"])
    assert np.array_equal(fitted.predict_proba(["x \ud800"]), before)
    assert 0.0 <= fitted.score(X, y) <= 1.0
    fitted.fit(X, y)
    assert np.isfinite(fitted.predict_proba(X)).all()


# ------------------------------------------------------------- use-time checks
@pytest.mark.parametrize("param, value", [("predict_batch_size", -1), ("predict_batch_size", 0), ("max_length", 0)])
def test_parameters_read_at_predict_time_are_validated(fitted, param, value):
    before = _state(fitted)
    fitted.set_params(**{param: value})
    for method in (fitted.predict, fitted.predict_proba, fitted.decision_function):
        with pytest.raises(InvalidParameterError, match=param):
            method(PROBE)
    fitted.set_params(**{param: type(fitted)().get_params()[param]})
    _same(before, fitted)


def test_token_store_matches_encode():
    X, y = make_toy_texts(50, seed=4)
    clf = _bilstm(epochs=1).fit(X, y)
    store = clf._encode_store(X + [""])
    seqs = clf._encode(X + [""])
    assert len(store) == len(seqs)
    assert all(store[i].tolist() == s for i, s in enumerate(seqs))
    assert store.flat.dtype == np.int32 and store.lengths.tolist() == [len(s) for s in seqs]


# ------------------------------------------------------------- checkpoints
def _weights(est):
    return {k: v.detach().cpu().clone() for k, v in est.model_.state_dict().items()}


def _assert_bit_identical(a, b):
    import torch

    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    import torch
    torch.set_num_threads({threads})  # the parent's: a sum over threads is only bit-identical for the same count
    from conftest import make_toy_texts
    from kdtext import BiLSTMClassifier
    from kdtext import _neural

    real = _neural._Checkpoint.save
    count = {{"n": 0}}

    def save_then_die(self, state):
        real(self, state)
        count["n"] += 1
        if count["n"] == {kill_after}:
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 right after a complete checkpoint

    _neural._Checkpoint.save = save_then_die
    X, y = make_toy_texts(80, seed=0)
    BiLSTMClassifier(**{params!r}).fit(X, y)
    """
)


def test_resume_after_kill_9_is_bit_identical(tmp_path):
    params = dict(vocab_size=300, embedding_dim=16, hidden_dim=16, epochs=4, batch_size=8, learning_rate=1e-2,
                  validation_fraction=0.2, n_iter_no_change=None, random_state=0, device="cpu")
    X, y = make_toy_texts(80, seed=0)
    reference = BiLSTMClassifier(**params).fit(X, y)

    ckpt = tmp_path / "ckpt"
    import torch

    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), kill_after=2, threads=torch.get_num_threads(),
                                 params={**params, "checkpoint_dir": str(ckpt)})
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (ckpt / "kdtext_checkpoint.pt").is_file()
    assert not [p for p in ckpt.iterdir() if p.suffix == ".tmp"]

    resumed_epochs = []
    real_log = BiLSTMClassifier._log_epoch

    def spy(self, record):
        resumed_epochs.append(record["epoch"])
        return real_log(self, record)

    BiLSTMClassifier._log_epoch = spy
    try:
        resumed = BiLSTMClassifier(**{**params, "checkpoint_dir": str(ckpt)}).fit(X, y)
    finally:
        BiLSTMClassifier._log_epoch = real_log
    assert resumed_epochs == [3, 4]  # epochs 1 and 2 came from the checkpoint
    _assert_bit_identical(_weights(resumed), _weights(reference))
    assert resumed.best_epoch_ == reference.best_epoch_ and resumed.n_iter_ == reference.n_iter_
    assert [r["valid_score"] for r in resumed.history_] == [r["valid_score"] for r in reference.history_]
    assert np.array_equal(resumed.predict_proba(X), reference.predict_proba(X))

    # a finished checkpoint is restored without training
    resumed_epochs.clear()
    BiLSTMClassifier._log_epoch = spy
    try:
        again = BiLSTMClassifier(**{**params, "checkpoint_dir": str(ckpt)}).fit(X, y)
    finally:
        BiLSTMClassifier._log_epoch = real_log
    assert resumed_epochs == []
    _assert_bit_identical(_weights(again), _weights(reference))


def test_transformer_resume_after_ctrl_c(tiny_bert_path, tmp_path, monkeypatch):
    X, y = make_toy_texts(48, seed=0)
    kw = dict(epochs=3, validation_fraction=0.25, n_iter_no_change=None, device="cpu")
    reference = _transformer(tiny_bert_path, **kw).fit(X, y)
    real = TransformerClassifier._forward
    calls = {"n": 0}

    def interrupting(self, batch):
        if self.model_.training:
            calls["n"] += 1
            if calls["n"] == 7:  # 5 training batches per epoch: during epoch 2
                raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(TransformerClassifier, "_forward", interrupting)
    with pytest.warns(TrainingInterruptedWarning, match="resume"):
        first = _transformer(tiny_bert_path, checkpoint_dir=tmp_path, **kw).fit(X, y)
    assert first.interrupted_ and first.n_iter_ == 1
    monkeypatch.undo()
    resumed = _transformer(tiny_bert_path, checkpoint_dir=tmp_path, **kw).fit(X, y)
    _assert_bit_identical(_weights(resumed), _weights(reference))


def test_checkpoint_of_another_fit_is_not_resumed(tmp_path):
    X, y = make_toy_texts(40, seed=0)
    _bilstm(epochs=2, checkpoint_dir=tmp_path).fit(X, y)
    with pytest.warns(UserWarning, match="another fit"):
        other = _bilstm(epochs=2, checkpoint_dir=tmp_path, hidden_dim=8).fit(X, y)
    assert other.n_iter_ == 2 and other.model_.lstm.hidden_size == 8


def test_damaged_checkpoint_is_set_aside_not_overwritten(tmp_path):
    X, y = make_toy_texts(40, seed=0)
    (tmp_path / "kdtext_checkpoint.pt").write_bytes(b"not a checkpoint")
    (tmp_path / ".checkpoint-dead.tmp").write_bytes(b"left by kill -9 while writing")
    with pytest.warns(UserWarning, match="cannot be used"):
        clf = _bilstm(epochs=2, checkpoint_dir=tmp_path).fit(X, y)
    assert clf.n_iter_ == 2
    assert os.path.getsize(tmp_path / "kdtext_checkpoint.pt") > 100
    (aside,) = list(tmp_path.glob("kdtext_checkpoint.pt.unreadable-*"))
    assert aside.read_bytes() == b"not a checkpoint"  # kept for the user, not overwritten
    assert not list(tmp_path.glob(".checkpoint-*.tmp"))


def test_finished_checkpoint_with_random_state_none_is_not_replayed(tmp_path):
    X, y = make_toy_texts(40, seed=0)
    a = _bilstm(epochs=2, random_state=None, checkpoint_dir=tmp_path).fit(X, y)
    b = _bilstm(epochs=2, random_state=None, checkpoint_dir=tmp_path).fit(X, y)
    assert not all(np.array_equal(v, b.model_.state_dict()[k]) for k, v in a.model_.state_dict().items())


def test_estimators_pickled_before_new_parameters_still_predict(fitted):
    import pickle

    state = fitted.__getstate__()
    for name in ("checkpoint_dir", "class_weight", "pooling", "head_learning_rate"):
        state.pop(name, None)  # as pickled by kdtext before these parameters existed
    old = object.__new__(type(fitted))
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    # not today's defaults (class_weight="balanced", pooling="auto" for the teacher): the values they were fitted with
    assert old.checkpoint_dir is None and old.class_weight is None
    if type(fitted).__name__ == "TransformerClassifier":
        assert old.pooling == "cls" and old.head_learning_rate is None
    assert np.array_equal(old.predict_proba(PROBE), fitted.predict_proba(PROBE))


def test_folders_saved_before_new_parameters_load_with_the_values_they_were_fitted_with(fitted, tmp_path):
    import json

    folder = fitted.save_pretrained(tmp_path / "saved")
    cfg_file = folder / "kdtext_config.json"
    cfg = json.loads(cfg_file.read_text())
    for name in ("checkpoint_dir", "class_weight", "pooling", "head_learning_rate"):
        cfg["params"].pop(name, None)  # as saved by kdtext before these parameters existed
    cfg_file.write_text(json.dumps(cfg))
    loaded = type(fitted).from_pretrained(folder, device="cpu")
    assert loaded.class_weight is None and loaded.checkpoint_dir is None
    if type(fitted).__name__ == "TransformerClassifier":
        assert loaded.pooling == "cls"
    assert type(fitted).from_pretrained(folder, device="cpu", class_weight="balanced").class_weight == "balanced"
    np.testing.assert_allclose(loaded.predict_proba(PROBE), fitted.predict_proba(PROBE), atol=1e-6)
