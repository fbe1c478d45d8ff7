"""ONNX export of the neural estimators and OnnxClassifier, on tiny models.

Every exported graph must give the estimator's own logits (fp32, within 1e-4)
on texts of very different lengths, for any batch and sequence size, with the
estimator's classes; OnnxClassifier must serve it without importing torch.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from sklearn.exceptions import NotFittedError  # noqa: E402

from kdtext import BiLSTMClassifier, OnnxClassifier, TransformerClassifier  # noqa: E402
from kdtext.base import encodable_texts  # noqa: E402
from kdtext.exceptions import ModelNotFoundError  # noqa: E402
from kdtext.onnx import MODEL_NAME, ONNX_CONFIG_NAME, TOKENIZER_NAME, export_onnx  # noqa: E402

from conftest import REPO, make_toy_texts  # noqa: E402

# very different lengths in one batch: empty, one word, past max_length, other scripts, a lone surrogate
MIXED = [
    "",
    "good",
    "The film was GREAT, the plot was great and the actor was great. " * 12,
    "awful",
    "a very boring story with a weak plot and poor music, the scene was dreadful",
    "Ünïcödé café — Привет 🙂 你好",
    "   ",
    "broken \ud800 text was bad",
    "lovely",
]

_BILSTM = dict(vocab_size=300, embedding_dim=16, hidden_dim=16, epochs=1, validation_fraction=None, random_state=0)
# name -> (factory(tiny_bert_path), labels as given to fit: None for ints, else names for the int labels)
CASES = {
    "bert_cls": (lambda p: TransformerClassifier(p, epochs=1, validation_fraction=None, random_state=0), None),
    "bert_mean": (lambda p: TransformerClassifier(p, pooling="mean", epochs=1, validation_fraction=None,
                                                  random_state=0), None),
    "bilstm": (lambda p: BiLSTMClassifier(**_BILSTM), None),
    # the "last" pooling branch, two layers, and truncation at 12 tokens; three str classes
    "bilstm_last": (lambda p: BiLSTMClassifier(pooling="last", num_layers=2, max_length=12, **_BILSTM),
                    np.array(["neg", "pos", "mid"])),
}


@pytest.fixture(scope="module")
def built(tiny_bert_path, tmp_path_factory):
    """name -> (fitted estimator, exported folder, its logits on MIXED before the export); built on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            factory, names = CASES[name]
            n_classes = 2 if names is None else len(names)
            X, y = make_toy_texts(60, seed=1, n_classes=n_classes)
            est = factory(tiny_bert_path).fit(X, y if names is None else names[y])
            before = est.predict_logits(MIXED)
            folder = est.export_onnx(tmp_path_factory.mktemp("onnx") / name)
            cache[name] = (est, folder, before)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(CASES))
def test_onnx_logits_match_torch_on_mixed_lengths(name, built):
    est, folder, before = built(name)
    clf = OnnxClassifier(folder).fit()
    got = clf.predict_logits(MIXED)
    want = est.predict_logits(MIXED)
    np.testing.assert_array_equal(want, before)  # exporting left the estimator as it was
    assert got.dtype == np.float32 and got.shape == (len(MIXED), len(est.classes_))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(clf.predict(MIXED), est.predict(MIXED))
    np.testing.assert_allclose(clf.predict_proba(MIXED), est.predict_proba(MIXED), rtol=0, atol=1e-5)
    np.testing.assert_allclose(clf.decision_function(MIXED), est.decision_function(MIXED), rtol=0, atol=1e-4)
    y = est.predict(MIXED)
    assert clf.score(MIXED, y) == 1.0


