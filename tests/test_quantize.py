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
