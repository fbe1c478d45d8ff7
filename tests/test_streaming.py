"""DistillationClassifier.fit streaming a TextFiles transfer set: the same student as the in-memory fit, numpy-only
de-duplication and cache lookup, no list of all texts, clear refusals for students that cannot stream."""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
import pytest
import torch
from conftest import make_toy_texts
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import kdtext._neural
import kdtext.distillation
from kdtext import BiLSTMClassifier, DistillationClassifier, TextFiles, TransformerClassifier, label_texts
from kdtext._stream import StreamedTexts, distinct_keys, text_keys
from kdtext.distillation import _TeacherCache, _text_key, teacher_fingerprint

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

CHUNK = 64  # rows per TextFiles chunk: the corpus below is many chunks


def tfidf_lr():
    return make_pipeline(TfidfVectorizer(), LogisticRegression())


def bilstm(**kw):
    params = dict(vocab_size=300, embedding_dim=16, hidden_dim=16, epochs=2, batch_size=16, random_state=0)
    return BiLSTMClassifier(**{**params, **kw})


@pytest.fixture(scope="module")
def teacher():
    X, y = make_toy_texts(120, seed=0)
    return tfidf_lr().fit(X, y)


@pytest.fixture(scope="module")
def corpus():
    texts, labels = make_toy_texts(500, seed=1)
    # duplicates, within a chunk and across files; 40 of them carry gold labels at their second occurrence
    return texts + texts[:60][::-1], np.concatenate([np.full(500, -1), labels[:60][::-1]])


class CountingFiles(TextFiles):
    """A TextFiles that records its passes and the largest chunk it gave, and refuses to be listed whole."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passes = 0
        self.max_chunk = 0

    def iter_chunks(self):
        self.passes += 1
        for chunk in super().iter_chunks():
            self.max_chunk = max(self.max_chunk, len(chunk))
            yield chunk

    def __iter__(self):
        raise AssertionError("the streaming fit iterated the TextFiles text by text (list(X) or the like)")


def write_corpus(folder, texts, parts=3) -> str:
    bounds = np.linspace(0, len(texts), parts + 1).astype(int)
    for i in range(parts):
        pd.DataFrame({"text": texts[bounds[i] : bounds[i + 1]]}).to_parquet(folder / f"part-{i}.parquet")
    return str(folder / "*.parquet")


def assert_same_student(a, b):
    sa, sb = a.student_.model_.state_dict(), b.student_.model_.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ----------------------------------------------------------------------------- the same student
def test_streaming_fit_gives_the_in_memory_student_bit_for_bit(tmp_path, teacher, corpus):
    texts, y = corpus
    files = TextFiles(write_corpus(tmp_path, texts), chunk_size=CHUNK)
    # gold labels take part in the loss and the validation split; augment="auto" (the default) adds nothing to a
    # stream, so the list fit is told the same
    kw = dict(alpha=0.3, augment=0, random_state=0)
    streamed = DistillationClassifier(teacher, bilstm(), **kw).fit(files, y)
    in_memory = DistillationClassifier(teacher, bilstm(), **kw).fit(list(files), y)
    assert streamed.streamed_ is True and in_memory.streamed_ is False
    assert streamed.n_transfer_ == in_memory.n_transfer_ == 500
    np.testing.assert_array_equal(np.asarray(streamed.teacher_logits_), np.asarray(in_memory.teacher_logits_))
    assert streamed.student_.tokenizer_.to_str() == in_memory.student_.tokenizer_.to_str()  # the streamed vocabulary
    assert_same_student(streamed, in_memory)
    def untimed(history):
        return [{k: v for k, v in r.items() if k != "time"} for r in history]

    assert untimed(streamed.history_) == untimed(in_memory.history_) and len(streamed.history_) == 2
    assert streamed.fidelity_ == in_memory.fidelity_
    report = streamed.teacher_report_
    assert report == in_memory.teacher_report_ and report["n_gold"] == 60 and "baseline_cv_accuracy" in report
    np.testing.assert_array_equal(streamed.predict(texts), in_memory.predict(texts))
    counting = CountingFiles(files.files, chunk_size=CHUNK)  # predict on files: chunk by chunk, the same outputs
    np.testing.assert_array_equal(streamed.predict(counting), in_memory.predict(texts))
    np.testing.assert_allclose(streamed.predict_proba(counting), in_memory.predict_proba(texts), rtol=0, atol=1e-6)
    np.testing.assert_allclose(streamed.decision_function(counting), in_memory.decision_function(texts), atol=1e-6)
    assert counting.passes == 3 and counting.max_chunk == CHUNK


def test_streamed_neural_fit_maps_its_per_text_arrays_and_learns_the_same(tmp_path, teacher, corpus, monkeypatch):
    """Blocks of 64 and every scratch array mapped: the streamed BiLSTM keeps no per-text array in memory (indices,
    the validation split, lengths, offsets, validation targets, batch orders) and learns what the in-memory fit learns
    with numpy's sorts and permutations."""
    texts, y = corpus
    kw = dict(alpha=0.3, augment=0, random_state=0)  # "auto" adds nothing to a stream: the list fits are told so
    reference = DistillationClassifier(teacher, bilstm(), **kw).fit(texts, y)  # default blocks, plain numpy
    made = []
    scratch_array = kdtext._stream.scratch_array

    def recording(shape, dtype, **kwargs):
        out = scratch_array(shape, dtype, **kwargs)
        made.append((np.shape(out), isinstance(out, np.memmap)))
        return out

    for module in (kdtext._stream, kdtext._neural, kdtext.distillation):
        monkeypatch.setattr(module, "_BLOCK", 64)
        monkeypatch.setattr(module, "SCRATCH_MIN_BYTES", 1)
        monkeypatch.setattr(module, "scratch_array", recording)
    files = TextFiles(write_corpus(tmp_path, texts), chunk_size=CHUNK)
    streamed = DistillationClassifier(teacher, bilstm(), **kw).fit(files, y)
    per_text = [m for shape, m in made if shape[0] >= 450]  # the 500 distinct texts, their 450 training texts
    assert len(per_text) >= 10 and all(per_text), made
    made.clear()
    in_memory = DistillationClassifier(teacher, bilstm(), **kw).fit(list(files), y)  # bucketed sorts, in memory
    assert made and not any(m for _, m in made)
    assert_same_student(streamed, reference)
    assert_same_student(in_memory, reference)
    assert streamed.history_[-1]["valid_score"] == reference.history_[-1]["valid_score"]


