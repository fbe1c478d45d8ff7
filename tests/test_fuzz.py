"""Fuzzing with hypothesis: odd texts through predict / predict_proba / fit.

Texts mix the empty string, whitespace only (Unicode spaces, zero-width and
bidi marks), control characters and NUL, emoji (ZWJ sequences, flags,
skin tones), Hebrew / Arabic and CJK, combining marks alone and stacked on
letters, lone surrogates (category Cs, which kdtext reads as U+FFFD), any
code point at all, ordinary words, and a few 100,000-character strings.

For pre-fitted TransformerClassifier, BiLSTMClassifier and
DistillationClassifier (TF-IDF+Ridge and BiLSTM students), and for fits of
them on small generated lists: no crash, finite outputs of shape
(n_texts, n_classes), probabilities in [0, 1] summing to 1, predictions from
``classes_`` (and the argmax of ``predict_proba``), a text scored alone as in
a batch, and lone surrogates scored exactly as U+FFFD.

Profiles (tests/_hypothesis_profiles.py): ``ci`` by default (a few hundred
examples in all), ``KDTEXT_HYPOTHESIS_PROFILE=thorough`` for 10,000 per test.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from _hypothesis_profiles import fuzz_settings  # noqa: E402
from conftest import NEGATIVE, NEUTRAL, POSITIVE, make_toy_texts  # noqa: E402

MODELS = ("Transformer", "BiLSTM", "KD-ridge", "KD-bilstm")
BILSTM = dict(vocab_size=400, embedding_dim=16, hidden_dim=16, batch_size=8, validation_fraction=None, random_state=0)
LONG = 100_000

# ----------------------------------------------------------------------- strategies
WORDS = POSITIVE + NEGATIVE + NEUTRAL
WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2069"
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇷🇺", "❤️", "🤖", "🧪", "🏳️‍🌈", "\U0001fae0", "#️⃣"]

atoms = st.one_of(
    st.just(""),
    st.text(st.sampled_from(WHITESPACE + INVISIBLE), min_size=1, max_size=12),  # whitespace / invisible only
    st.text(st.characters(categories=["Cc"]), min_size=1, max_size=12),  # control characters
    st.text(st.sampled_from("\x00"), min_size=1, max_size=5),  # NUL
    st.lists(st.sampled_from(EMOJI), min_size=1, max_size=6).map("".join),
    st.text(st.characters(min_codepoint=0x0590, max_codepoint=0x06FF), min_size=1, max_size=20),  # Hebrew, Arabic
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=20),  # CJK
    st.text(st.characters(categories=["Mn", "Me"]), min_size=1, max_size=12),  # combining marks alone
    st.tuples(st.sampled_from(WORDS), st.text(st.characters(categories=["Mn"]), min_size=1, max_size=40)).map(
        lambda t: t[0][0] + t[1] + t[0][1:]  # "zalgo": a word with marks stacked on its first letter
    ),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=6),  # lone surrogates
    st.text(st.characters(exclude_categories=[]), max_size=30),  # any code point, surrogates included
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join),  # ordinary text
)
texts = st.one_of(atoms, st.lists(atoms, min_size=2, max_size=4).map(" ".join), st.lists(atoms, min_size=2, max_size=4).map("".join))
text_lists = st.lists(texts, min_size=1, max_size=8)


def _repeat(piece: str) -> str:
    piece = piece or "x"
    return (piece * (LONG // len(piece) + 1))[:LONG]


LONG_PIECES = ["a", "good ", "😀", "\u0645\u0631\u062d\u0628\u0627 ", "\u05e9\u05dc\u05d5\u05dd", "中文", "\x00", " ", "e\u0301",
               "\ud800", "🇷🇺", "x\udfff "]
long_texts = st.one_of(st.sampled_from(LONG_PIECES).map(_repeat), atoms.map(_repeat))
long_lists = st.lists(st.one_of(long_texts, texts), min_size=1, max_size=3).filter(lambda xs: any(len(x) == LONG for x in xs))

_SURROGATE = re.compile("[\ud800-\udfff]")


# -------------------------------------------------------------------------- models
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def teacher():
    X, y = make_toy_texts(48, seed=3)
    return make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, y)


def _build(name, bert, teacher, *, small=False):
    from kdtext import BiLSTMClassifier, DistillationClassifier, TransformerClassifier

    epochs = 1 if small else 2
    if name == "Transformer":
        return TransformerClassifier(bert, epochs=epochs, batch_size=4 if small else 16, validation_fraction=None, random_state=0)
    if name == "BiLSTM":
        return BiLSTMClassifier(epochs=epochs, **BILSTM)
    if name == "KD-ridge":
        return DistillationClassifier(teacher, make_pipeline(TfidfVectorizer(), Ridge()))
    if name == "KD-bilstm":
        return DistillationClassifier(teacher, BiLSTMClassifier(epochs=epochs, **BILSTM), alpha=0.5)
    raise KeyError(name)


@pytest.fixture(scope="module")
def models(tiny_bert_path, teacher):
    X, y = make_toy_texts(48, seed=3)
    return {name: _build(name, tiny_bert_path, teacher).fit(X, y) for name in MODELS}


def check_outputs(est, X) -> np.ndarray:
    n, k = len(X), len(est.classes_)
    proba = np.asarray(est.predict_proba(X))
    assert proba.shape == (n, k)
    assert np.isfinite(proba).all(), proba
    assert (proba >= 0).all() and (proba <= 1 + 1e-6).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5, atol=1e-6)
    pred = np.asarray(est.predict(X))
    assert pred.shape == (n,)
    assert set(pred.tolist()) <= set(est.classes_.tolist())
    top = np.sort(proba, axis=1)
    clear = top[:, -1] - top[:, -2] > 1e-5  # no near-tie between the two best classes
    np.testing.assert_array_equal(pred[clear], est.classes_[proba.argmax(axis=1)][clear])
    if hasattr(est, "decision_function"):
        dec = np.asarray(est.decision_function(X))
        assert dec.shape == ((n,) if k == 2 else (n, k))
        assert np.isfinite(dec).all(), dec
    return proba


def check_consistency(est, X, proba):
    # a text scored alone scores as in the batch (padding and batching change nothing)
    np.testing.assert_allclose(est.predict_proba(X[:1])[0], proba[0], rtol=1e-4, atol=1e-5)
    # lone surrogates are read as U+FFFD
    replaced = [_SURROGATE.sub("\ufffd", t) for t in X]
    if replaced != list(X):
        np.testing.assert_allclose(est.predict_proba(replaced), proba, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", MODELS)
@fuzz_settings()
@given(X=text_lists)
@example(X=[""])
@example(X=[" \t\n\u3000", "\u200b\ufeff"])
@example(X=["\x00", "a\x00b"])
@example(X=["x \ud800", "\udfff", "\ud83d\ude00"])  # lone surrogates, and a pair split into two code points
@example(X=["\u202e\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd", "中文文本"])
@example(X=["👨‍👩‍👧‍👦🇷🇺", "e\u0301\u0301\u0301\u0301"])
def test_predict_odd_texts(name, X, models):
    est = models[name]
    proba = check_outputs(est, X)
    check_consistency(est, X, proba)


@pytest.mark.parametrize("name", MODELS)
@fuzz_settings(share=0.125)
@given(X=long_lists)
@example(X=[_repeat("good ")])
@example(X=[_repeat("\ud800"), "a good film"])
def test_predict_100k_character_texts(name, X, models):
    est = models[name]
    proba = check_outputs(est, X)
    check_consistency(est, X, proba)


@pytest.mark.parametrize("name", MODELS)
@fuzz_settings(share=0.2)
@given(X=st.lists(texts, min_size=2, max_size=8))
@example(X=["", " ", "\x00", "x \ud800"])
def test_fit_on_odd_texts(name, X, tiny_bert_path, teacher):
    # two ordinary texts keep a TF-IDF student's vocabulary non-empty (an empty one is sklearn's own error)
    X = list(X) + ["a good film", "an awful plot"]
    y = np.arange(len(X)) % 2
    est = _build(name, tiny_bert_path, teacher, small=True).fit(X, y)
    np.testing.assert_array_equal(est.classes_, [0, 1])
    check_outputs(est, X)
