"""Shared fixtures: a tiny random BERT saved to disk and loaded through the
real ``from_pretrained`` path (as transformers' own BertModelTester does), and
a trivially separable toy task."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

try:  # register the fuzz tests' profiles before hypothesis reads --hypothesis-profile
    import _hypothesis_profiles  # noqa: F401
except ImportError:  # hypothesis not installed: tests/test_fuzz.py skips itself
    pass

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KDTEXT_DATA", REPO.parent / "shared" / "data"))

POSITIVE = ["good", "great", "excellent", "superb", "lovely", "wonderful", "fine", "nice"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "horrible", "dreadful", "boring", "weak"]
NEUTRAL = ["film", "movie", "plot", "actor", "story", "the", "a", "was", "very", "this", "scene", "music"]


def make_toy_texts(n: int = 120, seed: int = 0, n_classes: int = 2):
    """Texts whose class is given by which sentiment word they hold."""
    rng = np.random.default_rng(seed)
    groups = [POSITIVE, NEGATIVE, ["okay", "average", "so-so", "mediocre"]][:n_classes]
    texts, labels = [], []
    for i in range(n):
        c = i % n_classes
        words = list(rng.choice(NEUTRAL, size=rng.integers(2, 6)))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(groups[c])))
        texts.append(" ".join(words))
        labels.append(c)
    return texts, np.array(labels)


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory) -> str:
    """A 2-layer, hidden-32 BERT with a WordPiece vocabulary written here."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    path = tmp_path_factory.mktemp("tiny-bert")
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = sorted(set(POSITIVE + NEGATIVE + NEUTRAL + ["okay", "average", "so", "-", "mediocre", "what", "is"]))
    pieces = ["##s", "##ing", "##ed"] + list("abcdefghijklmnopqrstuvwxyz") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab = special + words + pieces
    # transformers 5: BertTokenizer is the tokenizers-backed (fast) class and takes the vocabulary itself
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def deep_bert_path(tmp_path_factory, tiny_bert_path):
    """The tiny test BERT with 4 layers instead of 2 (same vocabulary), saved and loaded the real way."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("deep-bert")
    config = BertConfig.from_pretrained(tiny_bert_path)
    config.num_hidden_layers = 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def toy_data():
    return make_toy_texts(120, seed=0)