def test_bucketed_batches_and_length_sorts_are_numpys():
    lengths = np.random.default_rng(0).integers(0, 40, size=3000)
    np.testing.assert_array_equal(kdtext._stream.argsort_lengths(lengths, block=64, min_bytes=1),
                                  np.argsort(-lengths, kind="stable"))
    idx = np.flatnonzero(np.arange(3000) % 7)

    def old_batches(sub, batch_size, rng):  # the in-memory rule as first written
        perm = rng.permutation(len(sub))
        out = []
        for start in range(0, len(perm), batch_size * 50):
            chunk = perm[start : start + batch_size * 50]
            chunk = chunk[np.argsort(sub[chunk], kind="stable")]
            out.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        rng.shuffle(out)
        return out

    new = kdtext._neural.bucketed_batches(lengths, 16, np.random.default_rng(5), idx=idx, min_bytes=1)
    old = old_batches(lengths[idx], 16, np.random.default_rng(5))
    assert len(new) == len(old) and all(np.array_equal(a, b) for a, b in zip(new, old))
    assert isinstance(new[0], np.memmap)  # views of one mapped order


def _old_split(n, y_idx, frac, rng):
    """The stratified/random validation split as first written (everything in memory)."""
    n_val = int(np.ceil(frac * n))
    perm = rng.permutation(n)
    if (y_idx >= 0).all() and len(np.unique(y_idx)) > 1:
        val = []
        for c in np.unique(y_idx):
            members = perm[y_idx[perm] == c]
            val.append(members[: min(int(round(len(members) * n_val / n)), len(members) - 1)])
        val = np.concatenate(val)
        if len(val) < n_val:
            left = np.bincount(y_idx, minlength=y_idx.max() + 1) - np.bincount(y_idx[val], minlength=y_idx.max() + 1)
            taken, extra = set(val.tolist()), []
            for i in perm:
                if len(val) + len(extra) >= n_val:
                    break
                if i not in taken and left[y_idx[i]] > 1:
                    extra.append(i)
                    left[y_idx[i]] -= 1
            val = np.concatenate([val, np.asarray(extra, dtype=val.dtype)])
    else:
        val = perm[:n_val]
    mask = np.zeros(n, bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


@pytest.mark.parametrize("block", [7, 1 << 18])
def test_validation_split_block_by_block_is_the_in_memory_split(monkeypatch, block):
    """Stratified (every text labeled, with the small-data top-up) and random splits: the same indices as the
    in-memory rule, from blocks of 7 and mapped scratch arrays, for balanced, imbalanced and tiny classes."""
    monkeypatch.setattr(kdtext._stream, "_BLOCK", block)
    monkeypatch.setattr(kdtext._neural, "_BLOCK", block)
    est = BiLSTMClassifier()
    gen = np.random.default_rng(0)
    topped_up = 0
    for case in range(60):
        n = int(gen.integers(6, 400))
        k = int(gen.integers(1, 8))
        y = gen.choice(k, size=n, p=gen.dirichlet(np.full(k, 0.3 if case % 2 else 5.0)))
        if case % 5 == 0:
            y[gen.integers(n)] = -1  # one unlabeled text: a random split
        est.validation_fraction = frac = float(gen.choice([0.05, 0.1, 0.2, 0.5]))
        old = _old_split(n, y, frac, np.random.default_rng(case))
        if len(old[1]) == 0:
            with pytest.raises(ValueError, match="keeping a training text of every class"):
                est._split_validation(n, y, np.random.default_rng(case), min_bytes=1)
            continue
        counts = np.bincount(y[y >= 0])
        if (y >= 0).all() and np.count_nonzero(counts) > 1:
            n_val = np.ceil(frac * n)
            topped_up += np.minimum(np.round(counts * n_val / n), np.maximum(counts - 1, 0)).sum() < n_val
        new = est._split_validation(n, y, np.random.default_rng(case), min_bytes=1)
        assert all(isinstance(a, np.memmap) for a in new)
        np.testing.assert_array_equal(new[0], old[0])
        np.testing.assert_array_equal(new[1], old[1])
    assert topped_up >= 3  # the top-up path ran


def test_transformer_student_streams_too(tmp_path, teacher, corpus, tiny_bert_path):
    texts, _ = corpus
    files = TextFiles(write_corpus(tmp_path, texts[:200]), chunk_size=CHUNK)

    def student():
        return TransformerClassifier(tiny_bert_path, epochs=1, batch_size=16, validation_fraction=None,
                                     random_state=0)

    streamed = DistillationClassifier(teacher, student(), stream=True).fit(files)
    in_memory = DistillationClassifier(teacher, student(), augment=0).fit(list(files))
    assert_same_student(streamed, in_memory)


def test_pretrained_bilstm_streams_too(tmp_path, teacher, corpus, tiny_bert_path):
    pytest.importorskip("model2vec")
    texts, _ = corpus
    files = TextFiles(write_corpus(tmp_path, texts[:200]), chunk_size=CHUNK)

    def student():
        return BiLSTMClassifier(pretrained=tiny_bert_path, embedding_dim=8, hidden_dim=8, epochs=2, batch_size=16,
                                validation_fraction=None, random_state=0)

    streamed = DistillationClassifier(teacher, student(), stream=True).fit(files)
    in_memory = DistillationClassifier(teacher, student(), augment=0).fit(list(files))
    assert streamed.streamed_ is True
    assert_same_student(streamed, in_memory)  # the id map (the pieces counted chunk by chunk) included


def test_fit_soft_streams_a_textfiles(tmp_path, teacher, corpus):
    texts, _ = corpus
    files = CountingFiles(write_corpus(tmp_path, texts), chunk_size=CHUNK)
    logits = kdtext.distillation.teacher_logits(teacher, texts)
    a = bilstm().fit_soft(files, logits, classes=[0, 1])
    b = bilstm().fit_soft(texts, logits, classes=[0, 1])
    for k, v in a.model_.state_dict().items():
        assert torch.equal(v, b.model_.state_dict()[k])
    assert files.max_chunk <= CHUNK


# ----------------------------------------------------------------------------- bounded memory
def test_streaming_fit_never_holds_all_texts(tmp_path, teacher, corpus, monkeypatch):
    texts, y = corpus
    files = CountingFiles(write_corpus(tmp_path, texts), chunk_size=CHUNK)
    largest = []

    def counting(check):
        def wrapped(X, *args, **kwargs):
            out = check(X, *args, **kwargs)
            largest.append(len(out))
            return out
        return wrapped

    for module in (kdtext.distillation, kdtext._neural, kdtext.base):
        monkeypatch.setattr(module, "check_texts", counting(module.check_texts))
    monkeypatch.setattr(_TeacherCache, "load", lambda self: pytest.fail("the fit read the cache into a dict"))
    seen = []
    real_logits = kdtext.distillation.teacher_logits

    def teacher_logits(t, chunk):
        seen.append(len(chunk))
        return real_logits(t, chunk)

    monkeypatch.setattr(kdtext.distillation, "teacher_logits", teacher_logits)
    tokens_before = set(os.listdir(tempfile.gettempdir()))
    kd = DistillationClassifier(teacher, bilstm(), memory=tmp_path / "cache", chunk_size=50,
                                random_state=0).fit(files, y)
    assert kd.n_teacher_calls_ == 500 and sum(seen) == 500 and max(seen) == 50
    assert files.max_chunk <= CHUNK and max(largest, default=0) <= CHUNK  # predict and friends: one chunk
    # hash, label the misses, learn the vocabulary, tokenize, predict (fidelity), gold texts of the report
    assert files.passes == 6
    leftover = {f for f in set(os.listdir(tempfile.gettempdir())) - tokens_before if f.startswith("kdtext-")}
    assert not leftover  # the token store and the logits file were unlinked once mapped


# ----------------------------------------------------------------------------- numpy de-duplication and lookup
@pytest.fixture(params=["in memory", "bucketed, mapped"])
def small_blocks(request, monkeypatch):
    """Run the bounded-memory sorts in blocks of 64 keys with every scratch array in a mapped file."""
    if request.param != "in memory":
        monkeypatch.setattr(kdtext._stream, "_BLOCK", 64)
        monkeypatch.setattr(kdtext._stream, "SCRATCH_MIN_BYTES", 1)
    return request.param


def _key_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, size=(300, 16), dtype=np.uint8)
    pool[:50, 8:] = 0  # trailing NUL bytes and shared 8-byte prefixes must not confuse S16 comparisons
    pool[50:100, :8] = pool[0, :8]
    pool[100:120, :2] = 0  # one crowded bucket
    return pool[rng.integers(0, 300, size=n)]


