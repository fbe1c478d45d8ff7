"""shrink_transformer: a shallower transformer initialised from a deeper one (DistilBERT / TinyBERT style)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from kdtext import DistillationClassifier, TransformerClassifier, shrink_transformer
from kdtext.exceptions import ModelNotFoundError
from kdtext.shrink import select_layers

from conftest import make_toy_texts


@pytest.fixture(scope="module")
def teacher(deep_bert_path):
    X, y = make_toy_texts(120, seed=0)
    return TransformerClassifier(
        deep_bert_path, epochs=8, batch_size=8, learning_rate=1e-3, validation_fraction=None, random_state=0
    ).fit(X, y)


def _weights(path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(path).state_dict()


@pytest.mark.parametrize(
    "n, layers, expected",
    [(6, None, [0, 2, 4]), (12, None, [0, 2, 4, 6, 8, 10]), (6, 3, [1, 3, 5]), (12, 6, [1, 3, 5, 7, 9, 11]),
     (4, 1, [3]), (4, 4, [0, 1, 2, 3]), (6, [0, 5], [0, 5]), (6, (2,), [2])],
)
def test_select_layers(n, layers, expected):
    assert select_layers(n, layers) == expected


@pytest.mark.parametrize(
    "layers, error, match",
    [(0, ValueError, "between 1"), (7, ValueError, "between 1"), ([], ValueError, "non-empty"),
     ([0, 6], ValueError, "outside"), ([3, 1], ValueError, "increasing"), ([1, 1], ValueError, "increasing"),
     ("0,2", TypeError, "sequence"), ([0.5], ValueError, "ints"), (True, TypeError, "sequence")],
)
def test_select_layers_rejects_bad_choices(layers, error, match):
    with pytest.raises(error, match=match):
        select_layers(6, layers)


def test_fitted_teacher_every_other_layer(teacher, tmp_path):
    before = torch.random.get_rng_state()
    folder = shrink_transformer(teacher, tmp_path / "student")
    assert torch.equal(torch.random.get_rng_state(), before)  # the user's RNG is untouched
    student, source = _weights(folder), teacher.model_.state_dict()
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    assert config["kdtext_shrunk_from"]["kept_layers"] == [0, 2]
    # embeddings, head and the kept layers are the teacher's, renumbered
    for key in ("bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight", "classifier.weight"):
        assert torch.equal(student[key], source[key])
    for new, old in enumerate([0, 2]):
        for name in ("attention.self.query.weight", "output.dense.bias", "output.LayerNorm.weight"):
            assert torch.equal(
                student[f"bert.encoder.layer.{new}.{name}"], source[f"bert.encoder.layer.{old}.{name}"]
            )
    assert not any(k.startswith("bert.encoder.layer.2.") for k in student)


def test_model_folder_uniform_layers(deep_bert_path, tmp_path):
    from transformers import AutoModel

    folder = shrink_transformer(deep_bert_path, tmp_path / "s", layers=2)  # TinyBERT mapping: layers 1 and 3
    student, source = AutoModel.from_pretrained(folder).state_dict(), AutoModel.from_pretrained(deep_bert_path).state_dict()
    assert torch.equal(student["encoder.layer.0.attention.self.key.weight"], source["encoder.layer.1.attention.self.key.weight"])
    assert torch.equal(student["encoder.layer.1.intermediate.dense.weight"], source["encoder.layer.3.intermediate.dense.weight"])


def test_shrunk_student_loads_and_distils(teacher, tmp_path):
    """The shrunk student loads through TransformerClassifier and learns the task from the teacher alone."""
    folder = shrink_transformer(teacher, tmp_path / "student", layers=[0, 3])
    X, y = make_toy_texts(120, seed=0)
    X_test, y_test = make_toy_texts(60, seed=1)
    student = TransformerClassifier(
        folder, epochs=4, batch_size=8, learning_rate=1e-3, validation_fraction=None, random_state=0
    )
    kd = DistillationClassifier(teacher, student, loss="mse").fit(X, np.full(len(X), -1))
    assert kd.score(X_test, y_test) >= 0.9
    assert kd.student_.model_.config.num_hidden_layers == 2
    assert kd.fidelity_ >= 0.9


def test_bad_sources_are_clear(deep_bert_path, tmp_path):
    with pytest.raises(NotFittedError):
        shrink_transformer(TransformerClassifier(deep_bert_path), tmp_path / "x")
    with pytest.raises(ModelNotFoundError, match="not a folder that exists"):
        shrink_transformer(tmp_path / "missing", tmp_path / "x")
    with pytest.raises(TypeError, match="fitted TransformerClassifier or a model folder"):
        shrink_transformer(42, tmp_path / "x")
    with pytest.raises(ValueError, match="between 1"):
        shrink_transformer(deep_bert_path, tmp_path / "x", layers=5)
    assert not (tmp_path / "x").exists()  # nothing written on error


@pytest.mark.parametrize("arch", ["distilbert", "roberta", "electra"])
def test_other_encoder_families(arch, tiny_bert_path, tmp_path):
    """The layer stack is found by shape, so other encoders shrink too (tiny random models, real save/load)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    sizes = dict(vocab_size=120, hidden_size=32, num_attention_heads=4, intermediate_size=37, max_position_embeddings=64)
    if arch == "distilbert":
        config = AutoConfig.for_model(arch, vocab_size=120, dim=32, n_heads=4, hidden_dim=37, n_layers=4,
                                      max_position_embeddings=64)
    else:
        config = AutoConfig.for_model(arch, num_hidden_layers=4, **sizes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        AutoModel.from_config(config).save_pretrained(tmp_path / "src")
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(tmp_path / "src")
    folder = shrink_transformer(tmp_path / "src", tmp_path / "dst")
    source, student = AutoModel.from_pretrained(tmp_path / "src"), AutoModel.from_pretrained(folder)
    assert student.config.num_hidden_layers == 2
    kept = [k for k in student.state_dict() if ".1." in k and "layer" in k]
    assert kept and all(
        torch.equal(student.state_dict()[k], source.state_dict()[k.replace(".1.", ".2.", 1)]) for k in kept
    )


# ------------------------------------------------------------ reduced vocabulary
def _logits(folder, texts):
    """The folder's logits computed by hand with transformers, pooled as its ``1_Pooling`` config says."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kdtext.teachers import _head_logits, sentence_transformers_pooling

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        if sentence_transformers_pooling(folder) == "cls":
            return model(**batch).logits.numpy(), tok
        hidden = model.base_model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return _head_logits(model, (hidden * mask).sum(1) / mask.sum(1)).numpy(), tok


def test_reduced_vocabulary_keeps_the_model_exact_on_its_texts(teacher, tmp_path):
    """WordPiece: the texts' pieces keep their embedding rows, so the full-depth copy computes the same logits."""
    from transformers import AutoTokenizer

    X, _ = make_toy_texts(60, seed=4)
    folder = shrink_transformer(teacher, tmp_path / "small", layers=4, texts=X)
    config = json.loads((tmp_path / "small" / "config.json").read_text())
    source_vocab = teacher.model_.config.vocab_size
    assert config["vocab_size"] < source_vocab
    assert config["kdtext_shrunk_from"]["vocab_size"] == config["vocab_size"]
    assert config["kdtext_shrunk_from"]["source_vocab_size"] == source_vocab
    logits, tok = _logits(folder, X)
    np.testing.assert_allclose(logits, teacher.predict_logits(X), atol=1e-5)
    assert len(tok) == config["vocab_size"]
    source_tok = AutoTokenizer.from_pretrained(teacher.model)
    assert all(tok.tokenize(t) == source_tok.tokenize(t) for t in X)
    assert tok.pad_token_id == config["pad_token_id"] == 0
    # a word the texts never used splits into characters, never into [UNK]
    unseen = tok.tokenize("horrible lovely")
    assert tok.unk_token not in unseen and "".join(p.replace("##", "") for p in unseen) == "horriblelovely"
    # the shrunk student trains and predicts like any model folder
    X_fit, y_fit = make_toy_texts(120, seed=0)
    student = TransformerClassifier(folder, epochs=1, batch_size=16, validation_fraction=None, random_state=0)
    assert student.fit(X_fit, y_fit).predict(X[:5]).shape == (5,)


def test_min_frequency_keeps_fewer_pieces(deep_bert_path, tmp_path):
    X, _ = make_toy_texts(60, seed=4)
    sizes = [
        json.loads((Path(shrink_transformer(deep_bert_path, tmp_path / str(m), texts=X, min_frequency=m))
                    / "config.json").read_text())["vocab_size"]
        for m in (1, 10)
    ]
    assert sizes[1] < sizes[0]


def _unigram_folder(path, texts):
    """A tiny XLM-R with a Unigram (SentencePiece-style) tokenizer trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=150, special_tokens=specials, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", cls_token="<s>", sep_token="</s>")
    config = XLMRobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=37, max_position_embeddings=80,
                              pad_token_id=1, bos_token_id=0, eos_token_id=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        XLMRobertaModel(config).save_pretrained(path)
    fast.save_pretrained(path)
    return str(path)


def test_reduced_unigram_vocabulary(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    corpus, _ = make_toy_texts(200, seed=0, n_classes=3)
    source = _unigram_folder(tmp_path / "src", corpus + ["zebra quartz jukebox"])
    X = [t for t in corpus if "mediocre" not in t][:50]
    folder = shrink_transformer(source, tmp_path / "dst", layers=2, texts=X)
    src_tok, dst_tok = AutoTokenizer.from_pretrained(source), AutoTokenizer.from_pretrained(folder)
    assert len(dst_tok) < len(src_tok)
    assert all(dst_tok.tokenize(t) == src_tok.tokenize(t) for t in X)
    assert dst_tok.pad_token_id == AutoModel.from_pretrained(folder).config.pad_token_id
    a, b = src_tok(X, padding=True, return_tensors="pt"), dst_tok(X, padding=True, return_tensors="pt")
    assert torch.equal(a["attention_mask"], b["attention_mask"])
    with torch.no_grad():
        out_a = AutoModel.from_pretrained(source).eval()(**a).last_hidden_state
        out_b = AutoModel.from_pretrained(folder).eval()(**b).last_hidden_state
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=1e-5)
    assert dst_tok.unk_token not in dst_tok.tokenize("mediocre")  # pieces dropped, characters kept


def test_vocabulary_reduction_rejects_bpe_and_bad_arguments(deep_bert_path, tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(vocab={"<unk>": 0, "a": 1, "b": 2, "ab": 3}, merges=[("a", "b")], unk_token="<unk>"))
    config = AutoConfig.for_model("roberta", vocab_size=4, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=37, max_position_embeddings=64,
                                  pad_token_id=0)
    AutoModel.from_config(config).save_pretrained(tmp_path / "bpe")
    PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", pad_token="<unk>").save_pretrained(tmp_path / "bpe")
    with pytest.raises(ValueError, match="WordPiece .* and Unigram .* this one is BPE"):
        shrink_transformer(tmp_path / "bpe", tmp_path / "x", texts=["ab"])
    with pytest.raises(TypeError, match="texts"):
        shrink_transformer(deep_bert_path, tmp_path / "x", texts="one bare string")
    with pytest.raises(ValueError, match="min_frequency"):
        shrink_transformer(deep_bert_path, tmp_path / "x", texts=["good film"], min_frequency=0)
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------ output folder and text checks
def _folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def test_refuses_to_write_over_its_source_folder(deep_bert_path, tmp_path, monkeypatch):
    import kdtext.shrink as shrink

    before = _folder_bytes(deep_bert_path)
    loads = []
    monkeypatch.setattr(shrink, "_load_source", lambda *a: loads.append(a) or pytest.fail("loaded the source"))
    link = tmp_path / "link-to-source"
    link.symlink_to(deep_bert_path, target_is_directory=True)
    same_folder = [
        deep_bert_path,
        Path(deep_bert_path),
        deep_bert_path + "/",
        str(Path(deep_bert_path) / ".." / Path(deep_bert_path).name),
        link,  # a symlink resolving to the source
    ]
    for out in same_folder:
        with pytest.raises(ValueError, match="source model's own folder") as info:
            shrink_transformer(deep_bert_path, out, layers=2, texts=["good film"])
        message = str(info.value)
        assert repr(os.fspath(out)) in message and repr(deep_bert_path) in message
        assert "Choose another output folder" in message
    # the symlinked source refused too, the other way round
    with pytest.raises(ValueError, match="source model's own folder"):
        shrink_transformer(link, deep_bert_path)
    assert not loads  # refused before any work
    assert _folder_bytes(deep_bert_path) == before


def test_refuses_a_classifiers_model_folder(deep_bert_path):
    """A TransformerClassifier's ``model`` folder is its source folder too; refused before the fitted check."""
    with pytest.raises(ValueError, match="source model's own folder"):
        shrink_transformer(TransformerClassifier(deep_bert_path), deep_bert_path)


def test_output_folder_inside_the_source_leaves_it_intact(deep_bert_path, tmp_path):
    import shutil

    source = tmp_path / "src"
    shutil.copytree(deep_bert_path, source)
    before = _folder_bytes(source)
    folder = shrink_transformer(source, source / "shrunk", layers=2, texts=["good film"])
    assert Path(folder) == source / "shrunk" and (source / "shrunk" / "config.json").is_file()
    assert _folder_bytes(source) == before
    shrink_transformer(source / "shrunk", tmp_path, layers=1)  # the source inside the output folder
    assert _folder_bytes(source / "shrunk") == _folder_bytes(folder)


def test_reduced_vocabulary_accepts_lone_surrogates(deep_bert_path, tmp_path):
    """A text with a lone surrogate is read as with U+FFFD (kdtext.base.encodable_texts), not a crash."""
    texts = ["good film", "x \ud800 bad", "awful \udfff"]
    folder = shrink_transformer(deep_bert_path, tmp_path / "a", layers=2, texts=texts)
    replaced = shrink_transformer(
        deep_bert_path, tmp_path / "b", layers=2, texts=["good film", "x \ufffd bad", "awful \ufffd"]
    )
    assert (Path(folder) / "tokenizer.json").read_text() == (Path(replaced) / "tokenizer.json").read_text()
    config = json.loads((Path(folder) / "config.json").read_text())
    assert config["vocab_size"] == json.loads((Path(replaced) / "config.json").read_text())["vocab_size"]
    assert texts[1] == "x \ud800 bad"  # the caller's texts are not modified


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_the_student_folder_pools_as_its_source(deep_bert_path, tmp_path, pooling):
    """The head of a shrunk classifier keeps reading the vector it was trained on (pooling="auto" finds it)."""
    X, y = make_toy_texts(40, seed=0)
    source = TransformerClassifier(deep_bert_path, pooling=pooling, epochs=1, batch_size=8,
                                   validation_fraction=None, random_state=0).fit(X, y)
    folder = shrink_transformer(source, tmp_path / "small", layers=2)
    assert json.loads((tmp_path / "small" / "config.json").read_text())["kdtext_shrunk_from"]["pooling"] == pooling
    student = TransformerClassifier(folder, epochs=1, batch_size=8, validation_fraction=None, random_state=0)
    assert student.fit(X, y).pooling_ == pooling
    # a plain encoder folder (no sentence-transformers config): what pooling="auto" gives it, i.e. mean
    assert json.loads(
        (Path(shrink_transformer(deep_bert_path, tmp_path / "enc", layers=2)) / "1_Pooling" / "config.json").read_text()
    )["pooling_mode_mean_tokens"] is True
