"""Small neural students trained from scratch.

:class:`BiLSTMClassifier` is the student of Tang et al. (2019), "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks": a
bidirectional LSTM over a subword vocabulary learnt from the training texts.
It is a scikit-learn classifier over raw texts and implements ``fit_soft``,
so :class:`~kdtext.DistillationClassifier` can train it on a teacher's
logits.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from tokenizers import Tokenizer

from ._neural import (
    NeuralTextClassifier,
    load_module_weights,
    pad_ids,
    read_module_folder,
    save_module_folder,
)
from .static import encode_pieces, piece_vectors

logger = logging.getLogger(__name__)

__all__ = ["BiLSTMClassifier", "BiLSTMModule", "train_tokenizer"]

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
MODULE_CONFIG_NAME = "bilstm_config.json"

_TOKENIZER_KINDS = ("bpe", "unicode_bpe", "wordpiece")
_POOLINGS = ("last", "max", "mean", "max_mean")
# pad tokens of common pretrained vocabularies, tried in this order for a user tokenizer
_PAD_CANDIDATES = (PAD_TOKEN, "<pad>", "<PAD>", "<|padding|>", "<|pad|>")


def train_tokenizer(
    texts: list[str],
    kind: str = "bpe",
    *,
    vocab_size: int = 8000,
    min_frequency: int = 2,
    lowercase: bool = True,
) -> Tokenizer:
    """Learn a subword tokenizer from ``texts`` with the ``tokenizers`` library.

    ``"bpe"`` and ``"unicode_bpe"`` train deterministically: the same texts
    and settings give the same vocabulary. ``"wordpiece"`` does not, in
    tokenizers 0.23: its trainer numbers the ``##`` continuation characters
    in hash-map order, and ties between equally frequent merges follow those
    numbers, so a few rare pieces can differ from run to run. Token 0 is
    ``[PAD]`` and token 1 is ``[UNK]``.

    Parameters
    ----------
    texts : list of str, or a re-iterable with ``len`` and ``iter_chunks``
        Training texts. A stream of texts (kdtext's own, read from
        :class:`~kdtext.TextFiles`) is read chunk by chunk: the trainer
        keeps word counts, not the texts.
    kind : {"bpe", "unicode_bpe", "wordpiece"}, default="bpe"
        ``"bpe"``: GPT-2 style byte-level BPE; never produces ``[UNK]`` (any
        text is bytes), but spends 256 tokens on the byte alphabet, and with a
        small vocabulary non-Latin words (Russian) break into more pieces.
        ``"unicode_bpe"``: BPE over unicode characters after splitting on
        whitespace and punctuation; characters never seen in training become
        ``[UNK]``. ``"wordpiece"``: BERT style WordPiece (``##``
        continuation pieces); unseen characters make the whole word
        ``[UNK]``; not bit-for-bit reproducible (see above).
    vocab_size : int, default=8000
        Largest vocabulary size, special tokens included (byte-level BPE
        always keeps its 256 byte tokens).
    min_frequency : int, default=2
        Merges seen fewer times than this are not learnt.
    lowercase : bool, default=True
        Lower-case (after NFKC normalisation) before tokenizing.

    Returns
    -------
    tokenizer : tokenizers.Tokenizer

    Examples
    --------
    >>> from kdtext.students import train_tokenizer
    >>> tok = train_tokenizer(["a good film", "a bad film"] * 5, vocab_size=300)
    >>> tok.encode("A good film", add_special_tokens=False).tokens
    ['Ġa', 'Ġgood', 'Ġfilm']
    >>> tok = train_tokenizer(["a good film", "a bad film"] * 5, "unicode_bpe", vocab_size=60)
    >>> tok.encode("A good film", add_special_tokens=False).tokens
    ['a', 'good', 'film']
    >>> tok.token_to_id("[PAD]"), tok.token_to_id("[UNK]")
    (0, 1)
    """
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    special = [PAD_TOKEN, UNK_TOKEN]
    norm = [normalizers.NFKC()]
    if lowercase:
        norm.append(normalizers.Lowercase())
    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=special,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif kind == "unicode_bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=special,
            limit_alphabet=1000,
            show_progress=False,
        )
    elif kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=special,
            limit_alphabet=1000,
            show_progress=False,
        )
    else:
        raise ValueError(f"kind must be one of {_TOKENIZER_KINDS}, got {kind!r}.")
    tok.normalizer = normalizers.Sequence(norm)
    batches = texts.iter_chunks() if hasattr(texts, "iter_chunks") else texts  # a stream: lists of texts
    tok.train_from_iterator(batches, trainer=trainer, length=len(texts))
    return tok


def _copy_tokenizer(tokenizer: Any) -> Tokenizer:
    """An independent copy of a ``tokenizers.Tokenizer`` (or of the backend of a
    transformers fast tokenizer) with truncation and padding switched off."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if not isinstance(backend, Tokenizer):
        raise TypeError(
            "tokenizer must be 'bpe', 'unicode_bpe', 'wordpiece' or a tokenizers.Tokenizer "
            f"(or a transformers fast tokenizer), got {type(tokenizer).__name__}."
        )
    tok = Tokenizer.from_str(backend.to_str())
    tok.no_truncation()
    tok.no_padding()
    return tok