def test_argsort_keys_is_a_stable_argsort(small_blocks):
    rows = _key_rows(5000)
    keys = rows.view("S16").ravel()
    order = kdtext._stream.argsort_keys(keys)
    np.testing.assert_array_equal(order, np.argsort(keys, kind="stable"))
    assert isinstance(order, np.memmap) == (small_blocks != "in memory")


def test_distinct_keys_match_a_dict_and_keep_first_occurrence_order(small_blocks):
    rows = _key_rows(5000)
    keys = rows.view("S16").ravel()
    labels = np.random.default_rng(1).integers(-1, 3, size=len(keys))
    first, gold = distinct_keys(keys, labels)
    position: dict[bytes, int] = {}
    expected_gold: dict[bytes, int] = {}
    for r, label in zip(rows, labels):
        position.setdefault(r.tobytes(), len(position))
        if label >= 0:  # assigned in text order: the last label wins
            expected_gold[r.tobytes()] = int(label)
    expected_first = [next(i for i, r in enumerate(rows) if r.tobytes() == k) for k in position]
    np.testing.assert_array_equal(first, expected_first)
    np.testing.assert_array_equal(gold, [expected_gold.get(k, -1) for k in position])
    assert first.dtype == gold.dtype == np.int64
    assert isinstance(first, np.memmap) == (small_blocks != "in memory")
    first2, no_gold = distinct_keys(keys)
    np.testing.assert_array_equal(first2, first)
    assert (np.asarray(no_gold) == -1).all()
    assert [len(a) for a in distinct_keys(np.zeros(0, "S16"))] == [0, 0]