@pytest.mark.parametrize("name", list(CASES))
def test_padding_does_not_change_results(name, built):
    """Each text alone (no padding) and all in one batch padded to the longest give the same logits."""
    _, folder, _ = built(name)
    alone = OnnxClassifier(folder, batch_size=1).fit().predict_logits(MIXED)
    together = OnnxClassifier(folder, batch_size=len(MIXED)).fit().predict_logits(MIXED)
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["bert_cls", "bert_mean", "bilstm_last"])
@pytest.mark.parametrize("batch,seq", [(1, 1), (1, 9), (7, 3), (7, 40)])
def test_dynamic_batch_and_sequence_axes(name, batch, seq, built):
    """The graph runs at sizes other than the traced ones and agrees with torch there."""
    import onnxruntime as ort
    import torch

    est, folder, _ = built(name)
    config = json.loads((folder / ONNX_CONFIG_NAME).read_text())
    rng = np.random.default_rng(batch * 100 + seq)
    lengths = rng.integers(1, seq + 1, size=batch)
    lengths[0] = seq
    vocab = est.model_.config.vocab_size if hasattr(est.model_.config, "vocab_size") else est.model_.config["vocab_size"]
    ids = rng.integers(5, vocab, size=(batch, seq))
    ids[np.arange(seq)[None, :] >= lengths[:, None]] = config["pad_id"]
    batch_np = {"input_ids": ids, "lengths": lengths,
                "attention_mask": (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)}
    feeds = {k: batch_np[k].astype(np.int64) for k in config["inputs"]}
    session = ort.InferenceSession(str(folder / MODEL_NAME), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], feeds)[0]
    with torch.no_grad():
        want = est._forward({k: torch.as_tensor(v) for k, v in feeds.items()}).numpy()
    assert got.shape == (batch, len(est.classes_))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_a_second_lstm_export_in_one_process_keeps_dynamic_axes(built, tmp_path):
    """torch 2.13 froze the sequence length of every LSTM export after the first (see _forget_rnn_kernels)."""
    import onnx

    est, folder, _ = built("bilstm")
    again = est.export_onnx(tmp_path / "again")
    for f in (folder, again):
        graph = onnx.load(str(f / MODEL_NAME)).graph
        dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
        assert dims == [["batch", "sequence"], ["batch"]]


def test_config_describes_the_inputs(built):
    config = json.loads((built("bert_mean")[1] / ONNX_CONFIG_NAME).read_text())
    assert config["estimator"] == "TransformerClassifier"
    assert config["inputs"] == ["input_ids", "attention_mask"]
    assert config["max_length"] == 64  # max_length=128 capped at the tiny BERT's 64 positions
    assert config["add_special_tokens"] is True
    config = json.loads((built("bilstm_last")[1] / ONNX_CONFIG_NAME).read_text())
    assert config["inputs"] == ["input_ids", "lengths"]
    assert config["truncation"]["max_length"] == 12 and config["empty_as_pad"] is True
    assert config["classes"] == ["mid", "neg", "pos"] and config["kdtext_version"]


@pytest.mark.parametrize("name", list(CASES))
def test_tokenizer_reproduces_the_estimators_preprocessing(name, built):
    """Lower-casing, accents, special tokens, truncation and the lone-surrogate rule, as the estimator."""
    from kdtext.onnx import _encode

    est, folder, _ = built(name)
    clf = OnnxClassifier(folder).fit()
    texts = encodable_texts(MIXED + ["GOOD Film", "good film", "the [SEP] and [CLS] tokens", "Déjà VU", "\ud83d"])
    assert _encode(clf.tokenizer_, texts, clf.config_) == [list(s) for s in est._encode(texts)]


def test_int_and_str_classes_round_trip(built):
    est, folder, _ = built("bilstm")
    clf = OnnxClassifier(folder).fit()
    assert clf.classes_.dtype == est.classes_.dtype and clf.classes_.dtype.kind == "i"
    np.testing.assert_array_equal(clf.classes_, est.classes_)
    assert isinstance(clf.predict(["good"])[0], np.integer)
    assert clf.decision_function(MIXED).shape == (len(MIXED),)  # binary: one margin per text

    est, folder, _ = built("bilstm_last")
    clf = OnnxClassifier(folder).fit()
    assert clf.classes_.dtype == est.classes_.dtype and clf.classes_.dtype.kind == "U"
    np.testing.assert_array_equal(clf.classes_, ["mid", "neg", "pos"])
    assert set(clf.predict(MIXED).tolist()) <= {"mid", "neg", "pos"}
    assert clf.decision_function(MIXED).shape == (len(MIXED), 3)


