"""Tests of kdtext.augment (Tang et al. 2019 transfer-set augmentation)."""

import random
from collections import Counter

import numpy as np
import pytest
from sklearn.base import clone

from kdtext.augment import TransferSetAugmenter, _Vocabulary, augment_texts

TEXTS = [
    "the film is a delight from start to finish",
    "a dull and tedious plot with flat characters",
    "great acting but the story drags in the middle",
    "i would not watch it again",
]


def _vocab(texts):
    return {w for t in texts for w in t.split()}


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_output():
    a = augment_texts(TEXTS, 5, random_state=42)
    b = augment_texts(TEXTS, 5, random_state=42)
    assert a == b and len(a) > 0


def test_estimator_repeatable_with_int_seed():
    aug = TransferSetAugmenter(n_variants=5, random_state=3)
    assert aug.augment(TEXTS) == aug.augment(TEXTS)


def test_different_seed_different_output():
    assert augment_texts(TEXTS, 5, random_state=1) != augment_texts(TEXTS, 5, random_state=2)


def test_random_state_instances_accepted():
    out_rs = augment_texts(TEXTS, 3, random_state=np.random.RandomState(0))
    out_gen = augment_texts(TEXTS, 3, random_state=np.random.default_rng(0))
    assert out_rs and out_gen


def test_global_random_states_untouched():
    np.random.seed(123)
    random.seed(123)
    np_before = np.random.get_state()
    py_before = random.getstate()
    augment_texts(TEXTS, 5, random_state=0)
    augment_texts(TEXTS, 5, random_state=np.random.default_rng(1))
    TransferSetAugmenter(n_variants=3, random_state=7).augment(TEXTS)
    np_after = np.random.get_state()
    assert np_before[0] == np_after[0]
    assert np.array_equal(np_before[1], np_after[1])
    assert np_before[2:] == np_after[2:]
    assert random.getstate() == py_before


# --------------------------------------------------------------------------- probabilities


def test_all_zero_probabilities_give_originals():
    out = augment_texts(TEXTS, 3, p_mask=0.0, p_swap=0.0, p_ngram=0.0, unique=False, random_state=0)
    expected = [t for t in TEXTS for _ in range(3)]
    assert out == expected


def test_all_zero_probabilities_with_unique_give_nothing():
    out = augment_texts(TEXTS, 3, p_mask=0.0, p_swap=0.0, p_ngram=0.0, unique=True, random_state=0)
    assert out == []


def test_unique_compares_after_whitespace_normalisation():
    out = augment_texts(["  a   b  c "], 3, p_mask=0.0, p_swap=0.0, p_ngram=0.0, random_state=0)
    assert out == []
    out = augment_texts(["  a   b  c "], 2, p_mask=0.0, p_swap=0.0, p_ngram=0.0, unique=False, random_state=0)
    assert out == ["a b c", "a b c"]


def test_p_mask_one_masks_every_word():
    out = augment_texts(TEXTS, 2, p_mask=1.0, p_swap=0.0, p_ngram=0.0, unique=False, random_state=0)
    for i, text in enumerate(TEXTS):
        for variant in out[2 * i : 2 * i + 2]:
            assert variant.split() == ["[MASK]"] * len(text.split())


def test_custom_mask_token():
    out = augment_texts(["a b"], 1, p_mask=1.0, p_swap=0.0, p_ngram=0.0, mask_token="<unk>", random_state=0)
    assert out == ["<unk> <unk>"]


def test_swapped_words_come_from_the_corpus_and_differ():
    out = augment_texts(TEXTS, 10, p_mask=0.0, p_swap=1.0, p_ngram=0.0, unique=False, random_state=0)
    corpus = _vocab(TEXTS)
    assert len(out) == 10 * len(TEXTS)
    for i, text in enumerate(TEXTS):
        words = text.split()
        for variant in out[10 * i : 10 * i + 10]:
            new = variant.split()
            assert len(new) == len(words)
            for old_w, new_w in zip(words, new):
                assert new_w in corpus
                assert new_w != old_w  # swap never returns the word itself


def test_swap_follows_corpus_frequency():
    # "x" makes up 9 of the 10 words that are not "y"; swapping "y" must draw "x" ~90% of the time.
    vocab = _Vocabulary([["x"] * 9 + ["z", "y"]])
    rng = np.random.default_rng(0)
    draws = Counter(vocab.draw_other("y", rng) for _ in range(5000))
    assert set(draws) == {"x", "z"}
    assert draws["x"] / 5000 == pytest.approx(0.9, abs=0.02)


def test_swap_with_single_word_vocabulary_keeps_word():
    out = augment_texts(["same same same"], 2, p_mask=0.0, p_swap=1.0, p_ngram=0.0, unique=False, random_state=0)
    assert out == ["same same same"] * 2