def test_stream_keys_and_scratch_arrays(small_blocks):
    texts = [f"text {i}" for i in range(500)] + ["", "ё"]
    keys = kdtext._stream.stream_keys([texts[:100], [], texts[100:]])
    np.testing.assert_array_equal(keys.view(np.uint8), text_keys(texts).view(np.uint8))
    assert isinstance(keys, np.memmap) == (small_blocks != "in memory")
    a = kdtext._stream.scratch_array((70, 3), np.float32, fill=-2)
    assert a.shape == (70, 3) and (a == -2).all()
    mask = np.arange(150) % 3 == 0
    np.testing.assert_array_equal(kdtext._stream.flatnonzero_blocks(mask), np.flatnonzero(mask))
    np.testing.assert_array_equal(kdtext._stream.flatnonzero_blocks(mask, invert=True), np.flatnonzero(~mask))


def test_text_keys_are_the_cache_keys():
    texts = ["a", "", "broken \ud800 text", "ё"]
    keys = text_keys(texts)
    assert keys.dtype == np.dtype("S16")
    assert [k.tobytes() for k in keys.view(np.uint8).reshape(-1, 16)] == [_text_key(t) for t in texts]


def test_cache_lookup_is_array_based_and_agrees_with_load(tmp_path, small_blocks):
    cache = _TeacherCache(tmp_path, "fp")
    rng = np.random.default_rng(1)
    texts = [f"text {i}" for i in range(1000)]
    keys = text_keys(texts)
    logits = rng.standard_normal((1000, 3)).astype(np.float32)
    cache.store(keys[:400], logits[:400], name="a")
    cache.store(keys[300:700], logits[300:700] + 1, name="b")  # overlaps "a": the later file wins, as in load()
    (cache.folder / "c.npz").write_bytes(b"not a zip")
    wanted = np.concatenate([keys[::-2], text_keys(["never stored"])])  # any order, a miss included
    out = np.full((len(wanted), 3), np.nan, dtype=np.float32)
    with pytest.warns(UserWarning, match="damaged"):
        hit = cache.lookup(wanted, out)
    with pytest.warns(UserWarning, match="damaged"):
        table = cache.load()
    raw = wanted.view(np.uint8).reshape(-1, 16)
    assert hit.tolist() == [r.tobytes() in table for r in raw]
    assert hit.sum() == 350 and not hit[-1]
    np.testing.assert_array_equal(out[hit], np.stack([table[r.tobytes()] for r, h in zip(raw, hit) if h]))
    index = np.arange(999, 0, -2)  # wanted[:-1] are the keys of these texts
    assert hit[:-1].tolist() == (index < 700).tolist()
    np.testing.assert_array_equal(out[:-1][index < 300], logits[index[index < 300]])
    np.testing.assert_array_equal(out[:-1][(index >= 300) & (index < 700)],
                                  logits[index[(index >= 300) & (index < 700)]] + 1)
    assert np.isnan(out[~hit]).all()  # misses untouched