_TORCH_FREE = r"""
import json, sys
tried = []
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            tried.append(name)
            raise ImportError("blocked: " + name)
        return None
sys.meta_path.insert(0, Block())
import pickle
from kdtext import OnnxClassifier
clf = OnnxClassifier.from_pretrained(sys.argv[1])
texts = json.loads(sys.argv[2])
pred = clf.predict(texts).tolist()
again = pickle.loads(pickle.dumps(clf)).predict(texts).tolist()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
print(json.dumps({"pred": pred, "again": again, "tried": tried, "loaded": loaded,
                  "logits": clf.predict_logits(texts).tolist()}))
"""


@pytest.mark.parametrize("name", ["bert_mean", "bilstm_last"])
def test_serving_needs_no_torch_nor_transformers(name, built):
    est, folder, _ = built(name)
    texts = [t for t in MIXED if "\ud800" not in t]  # JSON on the command line cannot carry a lone surrogate
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _TORCH_FREE, str(folder), json.dumps(texts)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["tried"] == [] and out["loaded"] == []
    assert out["pred"] == out["again"] == est.predict(texts).tolist()
    np.testing.assert_allclose(out["logits"], est.predict_logits(texts), rtol=0, atol=1e-4)


def test_import_kdtext_onnx_imports_no_torch():
    code = ("import sys, kdtext.onnx, kdtext; kdtext.OnnxClassifier; "
            "print([m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules])")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=REPO)
    assert out.stdout.split() == ["[]"]


# ------------------------------------------------------------------------------------ pickling
def test_pickle_is_self_contained(built, tmp_path):
    est, folder, _ = built("bilstm")
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    clf = OnnxClassifier(copy, batch_size=3).fit()
    want = clf.predict_proba(MIXED)
    data = pickle.dumps(clf)
    shutil.rmtree(copy)  # the folder is gone: the pickle holds the model
    restored = pickle.loads(data)
    assert "session_" not in clf.__getstate__()
    np.testing.assert_array_equal(restored.predict_proba(MIXED), want)
    assert restored.batch_size == 3 and restored.classes_.dtype == clf.classes_.dtype


def test_pickle_keeps_the_special_token_rule(built, tmp_path):
    """tokenizers does not pickle encode_special_tokens; the config puts it back."""
    folder = tmp_path / "split"
    shutil.copytree(built("bert_cls")[1], folder)
    config = json.loads((folder / ONNX_CONFIG_NAME).read_text())
    config["split_special_tokens"] = True  # as exported from a tokenizer with split_special_tokens=True
    (folder / ONNX_CONFIG_NAME).write_text(json.dumps(config))
    clf = OnnxClassifier(folder).fit()
    text = ["good [SEP] film"]
    assert clf.tokenizer_.encode(text[0]).tokens.count("[SEP]") == 1  # the one the template adds
    restored = pickle.loads(pickle.dumps(clf))
    assert restored.tokenizer_.encode_special_tokens is True
    np.testing.assert_array_equal(restored.predict_logits(text), clf.predict_logits(text))


def test_from_pretrained_is_construct_and_fit(built):
    _, folder, _ = built("bilstm")
    clf = OnnxClassifier.from_pretrained(str(folder), batch_size=5, n_threads=1)
    assert clf.batch_size == 5 and clf.n_threads == 1 and clf.path_ == folder.resolve()
    np.testing.assert_array_equal(clf.predict_logits(MIXED), OnnxClassifier(folder).fit().predict_logits(MIXED))