def test_ngram_length_in_range_and_contiguous():
    text = " ".join(f"w{i}" for i in range(20))
    words = text.split()
    out = augment_texts([text], 200, p_mask=0.0, p_swap=0.0, p_ngram=1.0, ngram_range=(2, 4), unique=False, random_state=0)
    lengths = Counter()
    for variant in out:
        v = variant.split()
        assert 2 <= len(v) <= 4
        start = words.index(v[0])
        assert words[start : start + len(v)] == v
        lengths[len(v)] += 1
    assert set(lengths) == {2, 3, 4}  # uniform over the range: all appear


def test_ngram_default_range_and_short_texts():
    out = augment_texts(["one two"], 50, p_mask=0.0, p_swap=0.0, p_ngram=1.0, unique=False, random_state=0)
    assert len(out) == 50
    assert set(out) <= {"one", "two", "one two"}  # n is capped at the text length


def test_ngram_probability_roughly_respected():
    text = " ".join(f"w{i}" for i in range(30))
    out = augment_texts([text], 2000, p_mask=0.0, p_swap=0.0, p_ngram=0.25, unique=False, random_state=0)
    short = sum(len(v.split()) <= 5 for v in out)
    assert short / 2000 == pytest.approx(0.25, abs=0.03)


def test_mask_rate_roughly_respected():
    text = " ".join(f"w{i}" for i in range(50))
    out = augment_texts([text], 200, p_mask=0.1, p_swap=0.1, p_ngram=0.0, unique=False, random_state=0)
    tokens = [w for v in out for w in v.split()]
    assert tokens.count("[MASK]") / len(tokens) == pytest.approx(0.1, abs=0.01)
    changed = sum(w != "[MASK]" and w != o for v in out for w, o in zip(v.split(), text.split()))
    assert changed / len(tokens) == pytest.approx(0.1, abs=0.01)


# --------------------------------------------------------------------------- output shape


def test_order_and_count_without_unique():
    texts = ["alpha beta gamma", "delta epsilon zeta"]
    out = augment_texts(texts, 4, p_mask=0.5, p_swap=0.0, p_ngram=0.0, unique=False, random_state=0)
    assert len(out) == 8
    for i, text in enumerate(texts):
        for variant in out[4 * i : 4 * i + 4]:
            for w, o in zip(variant.split(), text.split()):
                assert w in (o, "[MASK]")


def test_unique_drops_duplicates_and_originals():
    texts = ["a b", "c d", "a b c"]
    out = augment_texts(texts, 30, random_state=0)
    assert len(out) == len(set(out))
    assert not set(out) & set(texts)
    assert len(out) < 30 * len(texts)


def test_empty_texts_produce_no_variants():
    out = augment_texts(["", "   ", "a b c"], 3, p_mask=1.0, p_swap=0.0, p_ngram=0.0, unique=False, random_state=0)
    assert out == ["[MASK] [MASK] [MASK]"] * 3
    assert augment_texts([], 3, random_state=0) == []


def test_accepts_numpy_and_tuple_input():
    a = augment_texts(np.array(TEXTS), 2, random_state=0)
    b = augment_texts(tuple(TEXTS), 2, random_state=0)
    assert a == b == augment_texts(TEXTS, 2, random_state=0)


# --------------------------------------------------------------------------- sklearn style


def test_init_only_stores_and_clones():
    aug = TransferSetAugmenter(n_variants=-5, p_mask=3.0, ngram_range="bad")  # no check in __init__
    assert aug.get_params()["n_variants"] == -5
    good = TransferSetAugmenter(n_variants=2, random_state=0)
    cloned = clone(good)
    assert cloned.get_params() == good.get_params()
    assert cloned.augment(TEXTS) == good.augment(TEXTS)


def test_augment_does_not_set_attributes():
    aug = TransferSetAugmenter(n_variants=2, random_state=0)
    before = dict(vars(aug))
    aug.augment(TEXTS)
    assert vars(aug) == before


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_variants": 0}, "n_variants"),
        ({"n_variants": 2.5}, "n_variants"),
        ({"n_variants": True}, "n_variants"),
        ({"p_mask": -0.1}, "p_mask"),
        ({"p_mask": 1.1}, "p_mask"),
        ({"p_swap": 2}, "p_swap"),
        ({"p_ngram": float("nan")}, "p_ngram"),
        ({"p_mask": 0.6, "p_swap": 0.6}, r"p_mask \+ p_swap"),
        ({"ngram_range": (0, 3)}, "ngram_range"),
        ({"ngram_range": (4, 2)}, "ngram_range"),
        ({"ngram_range": (1,)}, "ngram_range"),
        ({"ngram_range": (1.0, 2)}, "ngram_range"),
        ({"mask_token": ""}, "mask_token"),
        ({"mask_token": None}, "mask_token"),
        ({"unique": "yes"}, "unique"),
        ({"random_state": "seed"}, "random_state"),
    ],
)
def test_bad_params_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransferSetAugmenter(**{"n_variants": 2, **kwargs}).augment(TEXTS)


def test_bad_texts_raise():
    with pytest.raises(TypeError):
        augment_texts("a single string", 2)
    with pytest.raises(TypeError):
        augment_texts(["ok", 3], 2)
    with pytest.raises(ValueError):
        augment_texts(["ok", None], 2)