# ----------------------------------------------------------------------------- labels from label_texts
def test_label_texts_first_then_the_streaming_fit_calls_no_teacher(tmp_path, teacher, corpus, monkeypatch):
    texts, _ = corpus
    files = TextFiles(write_corpus(tmp_path, texts), chunk_size=CHUNK)
    label_texts(teacher, texts[:300], out=tmp_path / "labels", shard_size=64)
    kd = DistillationClassifier(teacher, bilstm(), memory=tmp_path / "labels", random_state=0).fit(files)
    assert kd.n_teacher_calls_ == 500 - len(set(texts[:300]))  # only the texts label_texts had not seen
    label_texts(teacher, files, out=tmp_path / "labels", shard_size=64)

    monkeypatch.setattr(kdtext.distillation, "teacher_logits",
                        lambda *a, **k: pytest.fail("the teacher ran although every label was in memory"))
    again = DistillationClassifier(teacher, bilstm(), memory=tmp_path / "labels", random_state=0).fit(files)
    assert again.n_teacher_calls_ == 0
    np.testing.assert_allclose(np.asarray(again.teacher_logits_), np.asarray(kd.teacher_logits_), atol=1e-6)
    assert teacher_fingerprint(teacher) in os.listdir(tmp_path / "labels" / "kdtext_teacher_cache")