def test_fit_ignores_X_and_y(built):
    _, folder, _ = built("bilstm")
    clf = OnnxClassifier(folder)
    assert clf.fit(["anything"], ["whatever"]) is clf
    np.testing.assert_array_equal(clf.classes_, [0, 1])


# ------------------------------------------------------------------------------- export errors
def test_export_refuses_an_unfitted_estimator(tmp_path):
    with pytest.raises(NotFittedError, match="fit"):
        BiLSTMClassifier().export_onnx(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_refuses_other_estimators(tmp_path):
    from sklearn.dummy import DummyClassifier

    with pytest.raises(TypeError, match="TransformerClassifier, BiLSTMClassifier"):
        export_onnx(DummyClassifier().fit([[0], [1]], [0, 1]), tmp_path / "out")


def test_export_refuses_a_file_and_a_foreign_folder(built, tmp_path):
    est = built("bilstm")[0]
    file = tmp_path / "file.onnx"
    file.write_text("not a folder")
    with pytest.raises(FileExistsError, match="is a file"):
        est.export_onnx(file)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        est.export_onnx(other)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.onnx", "other"]


def test_export_into_an_empty_folder_and_over_an_earlier_export(built, tmp_path):
    bilstm, transformer = built("bilstm")[0], built("bert_cls")[0]
    target = tmp_path / "out"
    target.mkdir()
    bilstm.export_onnx(target)
    assert json.loads((target / ONNX_CONFIG_NAME).read_text())["estimator"] == "BiLSTMClassifier"
    transformer.export_onnx(target)  # replaces the earlier export
    assert json.loads((target / ONNX_CONFIG_NAME).read_text())["estimator"] == "TransformerClassifier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary or old folders left
    np.testing.assert_allclose(OnnxClassifier(target).fit().predict_logits(MIXED), transformer.predict_logits(MIXED),
                               rtol=0, atol=1e-4)


def test_a_failed_export_leaves_no_folder_and_keeps_an_earlier_one(built, tmp_path, monkeypatch):
    import kdtext.onnx

    est, folder, _ = built("bilstm")
    earlier = tmp_path / "earlier"
    shutil.copytree(folder, earlier)
    files = {p.name: p.read_bytes() for p in earlier.iterdir()}

    def half_written(estimator, batch, file):
        file.write_bytes(b"half a graph")
        raise RuntimeError("simulated failure while exporting")

    def disagrees(*args, **kwargs):
        raise RuntimeError("simulated failure of the check")

    with monkeypatch.context() as m:
        m.setattr(kdtext.onnx, "_export_graph", half_written)
        with pytest.raises(RuntimeError, match="while exporting"):
            est.export_onnx(tmp_path / "new")
    monkeypatch.setattr(kdtext.onnx, "_check_export", disagrees)  # after the graph was written
    with pytest.raises(RuntimeError, match="of the check"):
        est.export_onnx(earlier)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == files


def test_export_refuses_a_tokenizer_that_differs_from_the_estimators(built, tmp_path, monkeypatch):
    est = built("bilstm")[0]
    tokenizer, rules = est._onnx_tokenizer()
    tokenizer.enable_truncation(3)  # the estimator truncates at 128 tokens
    monkeypatch.setattr(est, "_onnx_tokenizer", lambda: (tokenizer, rules))
    with pytest.raises(RuntimeError, match="does not reproduce"):
        est.export_onnx(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_graph_that_disagrees_with_torch(built, tmp_path, monkeypatch):
    import torch

    est = built("bilstm")[0]
    real = est._onnx_module

    class Shifted(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, lengths):
            return self.inner(input_ids, lengths) + 0.5

    monkeypatch.setattr(est, "_onnx_module", lambda names: Shifted(real(names)))
    with pytest.raises(RuntimeError, match="disagrees with torch"):
        est.export_onnx(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_export_without_onnxruntime_says_how_to_install(built, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r'kdtext\[onnx\]'):
        built("bilstm")[0].export_onnx(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ serving errors
def test_onnx_classifier_not_fitted():
    clf = OnnxClassifier("somewhere")
    for method in (clf.predict, clf.predict_proba, clf.predict_logits, clf.decision_function):
        with pytest.raises(NotFittedError, match=r"fit\(\)"):
            method(["text"])
    with pytest.raises(NotFittedError):
        clf.score(["text"], [0])


def test_onnx_classifier_missing_folder_and_files(built, tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a folder that exists"):
        OnnxClassifier(tmp_path / "nowhere").fit()
    folder = tmp_path / "copy"
    shutil.copytree(built("bilstm")[1], folder)
    for name in (MODEL_NAME, TOKENIZER_NAME, ONNX_CONFIG_NAME):
        (folder / name).rename(folder / (name + ".bak"))
        with pytest.raises(ModelNotFoundError, match=name.replace(".", r"\.")):
            OnnxClassifier(folder).fit()
        (folder / (name + ".bak")).rename(folder / name)
    OnnxClassifier(folder).fit()


@pytest.mark.parametrize("damage", ["config_json", "config_keys", "classes", "format", "model", "tokenizer",
                                    "inputs_mismatch"])
def test_onnx_classifier_damaged_files(damage, built, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(built("bilstm")[1], folder)
    cfg_file = folder / ONNX_CONFIG_NAME
    config = json.loads(cfg_file.read_text())
    if damage == "config_json":
        cfg_file.write_text(cfg_file.read_text()[:40])
        pattern = "not valid JSON"
    elif damage == "config_keys":
        del config["inputs"]
        cfg_file.write_text(json.dumps(config))
        pattern = "inputs"
    elif damage == "classes":
        config["classes"] = [1]
        cfg_file.write_text(json.dumps(config))
        pattern = "at least 2"
    elif damage == "format":
        config["format"] = 99
        cfg_file.write_text(json.dumps(config))
        pattern = "format 99"
    elif damage == "model":
        data = (folder / MODEL_NAME).read_bytes()
        (folder / MODEL_NAME).write_bytes(data[: len(data) // 3])
        pattern = "onnxruntime cannot load"
    elif damage == "tokenizer":
        (folder / TOKENIZER_NAME).write_text("{ not json")
        pattern = "tokenizer.json cannot be read"
    else:
        config["inputs"] = ["input_ids", "attention_mask"]
        cfg_file.write_text(json.dumps(config))
        pattern = "different exports"
    with pytest.raises(ModelNotFoundError, match=pattern):
        OnnxClassifier(folder).fit()


def test_onnx_classifier_without_onnxruntime_says_how_to_install(built, monkeypatch):
    folder = built("bilstm")[1]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r'pip install "kdtext\[onnx\]"'):
        OnnxClassifier(folder).fit()


def test_onnx_classifier_bad_parameters(built):
    from sklearn.utils._param_validation import InvalidParameterError

    folder = built("bilstm")[1]
    with pytest.raises(InvalidParameterError, match="batch_size"):
        OnnxClassifier(folder, batch_size=0).fit()
    with pytest.raises(ValueError, match="NoSuchExecutionProvider"):
        OnnxClassifier(folder, providers=["NoSuchExecutionProvider"]).fit()
    clf = OnnxClassifier(folder).fit()
    with pytest.raises(InvalidParameterError, match="batch_size"):
        clf.set_params(batch_size=-1).predict(["text"])  # read at every call
    with pytest.raises(TypeError, match="single str"):
        clf.set_params(batch_size=8).predict("one text")


def test_a_failed_fit_keeps_the_loaded_model(built, tmp_path):
    est, folder, _ = built("bilstm")
    clf = OnnxClassifier(folder).fit()
    want = clf.predict_logits(MIXED)
    with pytest.raises(ModelNotFoundError):
        clf.set_params(path=tmp_path / "nowhere").fit()
    np.testing.assert_array_equal(clf.predict_logits(MIXED), want)