def _pad_id(tokenizer: Tokenizer) -> int | None:
    for name in _PAD_CANDIDATES:
        idx = tokenizer.token_to_id(name)
        if idx is not None:
            return idx
    return None


@functools.lru_cache(maxsize=1)
def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == "auto"


def _cpu_has_bf16_lstm() -> bool:
    """Whether oneDNN can run a bf16 LSTM on this CPU (it needs AVX512-BF16 / AMX-class instructions)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - a torch build without oneDNN
        return False


class BiLSTMModule(torch.nn.Module):
    """Embedding -> bidirectional LSTM (packed) -> pooling -> dense + ReLU -> logits.

    Parameters
    ----------
    vocab_size, embedding_dim, hidden_dim, n_classes : int
        Sizes.
    num_layers : int, default=1
        Stacked LSTM layers.
    dropout : float, default=0.2
        Dropout on the embeddings, between LSTM layers and after the dense layer.
    pooling : {"last", "max", "mean", "max_mean"}, default="max_mean"
        ``"last"``: the final hidden states of both directions, concatenated
        (Tang et al. 2019). ``"max"`` / ``"mean"``: over the outputs of all
        real (non-pad) positions. ``"max_mean"``: both, concatenated.
    padding_idx : int or None, default=None
        Embedding row of the pad token (kept at zero).
    n_rows : int or None, default=None
        With pretrained vectors of a teacher's vocabulary: the embedding has
        ``n_rows`` rows and a buffer ``id_map`` (of ``vocab_size`` entries)
        maps each token id to its row; row 0 (zero, not trained) stands for
        pieces without a row. None: one row per token id.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_dim: int,
        n_classes: int,
        num_layers: int = 1,
        dropout: float = 0.2,
        pooling: str = "max_mean",
        padding_idx: int | None = None,
        n_rows: int | None = None,
    ):
        super().__init__()
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}.")
        self.config = dict(
            vocab_size=vocab_size,
            embedding_dim=embedding_dim,
            hidden_dim=hidden_dim,
            n_classes=n_classes,
            num_layers=num_layers,
            dropout=dropout,
            pooling=pooling,
            padding_idx=padding_idx,
        )
        if n_rows is not None:  # written only when used: folders saved before it load unchanged
            self.config["n_rows"] = int(n_rows)
            self.register_buffer("id_map", torch.zeros(vocab_size, dtype=torch.long))
            self.embedding = torch.nn.Embedding(n_rows, embedding_dim, padding_idx=0)
        else:
            self.id_map = None
            self.embedding = torch.nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.pooling = pooling
        self.dropout = torch.nn.Dropout(dropout)
        self.lstm = torch.nn.LSTM(
            embedding_dim,
            hidden_dim,
            num_layers=num_layers,
            bidirectional=True,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        n_features = 2 * hidden_dim * (2 if pooling == "max_mean" else 1)
        self.dense = torch.nn.Linear(n_features, hidden_dim)
        self.classifier = torch.nn.Linear(hidden_dim, n_classes)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        emb = self.dropout(self.embed(input_ids))
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        if emb.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not _cpu_has_bf16_lstm():
            # oneDNN has no bf16 LSTM on CPUs without bf16 instructions: the LSTM runs in fp32, the rest in bf16
            with torch.autocast("cpu", enabled=False):
                out, (h_n, _) = self.lstm(packed)  # the embeddings are fp32 already (autocast leaves them)
        else:
            out, (h_n, _) = self.lstm(packed)
        if self.pooling == "last":
            # h_n: (num_layers * 2, batch, hidden); the last layer's forward and backward states
            return self.head(torch.cat([h_n[-2], h_n[-1]], dim=1))
        out, _ = pad_packed_sequence(out, batch_first=True)  # (batch, longest, 2 * hidden)
        return self.head(self.pool(out, lengths))

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The embedding vectors of ``input_ids`` (through ``id_map`` when the rows are a teacher's pieces)."""
        return self.embedding(input_ids if self.id_map is None else self.id_map[input_ids])

    def pool(self, out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Max and/or mean of the LSTM outputs ``out`` (batch, time, 2 * hidden) over the real positions."""
        lengths = lengths.to(out.device)
        mask = (torch.arange(out.shape[1], device=out.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        pooled = []
        if self.pooling in ("max", "max_mean"):
            pooled.append(out.masked_fill(~mask, float("-inf")).amax(dim=1))
        if self.pooling in ("mean", "max_mean"):
            pooled.append((out * mask).sum(dim=1) / lengths[:, None].to(out.dtype))
        return torch.cat(pooled, dim=1)

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        """Dense + ReLU + dropout, then the logits."""
        return self.classifier(self.dropout(torch.relu(self.dense(feats))))


class _ExportableBiLSTM(torch.nn.Module):
    """The function of a :class:`BiLSTMModule` in eval mode, without packed sequences, for ONNX export.

    ``torch.export`` (the ONNX exporter behind ``kdtext.onnx``) cannot trace
    ``pack_padded_sequence``. Padding is at the end of each row, so a forward
    LSTM over the padded batch gives the packed outputs at every real position;
    the backward LSTM runs over each text reversed within its own length (a
    gather that leaves the padding in place) and its outputs are reversed back.
    Outputs at padded positions are garbage that the pooling masks out, as it
    masks the zeros that ``pad_packed_sequence`` puts there. The weights are
    the module's own (shared, not copied).
    """

    def __init__(self, module: BiLSTMModule):
        super().__init__()
        self.module = module

    def _direction(self, x: torch.Tensor, layer: int, suffix: str) -> torch.Tensor:
        lstm = self.module.lstm
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if lstm.bias else [])
        params = [getattr(lstm, f"{n}_l{layer}{suffix}") for n in names]
        h0 = x.new_zeros(1, x.shape[0], lstm.hidden_size)
        out, _, _ = torch.lstm(x, (h0, h0), params, lstm.bias, 1, 0.0, False, False, True)
        return out

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        m = self.module
        x = m.embed(input_ids)
        steps = torch.arange(x.shape[1], device=x.device)[None, :]
        last = (lengths.to(x.device) - 1)[:, None]
        reverse = torch.where(steps <= last, last - steps, steps)[:, :, None]

        def flip(t):
            return t.gather(1, reverse.expand(-1, -1, t.shape[2]))

        for layer in range(m.lstm.num_layers):
            forward = self._direction(x, layer, "")
            backward = flip(self._direction(flip(x), layer, "_reverse"))
            x = torch.cat([forward, backward], dim=2)
        if m.pooling == "last":
            at_last = forward.gather(1, last[:, :, None].expand(-1, 1, forward.shape[2]))[:, 0]
            return m.head(torch.cat([at_last, backward[:, 0]], dim=1))
        return m.head(m.pool(x, lengths))


class BiLSTMClassifier(NeuralTextClassifier):
    """A bidirectional LSTM text classifier with its own subword tokenizer.

    The student of Tang et al. (2019): embedding -> BiLSTM -> pooling ->
    dense + ReLU -> logits. Alone, ``fit`` learns a subword vocabulary from
    the training texts (``tokenizers`` library) and trains from scratch;
    distilled from a :class:`~kdtext.TransformerClassifier` it starts, by
    default (``pretrained="auto"``), from the teacher checkpoint's own
    vocabulary and static (Model2Vec) vectors, as Tang et al. started theirs
    from word2vec, which is worth 5 to 10 points on small data sets. Tens of times
    faster than a transformer at prediction; use it alone on hard labels or,
    better, distil a teacher into it with
    :class:`~kdtext.DistillationClassifier` (it implements :meth:`fit_soft`).

    Parameters
    ----------
    tokenizer : {"bpe", "unicode_bpe", "wordpiece"} or tokenizers.Tokenizer, default="bpe"
        The kind of tokenizer to learn from the training texts (see
        :func:`kdtext.students.train_tokenizer`): ``"bpe"`` is GPT-2 style
        byte-level BPE (no unknown tokens ever); ``"unicode_bpe"`` is BPE over
        unicode characters after splitting on whitespace and punctuation;
        ``"wordpiece"`` is BERT style WordPiece (its training is not
        bit-for-bit reproducible in tokenizers 0.23, so neither is ``fit``
        with it, even with a fixed ``random_state``). On ru_toxic (hard
        labels, one seed) byte-level BPE 8k scored F1 0.821 and unicode BPE
        16k 0.805. Or a ready ``tokenizers.Tokenizer`` (or transformers fast
        tokenizer), which is copied and not retrained; its special tokens
        are not added.
    vocab_size : int, default=8000
        Largest learnt vocabulary. Ignored with a ready tokenizer.
    min_frequency : int, default=2
        Merges seen fewer times are not learnt. Ignored with a ready tokenizer.
    lowercase : bool, default=True
        Lower-case texts before tokenizing. Ignored with a ready tokenizer.
    embedding_dim : int, default=128
        Size of the token embeddings.
    hidden_dim : int, default=128
        LSTM hidden size per direction; also the size of the dense layer.
    num_layers : int, default=1
        Stacked BiLSTM layers.
    dropout : float, default=0.3
        Dropout on embeddings, between LSTM layers and after the dense layer.
    pooling : {"last", "max", "mean", "max_mean"}, default="max_mean"
        How the LSTM outputs become one vector: the final hidden states of
        both directions concatenated (``"last"``, as Tang et al.), max or mean
        over positions, or max and mean concatenated (on ru_toxic, one seed:
        F1 0.805 for ``"max_mean"`` vs 0.788 for ``"last"``).
    embeddings : array-like of shape (vocab_size, embedding_dim) or None, default=None
        Pretrained embedding matrix whose row ``i`` is token ``i`` of a ready
        ``tokenizer`` (pass both). ``embedding_dim`` must equal its width.
        Not written by :meth:`save_pretrained` (the trained rows are).
    freeze_embeddings : bool, default=False
        Keep the embedding matrix fixed during training.
    pretrained : "auto", str, path-like or None, default="auto"
        A transformer folder (e.g. a fitted teacher's ``save_pretrained``
        output, or the checkpoint it was fine-tuned from) or hub id whose
        vocabulary and static vectors start the student, as Tang et al.
        started theirs from word2vec: the student uses the model's own fast
        tokenizer (no vocabulary is learnt; ``vocab_size``, ``min_frequency``
        and ``lowercase`` are then unused) and an embedding row for each piece
        the training texts use, initialised with the piece's Model2Vec vector
        (the piece alone through the encoder, mean-pooled, as
        :class:`~kdtext.StaticEmbeddingClassifier` builds them), reduced by
        PCA to ``embedding_dim`` and scaled to unit standard deviation.
        Pieces first seen at prediction get a zero vector. Fitting needs
        ``model2vec`` (installed with kdtext). ``"auto"``: inside
        :class:`~kdtext.DistillationClassifier` (and
        :class:`~kdtext.DistillationClassifierCV`, its twin included) whose
        teacher is a :class:`~kdtext.TransformerClassifier`, the checkpoint
        that teacher was fine-tuned from (its ``model``; the fitted
        ``student_`` shows the path); anywhere else, and without
        ``model2vec`` (a warning says so), the same as None. None: a
        vocabulary learnt from the training texts, embeddings from scratch.
        The default was chosen by the measurement in the Notes.
    max_length : int, default=128
        Texts are truncated to this many tokens.
    batch_size : int, default=32
        Training batch size.
    epochs : int or "auto", default=10
        Maximum number of passes over the training texts. ``"auto"``: as
        many as make about 600 optimizer steps, at least 3 and at most 30;
        early stopping (``n_iter_no_change``) still ends training sooner.
    learning_rate : float, default=2e-3
        Peak AdamW learning rate (linear decay to zero).
    weight_decay : float, default=0.01
        AdamW weight decay (not applied to biases).
    warmup_ratio : float, default=0.0
        Share of the training steps spent warming up the learning rate.
    validation_fraction : float or None, default=0.1
        Share of the training texts held out (stratified) to pick the best
        epoch; its weights are restored at the end. None or 0 disables it.
    n_iter_no_change : int or None, default=3
        Stop after this many epochs without a better validation score.
        None runs all epochs (the best are still restored).
    scoring : {"accuracy", "balanced_accuracy", "f1_macro"}, default="accuracy"
        The validation score that picks the best epoch and drives early
        stopping, against the validation texts' gold labels (the teacher's
        argmax for unlabeled ones in ``fit_soft``). Measured with
        ``benchmarks/robustness.py`` (rows ``bilstm_twin*``: this class's
        defaults on gold labels, six development sets, 250 and 1,000
        labeled texts, seed 0): ``"balanced_accuracy"`` lifted the three
        imbalanced sets at 1,000 texts (GoEmotions macro-F1 0.192 -> 0.222,
        GermEval F1 0.330 -> 0.394, ru_toxic F1 0.566 -> 0.612) and left
        the other eight set/size pairs within 0.001; ``"f1_macro"`` lifted
        GermEval at 1,000 (0.394) and GoEmotions at 250 (0.082 -> 0.140)
        only. The default stays ``"accuracy"`` until the distilled students
        (``fit_soft``) are measured the same way: prefer
        ``"balanced_accuracy"`` on imbalanced classes.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the hard-label cross-entropy, as in
        scikit-learn: ``{label: weight}``, or ``"balanced"`` for
        ``n / (n_classes * count)`` over the labeled texts. Also weights the
        hard term of :meth:`fit_soft`.
    predict_batch_size : int, default=256
        Batch size for inference.
    device : {"auto", "cpu", "cuda", "mps"} or str, default="auto"
        Where to train and predict, resolved when ``fit`` is called.
    mixed_precision : bool or "auto", default="auto"
        Autocast for training and inference. "auto": bf16 (fp16 where bf16 is
        not supported) on CUDA, exact fp32 elsewhere. True: the same on CUDA,
        and bf16 on the CPU too, which is much faster on CPUs with
        AVX512-BF16 or AMX (2.4-2.8x for MiniLM inference in
        ``benchmarks/teacher_throughput.py``) at a small cost in precision
        (logits within about 1e-3 of fp32's), and may be slower on CPUs
        without them; on such CPUs oneDNN has no bf16 LSTM, so the LSTM
        itself then runs in fp32. MPS stays fp32. False: fp32 everywhere. Read at every call, so
        ``set_params(mixed_precision=True)`` speeds up a fitted teacher.
    checkpoint_dir : str, path-like or None, default=None
        Folder where training state (weights, optimizer, scheduler, RNG
        states, epoch, best weights so far) is written atomically at every
        epoch end. A ``fit`` on the same data with the same parameters and the
        same folder (after a crash, ``kill -9`` or Ctrl-C) resumes after the
        last completed epoch and ends with the same weights as an
        uninterrupted run with the same ``random_state`` (bit for bit on the
        CPU); a finished fit is restored without training (with
        ``random_state=None`` it trains anew). A checkpoint of another fit
        is replaced, with a warning; an unreadable one is kept aside as
        ``*.unreadable-<time>``. None writes nothing. See the Reliability
        page of the docs.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, dropout, shuffling and the validation split.
        The global torch/numpy RNG state is left untouched. Tokenizer
        training is deterministic.
    verbose : int, default=0
        0 is silent; 1 shows tqdm progress bars and per-epoch lines.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels seen in ``fit``.
    n_classes_ : int
        Number of classes.
    tokenizer_ : tokenizers.Tokenizer
        The learnt (or copied) tokenizer; with ``pretrained``, the model's.
    model_ : BiLSTMModule
        The trained torch module.
    device_ : torch.device
        The device resolved in ``fit``.
    history_ : list of dict
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_score`` (``scoring``),
        ``time`` in seconds.
    n_iter_ : int
        Epochs run.
    best_epoch_ : int
        Epoch whose weights were kept.
    interrupted_ : bool
        Whether ``fit`` was stopped by ``KeyboardInterrupt``.

    Notes
    -----
    ``pretrained="auto"`` was chosen with ``benchmarks/robustness.py``
    (``DistillationClassifier(teacher, student)`` with kdtext's defaults, the
    default teacher fine-tuned on the labeled texts; 1,000 (or 250) labeled +
    4,000 unlabeled texts, 1,000 test texts, seed 0; one bootstrap standard
    error is 0.01-0.03). Rows: the BiLSTM on the gold labels alone (the
    twin), distilled from scratch (``pretrained=None``, the default before),
    distilled with the vectors of the teacher's starting checkpoint (MiniLM;
    multilingual-e5-small for ru_toxic and GermEval), and the teacher:

    =========================  ======  =====  =========  ==========  ========  ========
    1,000 labeled texts        SST-2   IMDB   Banking77  GoEmotions  ru_toxic  GermEval
                               acc     acc    acc        macro-F1    F1        F1
    =========================  ======  =====  =========  ==========  ========  ========
    twin (gold labels only)    0.617   0.671  0.288      0.192       0.566     0.330
    distilled, from scratch    0.721   0.777  0.736      0.319       0.762     0.481
    **distilled, pretrained**  0.797   0.791  0.787      0.414       0.812     0.551
    teacher                    0.835   0.820  0.839      0.500       0.838     0.599
    =========================  ======  =====  =========  ==========  ========  ========

    At 250 labeled texts: SST-2 0.678 -> 0.755, Banking77 0.470 -> 0.545,
    GoEmotions 0.194 -> 0.207, ru_toxic 0.750 -> 0.794, GermEval 0.252 ->
    0.347. ``loss="mse"`` with the pretrained student: SST-2 0.802, Banking77
    0.753, GoEmotions 0.403 (KL 0.797 / 0.787 / 0.414), so KL stays. The same pretrained student on the gold labels
    alone scores 0.722 / 0.691 / 0.508 / 0.227 / 0.751 (SST-2, IMDB, Banking77,
    GoEmotions, ru_toxic at 1,000): most of the gain is distillation's.
    ``embedding_dim=256`` (PCA to 256 instead of 128) gave 0.766 / 0.798 /
    0.353 on SST-2 / Banking77 / GoEmotions: not better, so the width stays 128.

    See Also
    --------
    kdtext.TransformerClassifier : the teacher.
    kdtext.DistillationClassifier : distil a teacher into this student.

    References
    ----------
    Tang, R., Lu, Y., Liu, L., Mou, L., Vechtomova, O., Lin, J. (2019).
    Distilling Task-Specific Knowledge from BERT into Simple Neural Networks.
    arXiv:1903.12136.

    Examples
    --------
    >>> from kdtext import BiLSTMClassifier
    >>> texts = ["a great film", "an awful film", "great acting", "awful plot"] * 10
    >>> clf = BiLSTMClassifier(vocab_size=300, embedding_dim=16, hidden_dim=16, epochs=15,
    ...                        validation_fraction=None, n_iter_no_change=None,
    ...                        learning_rate=1e-2, random_state=0)
    >>> clf.fit(texts, [1, 0, 1, 0] * 10).predict(["great", "awful"])
    array([1, 0])
    """

    _parameter_constraints: dict = {
        **NeuralTextClassifier._parameter_constraints,
        # a transformers fast tokenizer is accepted too (its backend_tokenizer is used)
        "tokenizer": [StrOptions(set(_TOKENIZER_KINDS)), Tokenizer, HasMethods(["convert_tokens_to_ids"])],
        "vocab_size": [Interval(Integral, 3, None, closed="left")],
        "min_frequency": [Interval(Integral, 1, None, closed="left")],
        "lowercase": ["boolean"],
        "embedding_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_dim": [Interval(Integral, 1, None, closed="left")],
        "num_layers": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "pooling": [StrOptions(set(_POOLINGS))],
        "embeddings": ["array-like", None],
        "freeze_embeddings": ["boolean"],
        "pretrained": [StrOptions({"auto"}), str, os.PathLike, None],
    }

    def __init__(
        self,
        tokenizer: str | Tokenizer = "bpe",
        *,
        vocab_size: int = 8000,
        min_frequency: int = 2,
        lowercase: bool = True,
        embedding_dim: int = 128,
        hidden_dim: int = 128,
        num_layers: int = 1,
        dropout: float = 0.3,
        pooling: str = "max_mean",
        embeddings: Any = None,
        freeze_embeddings: bool = False,
        pretrained: str | os.PathLike | None = "auto",
        max_length: int = 128,
        batch_size: int = 32,
        epochs: int = 10,
        learning_rate: float = 2e-3,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.0,
        validation_fraction: float | None = 0.1,
        n_iter_no_change: int | None = 3,
        scoring: str = "accuracy",
        class_weight: dict | str | None = None,
        predict_batch_size: int = 256,
        device: str = "auto",
        mixed_precision: bool | str = "auto",
        checkpoint_dir: str | os.PathLike | None = None,
        random_state: Any = None,
        verbose: int = 0,
    ):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.min_frequency = min_frequency
        self.lowercase = lowercase
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.dropout = dropout
        self.pooling = pooling
        self.embeddings = embeddings
        self.freeze_embeddings = freeze_embeddings
        self.pretrained = pretrained
        self.max_length = max_length
        self.batch_size = batch_size
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.scoring = scoring
        self.class_weight = class_weight
        self.predict_batch_size = predict_batch_size
        self.device = device
        self.mixed_precision = mixed_precision
        self.checkpoint_dir = checkpoint_dir
        self.random_state = random_state
        self.verbose = verbose

    # fitted state without a trailing underscore (set by _init_model / _load_model)
    _private_fitted_attributes = NeuralTextClassifier._private_fitted_attributes + ("_word_cache",)

    # ---------------------------------------------------------------- hooks
    def _init_model(self, texts, n_classes):
        self._word_cache = None
        if self.pretrained is not None and not _is_auto(self.pretrained):
            self.__dict__.pop("_resumed_tokenizer", None)  # the model's tokenizer is the same on a resume
            self._init_pretrained(texts, n_classes)
            return
        resumed = self.__dict__.pop("_resumed_tokenizer", None)
        if resumed is not None:  # resuming from a checkpoint: its vocabulary, not a newly learnt one
            self.tokenizer_ = resumed
        elif isinstance(self.tokenizer, str):
            if self.embeddings is not None:
                raise ValueError(
                    "embeddings were given with tokenizer={!r}, which learns a new vocabulary in fit, so "
                    "no pretrained matrix can match its rows. Pass the tokenizers.Tokenizer whose "
                    "vocabulary the embedding rows follow as tokenizer=.".format(self.tokenizer)
                )
            self.tokenizer_ = train_tokenizer(
                texts,
                self.tokenizer,
                vocab_size=self.vocab_size,
                min_frequency=self.min_frequency,
                lowercase=self.lowercase,
            )
        else:
            self.tokenizer_ = _copy_tokenizer(self.tokenizer)
        vocab_size = self.tokenizer_.get_vocab_size(with_added_tokens=True)
        weights = None
        if self.embeddings is not None:
            weights = np.asarray(self.embeddings, dtype=np.float32)
            if weights.ndim != 2 or weights.shape[0] != vocab_size:
                raise ValueError(
                    f"embeddings must have shape (vocab_size, embedding_dim) = ({vocab_size}, "
                    f"{self.embedding_dim}) to match the tokenizer's {vocab_size} tokens, got "
                    f"shape {weights.shape}."
                )
            if weights.shape[1] != self.embedding_dim:
                raise ValueError(
                    f"embeddings have width {weights.shape[1]} but embedding_dim={self.embedding_dim}; "
                    f"set embedding_dim={weights.shape[1]}."
                )
            if not np.isfinite(weights).all():
                raise ValueError("embeddings hold NaN or infinite values.")
        pad = _pad_id(self.tokenizer_)
        self._pad_id = 0 if pad is None else pad
        self.model_ = BiLSTMModule(
            vocab_size=vocab_size,
            embedding_dim=self.embedding_dim,
            hidden_dim=self.hidden_dim,
            n_classes=n_classes,
            num_layers=self.num_layers,
            dropout=self.dropout,
            pooling=self.pooling,
            padding_idx=pad,
        )
        if weights is not None:
            with torch.no_grad():
                self.model_.embedding.weight.copy_(torch.from_numpy(weights))
        if self.freeze_embeddings:
            self.model_.embedding.weight.requires_grad_(False)

    def _init_pretrained(self, texts, n_classes):
        if not isinstance(self.tokenizer, str) or self.tokenizer != "bpe" or self.embeddings is not None:
            raise ValueError(
                f"pretrained={self.pretrained!r} brings its own tokenizer and vectors, so tokenizer= and "
                f"embeddings= must keep their defaults (got tokenizer={self.tokenizer!r}, embeddings "
                f"{'given' if self.embeddings is not None else 'None'}). Pass either pretrained= or "
                f"tokenizer= (with embeddings=), not both."
            )
        dim = int(self.embedding_dim)
        pieces = piece_vectors(self.pretrained, texts, max_length=self.max_length, pca_dims=dim,
                               sif_coefficient=None, device=self.device_, verbose=self.verbose,
                               what="BiLSTMClassifier(pretrained=...)")
        vectors = pieces.vectors
        if vectors.shape[1] != dim:  # too few pieces for Model2Vec's PCA, or a model narrower than dim
            if vectors.shape[1] < dim and len(pieces.kept) > vectors.shape[1]:
                raise ValueError(
                    f"embedding_dim={dim} is wider than the {vectors.shape[1]}-dimensional vectors of "
                    f"pretrained={self.pretrained!r}; set embedding_dim <= {vectors.shape[1]}."
                )
            centered = vectors - vectors.mean(axis=0)
            basis = np.linalg.svd(centered, full_matrices=False)[2][:dim]
            vectors = np.zeros((len(vectors), dim), np.float32)
            vectors[:, : len(basis)] = centered @ basis.T
        std = float(vectors.std())
        vectors = vectors / std if std > 0 else vectors
        self.tokenizer_ = pieces.tokenizer
        self._pad_id = pieces.pad_id
        self._word_cache = pieces.word_cache
        self.model_ = BiLSTMModule(
            vocab_size=pieces.vocab_size,
            embedding_dim=dim,
            hidden_dim=self.hidden_dim,
            n_classes=n_classes,
            num_layers=self.num_layers,
            dropout=self.dropout,
            pooling=self.pooling,
            n_rows=len(pieces.kept) + 1,
        )
        with torch.no_grad():
            self.model_.embedding.weight[1:] = torch.from_numpy(np.ascontiguousarray(vectors, np.float32))
            self.model_.embedding.weight[0] = 0.0
            self.model_.id_map[torch.from_numpy(pieces.kept)] = torch.arange(1, len(pieces.kept) + 1)
        if self.freeze_embeddings:
            self.model_.embedding.weight.requires_grad_(False)

    def _checkpoint_extra(self) -> dict:
        # the learnt vocabulary: WordPiece training is not reproducible, so a resumed fit reuses it
        return {"tokenizer": self.tokenizer_.to_str()}

    def _restore_checkpoint_extra(self, extra: dict) -> None:
        # used by _init_model instead of learning the vocabulary again
        self._resumed_tokenizer = Tokenizer.from_str(extra["tokenizer"])

    def _encode(self, texts):
        # pretrained: the word cache encodes each distinct word of the teacher's tokenizer once;
        # an empty (or all-whitespace) text becomes one pad token: packing needs length >= 1
        return encode_pieces(self.tokenizer_, getattr(self, "_word_cache", None), texts, self.max_length,
                             self._pad_id)

    def _collate(self, seqs, device):
        ids, lengths = pad_ids(seqs, self._pad_id)
        return {"input_ids": ids.to(device), "lengths": lengths}  # packing wants the lengths on the CPU

    def _forward(self, batch):
        return self.model_(batch["input_ids"], batch["lengths"])

    def _onnx_tokenizer(self):
        tok = _copy_tokenizer(self.tokenizer_)
        tok.enable_truncation(int(self.max_length))  # the same as ids[:max_length] without special tokens
        return tok, {"add_special_tokens": False, "empty_as_pad": True}

    def _onnx_module(self, input_names):
        return _ExportableBiLSTM(self.model_)

    def _save_model(self, path: Path) -> None:
        config = {"module": self.model_.config, "user_tokenizer": not isinstance(self.tokenizer, str)}
        save_module_folder(path, self.model_, self.tokenizer_, MODULE_CONFIG_NAME, config)

    def _load_model(self, path: Path) -> None:
        config, self.tokenizer_ = read_module_folder(path, "BiLSTMClassifier", MODULE_CONFIG_NAME)
        module_config = config["module"]
        if config.get("user_tokenizer") and isinstance(self.tokenizer, str):
            # the ready tokenizer was not JSON-serialisable: restore the parameter from the saved copy
            self.tokenizer = copy.deepcopy(self.tokenizer_)
        pad = module_config.get("padding_idx")
        self._pad_id = 0 if pad is None else pad
        self.model_ = BiLSTMModule(**module_config)
        load_module_weights(path, self.model_)