# ----------------------------------------------------------------------------- labels and refusals
def test_y_with_textfiles_is_checked_without_reading_texts_into_memory(tmp_path, teacher, corpus):
    texts, y = corpus
    files = CountingFiles(write_corpus(tmp_path, texts), chunk_size=CHUNK)
    with pytest.raises(ValueError, match=f"different lengths: {len(texts)} texts but {len(texts) - 1} labels"):
        DistillationClassifier(teacher, bilstm()).fit(files, y[:-1])
    with pytest.raises(ValueError, match="teacher does not know"):
        DistillationClassifier(teacher, bilstm()).fit(files, np.where(y >= 0, 7, -1))
    assert files.passes == 2  # one hashing pass each, then the error; no teacher, no student
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "e.txt").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="X is empty"):
        DistillationClassifier(teacher, bilstm(), stream=True).fit(TextFiles(empty / "*.txt"))


def test_students_that_cannot_stream_say_so(tmp_path, teacher, corpus, caplog):
    texts, _ = corpus
    files = CountingFiles(write_corpus(tmp_path, texts), chunk_size=CHUNK)
    with pytest.raises(TypeError, match=r"Pipeline on the 'hard' route cannot learn chunk by chunk: its step "
                                        r"TfidfVectorizer learns .*LogisticRegression has no partial_fit"
                                        r".*list\(TextFiles\(\.\.\.\)\).*BiLSTMClassifier.*HashingVectorizer"):
        DistillationClassifier(teacher, tfidf_lr(), stream=True).fit(files)
    with pytest.raises(TypeError, match=r"'hard' route .*target='soft'"):
        DistillationClassifier(teacher, bilstm(), target="hard", stream=True).fit(files)
    with pytest.raises(TypeError, match=r"augment=2 .*does not stream.*augment=0"):
        DistillationClassifier(teacher, bilstm(), augment=2, stream=True).fit(files)
    assert DistillationClassifier(teacher, bilstm(), augment="auto")._streaming(files, bilstm(), "soft")
    with pytest.raises(TypeError, match=r"X is a list: .*only a kdtext.TextFiles"):
        DistillationClassifier(teacher, bilstm(), stream=True).fit(texts)
    assert files.passes == 0  # refused before reading anything
    from kdtext.static import StaticEmbeddingClassifier

    assert not StaticEmbeddingClassifier._streams_transfer_set and BiLSTMClassifier._streams_transfer_set
    # stream="auto" (the default) falls back to reading the files into memory, and says why in the log
    with caplog.at_level(logging.INFO, logger="kdtext.distillation"):
        plain = TextFiles(files.files, chunk_size=CHUNK)
        kd = DistillationClassifier(teacher, tfidf_lr(), report=False).fit(plain)
    assert kd.n_transfer_ == 500 and kd.streamed_ is False
    assert any("read into memory" in r.message and "cannot learn from a stream" in r.message for r in caplog.records)


def test_a_changed_source_is_an_error():
    class Shrinking:
        def __init__(self):
            self.calls = 0

        def iter_chunks(self):
            self.calls += 1
            yield ["a", "b", "c"][: 4 - self.calls]

    stream = StreamedTexts(Shrinking(), length=3)
    assert list(stream) == ["a", "b", "c"]
    with pytest.raises(RuntimeError, match="changed while it was being read"):
        list(stream)
    assert list(StreamedTexts(Shrinking(), [0, 2])) == ["a", "c"]


# ----------------------------------------------------------------------------- scikit-learn students by partial_fit
def hashing_sgd(final=None):
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import SGDClassifier

    return make_pipeline(HashingVectorizer(n_features=2**12, alternate_sign=False),
                         final if final is not None else SGDClassifier(loss="log_loss", random_state=0))


def _recording_sgd():
    from sklearn.linear_model import SGDClassifier

    class RecordingSGD(SGDClassifier):
        """Records every partial_fit call: rows, the sum of the weights, whether classes were passed."""

        calls: list = []

        def partial_fit(self, X, y, classes=None, sample_weight=None):
            type(self).calls.append((X.shape[0], None if sample_weight is None else float(np.sum(sample_weight)),
                                     classes is not None, sorted(set(np.asarray(y).tolist()))))
            return super().partial_fit(X, y, classes=classes, sample_weight=sample_weight)

    RecordingSGD.calls = []
    return RecordingSGD(loss="log_loss", random_state=0)


