"""shrink_transformer's width reduction: hidden_size / num_attention_heads / intermediate_size slice the source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdtext import TransformerClassifier, shrink_transformer
from kdtext.shrink import _narrow_state, _width_plan, _width_targets

from conftest import make_toy_texts
from test_shrink import _logits


@pytest.fixture(scope="module")
def bert_path(tmp_path_factory, tiny_bert_path):
    """The tiny test BERT (hidden 32, 4 heads of 8, intermediate 37) with 3 layers."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("width-bert")
    config = BertConfig.from_pretrained(tiny_bert_path)
    config.num_hidden_layers = 3
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def bert_teacher(bert_path):
    X, y = make_toy_texts(60, seed=0)
    return TransformerClassifier(bert_path, epochs=1, batch_size=8, validation_fraction=None, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def xlmr_teacher(tmp_path_factory, tiny_bert_path):
    """A fitted tiny XLM-R classifier (RobertaClassificationHead: dense + out_proj)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = tmp_path_factory.mktemp("width-xlmr")
    config = AutoConfig.for_model("xlm-roberta", vocab_size=120, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=37, max_position_embeddings=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        AutoModel.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(path)
    X, y = make_toy_texts(60, seed=0)
    return TransformerClassifier(str(path), epochs=1, batch_size=8, validation_fraction=None, random_state=0).fit(X, y)


def _state(folder):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder).state_dict()


def _norms(t, axis):
    """Test oracle: L2 norm of every slice of ``t`` along ``axis``."""
    t = t.double()
    dims = [d for d in range(t.dim()) if d != axis]
    return t.pow(2).sum(dims).sqrt() if dims else t.abs()


def _top(scores, k):
    return sorted(np.argsort(-np.asarray(scores), kind="stable")[:k].tolist())


def _expected(state, prefix, layers, rule, hidden, heads, inter, src_heads=4, src_head=8):
    """Per kept layer: (qk rows, v rows, ffn units) the oracle expects, and the hidden dims; computed by hand."""
    H = state[f"{prefix}embeddings.word_embeddings.weight"].shape[1]
    new_head = hidden // heads
    if rule == "first":
        dims = list(range(hidden))
    else:  # every tensor with a hidden axis, as the docstring says: summed slice norms
        score = torch.zeros(H, dtype=torch.float64)
        for key, t in state.items():
            if "encoder.layer." in key and int(key.split("encoder.layer.")[1].split(".")[0]) not in layers:
                continue
            if "attention.self." in key:  # Q/K/V: only the weights' input columns are hidden dims
                axes = [1] if key.endswith("weight") else []
            elif "attention.output.dense.weight" in key:  # its input columns are V's
                axes = [0]
            else:  # embeddings tables (vocab x H), heads (n x H), square H x H, LayerNorms, FFN (F x H, H x F)
                axes = [a for a, n in enumerate(t.shape) if n == H]
            for axis in axes:
                score += _norms(t, axis)
        dims = _top(score, hidden)
    out = []
    for layer in layers:
        p = f"{prefix}encoder.layer.{layer}."
        q, k, v = (state[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value"))
        qb, kb, vb = (state[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value"))
        o = state[p + "attention.output.dense.weight"]
        qk_dim = _norms(q, 0) + _norms(k, 0) + qb.abs().double() + kb.abs().double()
        v_dim = _norms(v, 0) + vb.abs().double() + _norms(o, 1)
        if rule == "first":
            kept_heads = list(range(heads))
            qk = [h * src_head + d for h in kept_heads for d in range(new_head)]
            vv = list(qk)
            ffn = list(range(inter))
        else:
            kept_heads = _top((qk_dim + v_dim).view(src_heads, src_head).sum(1), heads)
            qk = [h * src_head + d for h in kept_heads for d in _top(qk_dim[h * src_head:(h + 1) * src_head], new_head)]
            vv = [h * src_head + d for h in kept_heads for d in _top(v_dim[h * src_head:(h + 1) * src_head], new_head)]
            i_w, i_b = state[p + "intermediate.dense.weight"], state[p + "intermediate.dense.bias"]
            ffn = _top(_norms(i_w, 0) + i_b.abs().double() + _norms(state[p + "output.dense.weight"], 1), inter)
        out.append((kept_heads, qk, vv, ffn))
    return dims, out


def _check_sliced(student, teacher, prefix, layers, dims, per_layer):
    """Every student tensor is the teacher's at the expected indices."""
    d = torch.as_tensor(dims)
    ix = lambda t, axis, idx: t.index_select(axis, torch.as_tensor(idx))  # noqa: E731
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        assert torch.equal(student[f"{prefix}embeddings.{name}.weight"], teacher[f"{prefix}embeddings.{name}.weight"][:, d])
    assert torch.equal(student[f"{prefix}embeddings.LayerNorm.weight"], teacher[f"{prefix}embeddings.LayerNorm.weight"][d])
    for new, (old, (_, qk, vv, ffn)) in enumerate(zip(layers, per_layer)):
        s, t = f"{prefix}encoder.layer.{new}.", f"{prefix}encoder.layer.{old}."
        for n, rows in (("query", qk), ("key", qk), ("value", vv)):
            assert torch.equal(student[s + f"attention.self.{n}.weight"], ix(teacher[t + f"attention.self.{n}.weight"], 0, rows)[:, d])
            assert torch.equal(student[s + f"attention.self.{n}.bias"], ix(teacher[t + f"attention.self.{n}.bias"], 0, rows))
        assert torch.equal(student[s + "attention.output.dense.weight"], ix(teacher[t + "attention.output.dense.weight"], 1, vv)[d])
        assert torch.equal(student[s + "attention.output.dense.bias"], teacher[t + "attention.output.dense.bias"][d])
        assert torch.equal(student[s + "attention.output.LayerNorm.bias"], teacher[t + "attention.output.LayerNorm.bias"][d])
        assert torch.equal(student[s + "intermediate.dense.weight"], ix(teacher[t + "intermediate.dense.weight"], 0, ffn)[:, d])
        assert torch.equal(student[s + "intermediate.dense.bias"], ix(teacher[t + "intermediate.dense.bias"], 0, ffn))
        assert torch.equal(student[s + "output.dense.weight"], ix(teacher[t + "output.dense.weight"], 1, ffn)[d])
        assert torch.equal(student[s + "output.LayerNorm.weight"], teacher[t + "output.LayerNorm.weight"][d])


@pytest.mark.parametrize("rule", ["first", "norm"])
@pytest.mark.parametrize("hidden, heads, inter", [(24, 3, 20), (16, 4, 11)])  # head size kept (8), then halved (4)
def test_bert_classifier_is_sliced_exactly(bert_teacher, tmp_path, rule, hidden, heads, inter):
    before = torch.random.get_rng_state()
    folder = shrink_transformer(bert_teacher, tmp_path / "s", layers=[0, 2], hidden_size=hidden,
                                num_attention_heads=heads, intermediate_size=inter, width_selection=rule)
    assert torch.equal(torch.random.get_rng_state(), before)  # the user's RNG is untouched
    teacher, student = bert_teacher.model_.state_dict(), _state(folder)
    dims, per_layer = _expected(teacher, "bert.", [0, 2], rule, hidden, heads, inter)
    config = json.loads((Path(folder) / "config.json").read_text())
    assert (config["hidden_size"], config["num_attention_heads"], config["intermediate_size"]) == (hidden, heads, inter)
    shrunk = config["kdtext_shrunk_from"]
    assert shrunk["hidden_dims"] == dims and shrunk["heads"] == [h for h, *_ in per_layer]
    assert (shrunk["source_hidden_size"], shrunk["source_num_attention_heads"], shrunk["source_intermediate_size"]) == (32, 4, 37)
    assert shrunk["width_selection"] == rule and shrunk["kept_layers"] == [0, 2]
    assert json.loads((Path(folder) / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"] == hidden
    _check_sliced(student, teacher, "bert.", [0, 2], dims, per_layer)
    d = torch.as_tensor(dims)
    assert torch.equal(student["bert.pooler.dense.weight"], teacher["bert.pooler.dense.weight"][d][:, d])
    assert torch.equal(student["classifier.weight"], teacher["classifier.weight"][:, d])
    assert torch.equal(student["classifier.bias"], teacher["classifier.bias"])
    if rule == "norm":
        assert dims != list(range(hidden))  # random weights: the norm rule is not the first-k rule in disguise


def test_xlmr_classifier_head_is_sliced(xlmr_teacher, tmp_path):
    folder = shrink_transformer(xlmr_teacher, tmp_path / "s", layers=2, hidden_size=16, num_attention_heads=2,
                                intermediate_size=9, width_selection="norm")
    teacher, student = xlmr_teacher.model_.state_dict(), _state(folder)
    dims, per_layer = _expected(teacher, "roberta.", [0, 1], "norm", 16, 2, 9)
    _check_sliced(student, teacher, "roberta.", [0, 1], dims, per_layer)
    d = torch.as_tensor(dims)
    assert torch.equal(student["classifier.dense.weight"], teacher["classifier.dense.weight"][d][:, d])
    assert torch.equal(student["classifier.dense.bias"], teacher["classifier.dense.bias"][d])
    assert torch.equal(student["classifier.out_proj.weight"], teacher["classifier.out_proj.weight"][:, d])
    X, y = make_toy_texts(40, seed=1)
    est = TransformerClassifier(folder, epochs=1, batch_size=8, validation_fraction=None, random_state=0).fit(X, y)
    assert est.predict(X[:4]).shape == (4,) and est.model_.config.hidden_size == 16


def test_masked_lm_head_is_sliced():
    """BertForMaskedLM: the transform dense / LayerNorm and the decoder's columns follow the kept hidden dims."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertForMaskedLM(config)
    state = model.state_dict()
    source = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 37}
    target = _width_targets(config, 24, 3, 20)
    plan = _width_plan(state, "bert.encoder.layer", 2, source, target, "norm")
    narrowed = _narrow_state(state, "bert.encoder.layer", plan)
    small = BertConfig(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20)
    BertForMaskedLM(small).load_state_dict(narrowed, strict=True)
    d = torch.as_tensor(plan["hidden"])
    assert torch.equal(narrowed["cls.predictions.transform.dense.weight"], state["cls.predictions.transform.dense.weight"][d][:, d])
    assert torch.equal(narrowed["cls.predictions.transform.LayerNorm.weight"], state["cls.predictions.transform.LayerNorm.weight"][d])
    assert torch.equal(narrowed["cls.predictions.decoder.weight"], state["cls.predictions.decoder.weight"][:, d])
    assert torch.equal(narrowed["cls.predictions.bias"], state["cls.predictions.bias"])


def _hand_set(tmp_path, boost):
    """A 2-layer BERT folder whose weights are tiny noise except where ``boost(state)`` makes them large."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=90, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                        max_position_embeddings=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(config)
        state = {k: torch.rand_like(v) * 1e-3 for k, v in model.state_dict().items()}
    boost(state)
    model.load_state_dict(state)
    model.save_pretrained(tmp_path / "src")
    return tmp_path / "src"


def test_norm_rule_picks_the_large_weights(tmp_path, tiny_bert_path):
    from transformers import AutoTokenizer

    dims = [1, 4, 5, 9, 12, 13, 20, 21, 22, 26, 27, 28, 29, 30, 31, 0]
    units = {0: [3, 8, 36], 1: [0, 17, 18]}
    heads = {0: [1, 3], 1: [0, 2]}

    def boost(state):
        state["embeddings.word_embeddings.weight"][:, dims] = 1.0
        for layer in (0, 1):
            p = f"encoder.layer.{layer}."
            state[p + "intermediate.dense.weight"][units[layer]] = 0.5
            for h in heads[layer]:
                state[p + "attention.self.value.weight"][h * 8:(h + 1) * 8] = 0.5

    src = _hand_set(tmp_path, boost)
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(src)
    folder = shrink_transformer(src, tmp_path / "s", layers=2, hidden_size=16, num_attention_heads=2,
                                intermediate_size=3, width_selection="norm")
    shrunk = json.loads((Path(folder) / "config.json").read_text())["kdtext_shrunk_from"]
    assert shrunk["hidden_dims"] == sorted(dims)
    assert shrunk["heads"] == [heads[0], heads[1]]
    from transformers import AutoModel

    student, teacher = AutoModel.from_pretrained(folder).state_dict(), AutoModel.from_pretrained(src).state_dict()
    for layer in (0, 1):
        sliced = teacher[f"encoder.layer.{layer}.intermediate.dense.bias"][units[layer]]
        assert torch.equal(student[f"encoder.layer.{layer}.intermediate.dense.bias"], sliced)


def test_norm_rule_within_a_head(tmp_path, tiny_bert_path):
    """A smaller head keeps the Q/K dims with the largest Q and K rows (the same for both) and its own V dims."""
    from transformers import AutoModel, AutoTokenizer

    qk_dims, v_dims = [0, 3, 5, 6], [1, 2, 4, 7]

    def boost(state):
        for h in range(4):
            state["encoder.layer.0.attention.self.key.weight"][[h * 8 + d for d in qk_dims]] = 0.5
            state["encoder.layer.0.attention.output.dense.weight"][:, [h * 8 + d for d in v_dims]] = 0.5

    src = _hand_set(tmp_path, boost)
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(src)
    folder = shrink_transformer(src, tmp_path / "s", layers=2, hidden_size=16, num_attention_heads=4,
                                width_selection="norm")
    student, teacher = AutoModel.from_pretrained(folder).state_dict(), AutoModel.from_pretrained(src).state_dict()
    qk_rows = [h * 8 + d for h in range(4) for d in qk_dims]
    v_rows = [h * 8 + d for h in range(4) for d in v_dims]
    p = "encoder.layer.0.attention."
    assert torch.equal(student[p + "self.query.bias"], teacher[p + "self.query.bias"][qk_rows])
    assert torch.equal(student[p + "self.key.bias"], teacher[p + "self.key.bias"][qk_rows])
    assert torch.equal(student[p + "self.value.bias"], teacher[p + "self.value.bias"][v_rows])
    assert AutoModel.from_pretrained(folder).config.intermediate_size == 37


@pytest.mark.parametrize("rule", ["first", "norm"])
def test_nothing_narrowed_keeps_the_outputs(bert_teacher, tmp_path, rule):
    X, _ = make_toy_texts(20, seed=5)
    folder = shrink_transformer(bert_teacher, tmp_path / "s", layers=3, hidden_size=32, num_attention_heads=4,
                                intermediate_size=37, width_selection=rule)
    logits, _ = _logits(folder, X)
    np.testing.assert_allclose(logits, bert_teacher.predict_logits(X), atol=1e-5)
    assert json.loads((Path(folder) / "config.json").read_text())["kdtext_shrunk_from"]["hidden_dims"] == list(range(32))


def test_narrow_student_trains_saves_and_loads(bert_path, tmp_path):
    """Layers, vocabulary and width in one call; the folder fits, predicts and survives a save/load round trip."""
    X, y = make_toy_texts(120, seed=0)
    folder = shrink_transformer(bert_path, tmp_path / "s", layers=2, texts=X, hidden_size=16,
                                num_attention_heads=2, intermediate_size=24, width_selection="norm")
    config = json.loads((Path(folder) / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and config["vocab_size"] < 90 and config["hidden_size"] == 16
    est = TransformerClassifier(folder, epochs=6, batch_size=8, learning_rate=1e-3, validation_fraction=None,
                                random_state=0).fit(X, y)
    X_test, y_test = make_toy_texts(40, seed=2)
    assert est.score(X_test, y_test) >= 0.8
    saved = est.save_pretrained(tmp_path / "saved")
    again = TransformerClassifier.from_pretrained(saved)
    np.testing.assert_allclose(again.predict_proba(X_test), est.predict_proba(X_test), atol=1e-6)
    assert again.model_.config.kdtext_shrunk_from["hidden_dims"] == config["kdtext_shrunk_from"]["hidden_dims"]


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(hidden_size=40), "hidden_size=40 is larger than the source's 32"),
     (dict(intermediate_size=38), "intermediate_size=38 is larger than the source's 37"),
     (dict(num_attention_heads=5), "num_attention_heads=5 is larger than the source's 4"),
     (dict(hidden_size=30), "hidden_size=30 is not divisible by num_attention_heads=4.*num_attention_heads=5"),
     (dict(hidden_size=20, num_attention_heads=3), "hidden_size=20 is not divisible by num_attention_heads=3.*=4"),
     (dict(hidden_size=32, num_attention_heads=2), "heads of 16 dimensions, larger than the source's 8"),
     (dict(num_attention_heads=2), "heads of 16 dimensions"),
     (dict(hidden_size=True), "hidden_size must be None or an int >= 1, got True"),
     (dict(hidden_size=16.0), "hidden_size must be None or an int >= 1, got 16.0"),
     (dict(intermediate_size=-3), "intermediate_size must be None or an int >= 1, got -3"),
     (dict(num_attention_heads=0), "num_attention_heads must be None or an int >= 1, got 0"),
     (dict(hidden_size=16, num_attention_heads=2, width_selection="largest"), "width_selection must be one of")],
)
def test_refusals_are_clear_and_write_nothing(bert_path, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        shrink_transformer(bert_path, tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("arch, embedding_size", [("electra", 16), ("electra", 32), ("mpnet", None)])
def test_unsupported_layouts_are_refused(arch, embedding_size, tiny_bert_path, tmp_path):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    extra = {} if embedding_size is None else {"embedding_size": embedding_size}
    config = AutoConfig.for_model(arch, vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=37, max_position_embeddings=64, **extra)
    AutoModel.from_config(config).save_pretrained(tmp_path / "src")
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(tmp_path / "src")
    with pytest.raises(ValueError, match=f"supports .*bert, roberta, xlm-roberta, camembert, distilbert.*model_type='{arch}'"):
        shrink_transformer(tmp_path / "src", tmp_path / "x", hidden_size=16, num_attention_heads=2)
    assert not (tmp_path / "x").exists()
    shrink_transformer(tmp_path / "src", tmp_path / "layers-only", layers=1)  # depth alone still works


def test_electra_style_projection_is_refused():
    from transformers import BertConfig

    config = BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=37)
    config.embedding_size = 16
    with pytest.raises(ValueError, match="ELECTRA style"):
        _width_targets(config, 16, 2, None)


def test_distilbert_classifier_is_sliced(tiny_bert_path, tmp_path):
    """DistilBERT's own names (q_lin, ffn.lin1, pre_classifier, dim / n_heads / hidden_dim) are sliced the same way."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.for_model("distilbert", vocab_size=120, dim=32, n_heads=4, hidden_dim=37, n_layers=2,
                                  max_position_embeddings=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        AutoModel.from_config(config).save_pretrained(tmp_path / "src")
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(tmp_path / "src")
    X, y = make_toy_texts(60, seed=0)
    teacher = TransformerClassifier(str(tmp_path / "src"), epochs=1, batch_size=8, validation_fraction=None,
                                    random_state=0).fit(X, y)
    same = shrink_transformer(teacher, tmp_path / "same", layers=2, hidden_size=32, width_selection="norm")
    np.testing.assert_allclose(_logits(same, X[:8])[0], teacher.predict_logits(X[:8]), atol=1e-5)
    folder = shrink_transformer(teacher, tmp_path / "s", layers=2, hidden_size=16, num_attention_heads=2,
                                intermediate_size=9)
    written = json.loads((Path(folder) / "config.json").read_text())
    assert (written["dim"], written["n_heads"], written["hidden_dim"]) == (16, 2, 9)
    assert written["kdtext_shrunk_from"]["source_intermediate_size"] == 37
    student, source = _state(folder), teacher.model_.state_dict()
    p = "distilbert.transformer.layer.1."
    assert torch.equal(student[p + "attention.q_lin.weight"], source[p + "attention.q_lin.weight"][:16, :16])
    assert torch.equal(student[p + "attention.out_lin.weight"], source[p + "attention.out_lin.weight"][:16, :16])
    assert torch.equal(student[p + "ffn.lin2.weight"], source[p + "ffn.lin2.weight"][:16, :9])
    assert torch.equal(student["pre_classifier.weight"], source["pre_classifier.weight"][:16, :16])
    assert torch.equal(student["classifier.weight"], source["classifier.weight"][:, :16])
    est = TransformerClassifier(folder, epochs=1, batch_size=8, validation_fraction=None, random_state=0).fit(X, y)
    assert est.predict(X[:3]).shape == (3,)
