"""int8 inference for a teacher: ``export_onnx(..., quantize="int8")`` on tiny models.

The int8 graph cannot meet the fp32 export's 1e-4: it must load in
OnnxClassifier, hold quantized ops, be smaller, agree with torch's argmax on
nearly every text and stay close in logits; the export must leave no
temporary files and record the quantization.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from kdtext import BiLSTMClassifier, OnnxClassifier, TransformerClassifier  # noqa: E402
from kdtext.onnx import MODEL_NAME, ONNX_CONFIG_NAME, export_onnx  # noqa: E402

from conftest import make_toy_texts  # noqa: E402

_QUANT_OPS = {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul"}


@pytest.fixture(scope="module")
def teachers(tiny_bert_path, tmp_path_factory):
    """kind -> (fitted estimator, fp32 folder, int8 folder, held-out texts)."""
    X, y = make_toy_texts(200, seed=3)
    held_out, _ = make_toy_texts(120, seed=4)
    out = {}
    root = tmp_path_factory.mktemp("quantize")
    for kind, est in {
        "bert": TransformerClassifier(tiny_bert_path, epochs=3, validation_fraction=None, random_state=0),
        "bilstm": BiLSTMClassifier(vocab_size=300, embedding_dim=32, hidden_dim=32, epochs=3,
                                   validation_fraction=None, random_state=0),
    }.items():
        est.fit(X, y)
        out[kind] = (est, est.export_onnx(root / f"{kind}-fp32"), est.export_onnx(root / f"{kind}-int8", quantize="int8"),
                     held_out)
    return out


@pytest.mark.parametrize("kind", ["bert", "bilstm"])
def test_int8_export_serves_close_to_torch(kind, teachers):
    est, _, int8, texts = teachers[kind]
    clf = OnnxClassifier.from_pretrained(int8)
    got, want = clf.predict_logits(texts), est.predict_logits(texts)
    assert got.dtype == np.float32 and got.shape == want.shape
    diff = float(np.abs(got - want).max())
    assert 0 < diff < 0.05 * max(1.0, float(np.abs(want).max()))  # not the fp32 graph, and not far from it
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.97
    np.testing.assert_array_equal(clf.classes_, est.classes_)


@pytest.mark.parametrize("kind", ["bert", "bilstm"])
def test_int8_graph_holds_quantized_ops_and_is_smaller(kind, teachers):
    import onnx

    _, fp32, int8, _ = teachers[kind]
    ops = {n.op_type for n in onnx.load(str(int8 / MODEL_NAME)).graph.node}
    assert ops & _QUANT_OPS, sorted(ops)
    assert not {n.op_type for n in onnx.load(str(fp32 / MODEL_NAME)).graph.node} & _QUANT_OPS
    # the tiny models are mostly embeddings and graph, which stay fp32; MiniLM shrinks 4x
    assert os.path.getsize(int8 / MODEL_NAME) < 0.9 * os.path.getsize(fp32 / MODEL_NAME)


def test_int8_config_records_the_quantization(teachers):
    _, fp32, int8, _ = teachers["bert"]
    config = json.loads((int8 / ONNX_CONFIG_NAME).read_text())
    assert config["quantization"] == "int8"
    check = config["quantization_check"]
    assert 0 < check["max_logit_diff"] < 0.1 and check["argmax_agreement"] >= 0.8 and check["probe_texts"] > 5
    assert config["external_data"] is False
    assert json.loads((fp32 / ONNX_CONFIG_NAME).read_text())["quantization"] is None
    assert OnnxClassifier.from_pretrained(int8).config_["quantization"] == "int8"


def test_int8_export_leaves_no_temporary_files(teachers, tmp_path):
    est = teachers["bert"][0]
    before = set(os.listdir(tempfile.gettempdir()))
    folder = export_onnx(est, tmp_path / "nested" / "int8", quantize="int8")
    assert sorted(os.listdir(tmp_path / "nested")) == ["int8"]
    assert sorted(os.listdir(folder)) == sorted([MODEL_NAME, "tokenizer.json", ONNX_CONFIG_NAME])
    # onnxruntime.quantization writes its temporaries beside the graph or in the temp dir; none survive
    new = {n for n in set(os.listdir(tempfile.gettempdir())) - before if "ort" in n or "quant" in n}
    assert not new


def test_int8_export_replaces_an_fp32_export_and_back(teachers, tmp_path):
    est = teachers["bilstm"][0]
    folder = est.export_onnx(tmp_path / "m")
    assert OnnxClassifier.from_pretrained(folder).config_["quantization"] is None
    est.export_onnx(folder, quantize="int8")
    assert OnnxClassifier.from_pretrained(folder).config_["quantization"] == "int8"


@pytest.mark.parametrize("bad", ["INT8", "int4", "fp16", True, 8])
def test_bad_quantize_value_is_refused_before_anything_is_written(bad, teachers, tmp_path):
    est = teachers["bert"][0]
    with pytest.raises(ValueError, match=r"quantize must be one of \[None, 'int8'\].*got"):
        est.export_onnx(tmp_path / "m", quantize=bad)
    assert not (tmp_path / "m").exists() and not os.listdir(tmp_path)


def test_int8_export_refuses_a_broken_graph(teachers, tmp_path, monkeypatch):
    """A quantization that wrecks the logits is caught by the probe check and nothing is written."""
    import onnx
    from onnx import numpy_helper

    import kdtext.onnx as konnx

    real = konnx._quantize_int8

    def wreck(folder, config):
        real(folder, config)
        model = onnx.load(str(folder / MODEL_NAME))
        for init in model.graph.initializer:  # every weight scale x 50
            if init.name.endswith("_scale") and init.data_type == onnx.TensorProto.FLOAT:
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 50, init.name))
        onnx.save(model, str(folder / MODEL_NAME))

    monkeypatch.setattr(konnx, "_quantize_int8", wreck)
    with pytest.raises(RuntimeError, match="int8 graph disagrees with torch"):
        teachers["bert"][0].export_onnx(tmp_path / "m", quantize="int8")
    assert not os.listdir(tmp_path)


def test_int8_export_does_not_install_a_root_log_handler(teachers, tmp_path):
    """onnxruntime.quantization logs its pre-processing advice on the root logger (basicConfig on first use)."""
    root = logging.getLogger()
    handlers, filters = list(root.handlers), list(root.filters)
    teachers["bilstm"][0].export_onnx(tmp_path / "m", quantize="int8")
    assert root.handlers == handlers and root.filters == filters


def test_damaged_quantization_in_config_is_refused(teachers, tmp_path):
    import shutil

    from kdtext.exceptions import ModelNotFoundError

    folder = shutil.copytree(teachers["bert"][2], tmp_path / "m")
    config = json.loads((folder / ONNX_CONFIG_NAME).read_text())
    config["quantization"] = "int3"
    (folder / ONNX_CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ModelNotFoundError, match="'quantization' must be one of"):
        OnnxClassifier.from_pretrained(folder)


# ------------------------------------------------------------------ the torch fallback and int8_teacher
@pytest.mark.parametrize("kind", ["bert", "bilstm"])
def test_torch_int8_is_close_to_fp32_and_leaves_the_estimator_alone(kind, teachers):
    import torch

    from kdtext.quantization import TorchInt8Classifier

    est, _, _, texts = teachers[kind]
    before = est.predict_logits(texts)
    fast = TorchInt8Classifier(est).fit()
    got = fast.predict_logits(texts)
    assert got.dtype == np.float32 and got.shape == before.shape
    assert 0 < float(np.abs(got - before).max()) < 0.05 * max(1.0, float(np.abs(before).max()))
    assert np.mean(got.argmax(1) == before.argmax(1)) >= 0.97
    np.testing.assert_array_equal(fast.predict(texts), fast.classes_[got.argmax(1)])
    quantized = [m for m in fast.estimator_.model_.modules() if type(m).__module__.startswith("torch.ao.nn.quantized")]
    assert quantized
    # the fp32 estimator keeps its fp32 layers and its outputs
    assert not any(type(m).__module__.startswith("torch.ao") for m in est.model_.modules())
    assert any(isinstance(m, (torch.nn.Linear, torch.nn.LSTM)) for m in est.model_.modules())
    np.testing.assert_array_equal(est.predict_logits(texts), before)


def test_torch_int8_pickles_and_has_its_own_fingerprint(teachers):
    import pickle

    from kdtext.distillation import teacher_fingerprint
    from kdtext.quantization import TorchInt8Classifier

    est, _, _, texts = teachers["bert"]
    fast = TorchInt8Classifier(est).fit()
    again = pickle.loads(pickle.dumps(fast))
    np.testing.assert_allclose(again.predict_logits(texts), fast.predict_logits(texts), rtol=0, atol=1e-6)
    assert teacher_fingerprint(fast) == teacher_fingerprint(again) != teacher_fingerprint(est)


def test_torch_int8_clone_keeps_the_fitted_estimator_and_takes_a_frozen_one(teachers):
    from sklearn.base import clone
    from sklearn.frozen import FrozenEstimator

    from kdtext.quantization import TorchInt8Classifier

    est, _, _, texts = teachers["bilstm"]
    fast = TorchInt8Classifier(est).fit()
    copy = clone(fast)
    assert copy.estimator is est and not hasattr(copy, "estimator_")  # shared, not refitted or unfitted
    np.testing.assert_array_equal(copy.fit().predict_logits(texts), fast.predict_logits(texts))
    frozen = TorchInt8Classifier(FrozenEstimator(est)).fit()
    np.testing.assert_array_equal(frozen.predict_logits(texts), fast.predict_logits(texts))


def test_torch_int8_refuses_what_it_cannot_quantize():
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import LogisticRegression

    from kdtext.quantization import TorchInt8Classifier

    with pytest.raises(TypeError, match="kdtext's neural estimators.*LogisticRegression"):
        TorchInt8Classifier(LogisticRegression()).fit()
    with pytest.raises(NotFittedError, match="not fitted yet: call fit before TorchInt8Classifier"):
        TorchInt8Classifier(BiLSTMClassifier()).fit()
    with pytest.raises(NotFittedError, match="call fit()"):
        TorchInt8Classifier(BiLSTMClassifier()).predict(["a"])


def test_int8_teacher_backends(teachers, tmp_path, monkeypatch):
    import kdtext.quantization as kq
    from kdtext.quantization import TorchInt8Classifier, int8_teacher

    est, _, _, texts = teachers["bilstm"]
    auto = int8_teacher(est, batch_size=16)
    assert isinstance(auto, OnnxClassifier) and auto.batch_size == 16 and auto.config_["quantization"] == "int8"
    assert not auto.path_.exists()  # the temporary folder is gone; the classifier holds the graph
    # int8 activations are quantized per batch, so compare at the same batch size
    same = OnnxClassifier.from_pretrained(teachers["bilstm"][2], batch_size=16)
    np.testing.assert_array_equal(auto.predict_logits(texts), same.predict_logits(texts))
    kept = int8_teacher(est, tmp_path / "kept", backend="onnxruntime")
    assert (tmp_path / "kept" / MODEL_NAME).is_file() and kept.path_ == (tmp_path / "kept").resolve()
    assert isinstance(int8_teacher(est, backend="torch"), TorchInt8Classifier)
    monkeypatch.setattr(kq, "_onnxruntime_available", lambda: False)
    assert isinstance(int8_teacher(est), TorchInt8Classifier)  # auto without onnxruntime
    with pytest.raises(ValueError, match=r"backend must be one of \['auto', 'onnxruntime', 'torch'\], got 'ort'"):
        int8_teacher(est, backend="ort")
    with pytest.raises(ValueError, match="torch backend takes no folder"):
        int8_teacher(est, backend="torch", batch_size=8)


@pytest.mark.parametrize("rescore_margin", [None, 0.3])
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_distillation_from_an_int8_teacher(backend, rescore_margin, teachers):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from kdtext import DistillationClassifier
    from kdtext.quantization import int8_teacher

    est, _, _, texts = teachers["bilstm"]
    fast = int8_teacher(est, backend=backend, rescore_margin=rescore_margin)
    unlabeled, _ = make_toy_texts(150, seed=9)
    kd = DistillationClassifier(fast, make_pipeline(TfidfVectorizer(), LogisticRegression())).fit(unlabeled)
    agree = np.mean(kd.predict(texts) == est.predict(texts))
    assert agree >= 0.9, agree


class _Spy:
    """Counts the texts a classifier is asked to label (to see what MarginFallbackClassifier re-labels)."""

    def __init__(self, model):
        self.model, self.seen = model, []
        self.classes_ = model.classes_

    def predict_logits(self, X):
        self.seen.extend(X)
        return self.model.predict_logits(X)


@pytest.mark.parametrize("kind", ["bert", "bilstm"])
def test_margin_fallback_relabels_exactly_the_unsure_texts(kind, teachers):
    from kdtext.quantization import MarginFallbackClassifier, _top_two_margin

    est, _, int8, texts = teachers[kind]
    fast = OnnxClassifier.from_pretrained(int8)
    F, E = fast.predict_logits(texts), est.predict_logits(texts)
    margin = float(np.quantile(_top_two_margin(F), 0.3))  # about 30% of the texts are "unsure"
    exact = _Spy(est)
    got = MarginFallbackClassifier(fast, exact, margin=margin).fit().predict_logits(texts)
    unsure = _top_two_margin(F) < margin
    assert 0 < unsure.sum() < len(texts)
    assert exact.seen == [t for t, u in zip(texts, unsure) if u]  # only those, in order, once each
    np.testing.assert_allclose(got[unsure], E[unsure], atol=1e-5)  # torch fp32 on a subset: the same logits
    np.testing.assert_array_equal(got[~unsure], F[~unsure])
    assert np.mean(got.argmax(1) == E.argmax(1)) >= np.mean(F.argmax(1) == E.argmax(1))
    # the two ends: 0 never asks exact, 1 is exact everywhere
    never = _Spy(est)
    np.testing.assert_array_equal(MarginFallbackClassifier(fast, never, margin=0.0).fit().predict_logits(texts), F)
    assert never.seen == []
    np.testing.assert_allclose(MarginFallbackClassifier(fast, est, margin=1.0).fit().predict_logits(texts), E,
                               atol=1e-5)


def test_top_two_margin():
    from kdtext.quantization import _top_two_margin

    binary = np.array([[0.0, 0.0], [np.log(3.0), 0.0], [0.0, np.log(3.0)]], dtype=np.float32)
    np.testing.assert_allclose(_top_two_margin(binary), [0.0, 0.5, 0.5], atol=1e-6)
    three = np.array([[5.0, 1.0, 5.0], [0.0, np.log(2.0), np.log(5.0)]], dtype=np.float32)
    np.testing.assert_allclose(_top_two_margin(three), [0.0, (5 - 2) / 8], atol=1e-6)


def test_margin_fallback_refuses_what_it_cannot_use(teachers):
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import LogisticRegression

    from kdtext.quantization import MarginFallbackClassifier, TorchInt8Classifier

    est, _, int8, _ = teachers["bilstm"]
    fast = OnnxClassifier.from_pretrained(int8)
    with pytest.raises(ValueError, match=r"'margin' parameter .* range \[0.0, 1.0\]. Got 1.5"):
        MarginFallbackClassifier(fast, est, margin=1.5).fit()
    with pytest.raises(TypeError, match="exact must have predict_logits .* got LogisticRegression"):
        MarginFallbackClassifier(fast, LogisticRegression()).fit()
    with pytest.raises(NotFittedError, match="fast \\(TorchInt8Classifier\\) is not fitted"):
        MarginFallbackClassifier(TorchInt8Classifier(est), est).fit()

    class ThreeClasses:
        classes_ = np.array([0, 1, 2])

        def predict_logits(self, X):  # pragma: no cover - never called
            raise AssertionError

    with pytest.raises(ValueError, match=r"same classes in the same order, got \[0, 1\] and \[0, 1, 2\]"):
        MarginFallbackClassifier(fast, ThreeClasses()).fit()
    with pytest.raises(NotFittedError):
        MarginFallbackClassifier(fast, est).predict(["a"])


def test_int8_teacher_with_rescore_margin(teachers):
    import pickle

    from sklearn.base import clone

    from kdtext.distillation import teacher_fingerprint
    from kdtext.quantization import MarginFallbackClassifier, TorchInt8Classifier, int8_teacher

    est, _, _, texts = teachers["bilstm"]
    careful = int8_teacher(est, rescore_margin=0.3, batch_size=16)
    assert isinstance(careful, MarginFallbackClassifier) and careful.exact is est and careful.margin == 0.3
    assert isinstance(careful.fast, OnnxClassifier) and careful.fast.batch_size == 16
    torch_backed = int8_teacher(est, backend="torch", rescore_margin=0.3)
    assert isinstance(torch_backed.fast, TorchInt8Classifier) and torch_backed.exact is est
    # its own cache key: not the int8 graph's, and not the same for another margin
    keys = {teacher_fingerprint(careful), teacher_fingerprint(careful.fast),
            teacher_fingerprint(clone(careful).set_params(margin=0.1).fit())}
    assert len(keys) == 3
    assert teacher_fingerprint(pickle.loads(pickle.dumps(careful))) == teacher_fingerprint(careful)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(careful)).predict_logits(texts),
                                  careful.predict_logits(texts))
    assert clone(careful).fast is careful.fast and clone(careful).exact is est
    with pytest.raises(ValueError, match="'margin' parameter"):
        int8_teacher(est, rescore_margin=-0.1)


def test_margin_one_relabels_even_a_certain_text():
    """A logit gap above ~37 rounds the probability margin to exactly 1.0: margin=1 still re-labels it."""
    from kdtext.quantization import MarginFallbackClassifier

    class Fixed:
        classes_ = np.array([0, 1])

        def __init__(self, logits):
            self.logits, self.calls = np.asarray(logits, dtype=np.float32), 0

        def predict_logits(self, X):
            self.calls += 1
            return self.logits[: len(X)]

    exact = Fixed([[1.0, 2.0], [3.0, 4.0]])
    got = MarginFallbackClassifier(Fixed([[50.0, 0.0], [0.0, 0.0]]), exact, margin=1.0).fit().predict_logits(["a", "b"])
    np.testing.assert_array_equal(got, exact.logits)
    half = MarginFallbackClassifier(Fixed([[50.0, 0.0], [0.0, 0.0]]), Fixed([[7.0, 8.0]]), margin=0.5).fit()
    np.testing.assert_array_equal(half.predict_logits(["a", "b"]), [[50.0, 0.0], [7.0, 8.0]])