def test_sklearn_student_streams_by_partial_fit(tmp_path, teacher, corpus):
    texts, y = corpus
    files = CountingFiles(write_corpus(tmp_path, texts), chunk_size=CHUNK)
    kd = DistillationClassifier(teacher, hashing_sgd(), stream_epochs=3, random_state=0).fit(files, y)
    assert kd.streamed_ is True and kd.target_ == "hard" and kd.n_transfer_ == 500
    assert files.max_chunk <= CHUNK
    # hash, label, 3 epochs of partial_fit, predict (fidelity), the report's gold texts
    assert files.passes == 7
    assert kd.fidelity_ >= 0.9
    again = DistillationClassifier(teacher, hashing_sgd(), stream_epochs=3, random_state=0).fit(
        TextFiles(files.files, chunk_size=CHUNK), y)
    np.testing.assert_array_equal(again.student_[-1].coef_, kd.student_[-1].coef_)  # random_state repeats it
    # the same student learned in memory by its own fit agrees on the teacher's labels as well
    memory = DistillationClassifier(teacher, hashing_sgd(), stream=False).fit(texts, y)
    assert memory.streamed_ is False
    X_test, _ = make_toy_texts(200, seed=9)
    assert np.mean(kd.predict(X_test) == memory.predict(X_test)) >= 0.9


def test_partial_fit_rows_and_weights_are_the_in_memory_routes(tmp_path, teacher, corpus):
    texts, y = corpus
    files = TextFiles(write_corpus(tmp_path, texts), chunk_size=CHUNK)
    final = _recording_sgd()
    DistillationClassifier(teacher, hashing_sgd(final), stream_epochs=2, random_state=0).fit(files, y)
    calls = type(final).calls
    per_epoch = len(calls) // 2
    for epoch in (calls[:per_epoch], calls[per_epoch:]):
        assert sum(c[0] for c in epoch) == 500  # one row per distinct text, alpha=0 adds no gold rows
        assert sum(c[1] for c in epoch) == pytest.approx(500)  # confidence weights scaled to mean 1
        assert max(c[0] for c in epoch) <= CHUNK
    assert [c[2] for c in calls] == [True] + [False] * (len(calls) - 1)  # classes on the first call only

    final = _recording_sgd()
    DistillationClassifier(teacher, hashing_sgd(final), target="proba", alpha=0.5, stream_epochs=1,
                           random_state=0).fit(files, y)
    calls = type(final).calls
    n_gold = int(len(np.unique(np.asarray(texts)[np.asarray(y) >= 0])))
    assert sum(c[0] for c in calls) == 2 * 500 + n_gold  # a row per class, and one per gold label
    assert sum(c[1] for c in calls) == pytest.approx(500)  # (1 - alpha) + alpha per labeled text
    assert all(c[3] == [0, 1] for c in calls if c[0] > 1)


def test_regressor_on_logits_streams(tmp_path, teacher, corpus):
    from sklearn.linear_model import SGDRegressor
    from sklearn.multioutput import MultiOutputRegressor

    texts, y = corpus
    files = TextFiles(write_corpus(tmp_path, texts), chunk_size=CHUNK)
    kd = DistillationClassifier(teacher, hashing_sgd(MultiOutputRegressor(SGDRegressor(random_state=0))),
                                random_state=0).fit(files, y)
    assert kd.streamed_ and kd.target_ == "logits"
    assert kd.decision_function(texts[:5]).shape == (5,)
    assert kd.fidelity_ >= 0.8


def test_stream_false_keeps_a_hashing_student_in_memory(tmp_path, teacher, corpus):
    texts, y = corpus
    files = CountingFiles(write_corpus(tmp_path, texts), chunk_size=CHUNK)
    with pytest.raises(TypeError, match="augment=2 .*does not stream"):
        DistillationClassifier(teacher, hashing_sgd(), augment=2, stream=True).fit(files, y)
    kd = DistillationClassifier(teacher, hashing_sgd(), stream=False, report=False).fit(
        TextFiles(files.files, chunk_size=CHUNK), y)
    assert kd.streamed_ is False and kd.n_transfer_ == 500
