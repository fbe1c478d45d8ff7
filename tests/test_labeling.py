"""kdtext.labeling: TextFiles over Parquet / CSV / text files, label_texts in process and on a Dask LocalCluster,
resumption after a crash, and DistillationClassifier(memory=out) finding every label."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import make_toy_texts
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import kdtext.distillation
import kdtext.labeling
from kdtext import DistillationClassifier, TextFiles, label_texts
from kdtext.distillation import _text_key, teacher_logits
from kdtext.labeling import iter_shards, shard_id

pd = pytest.importorskip("pandas")


def tfidf_lr():
    return make_pipeline(TfidfVectorizer(), LogisticRegression())


@pytest.fixture(scope="module")
def teacher():
    X, y = make_toy_texts(120, seed=0)
    return tfidf_lr().fit(X, y)


@pytest.fixture(scope="module")
def corpus():
    texts, _ = make_toy_texts(300, seed=1)
    return texts + texts[:20]  # duplicates: each distinct text is labeled once per shard


def read_labels(folder) -> dict[bytes, np.ndarray]:
    """Every (key, logits) pair in a shard folder, as DistillationClassifier's cache reads them."""
    return kdtext.distillation._TeacherCache(folder.parent.parent, folder.name).load()


def assert_labels_match(table, teacher, texts, atol=1e-5):
    distinct = list(dict.fromkeys(texts))
    assert set(table) == {_text_key(t) for t in distinct}
    expected = teacher_logits(teacher, distinct)
    got = np.stack([table[_text_key(t)] for t in distinct])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)


# ----------------------------------------------------------------------------- TextFiles
def test_textfiles_reads_parquet_csv_tsv_and_text_in_order(tmp_path):
    pytest.importorskip("pyarrow")
    pd.DataFrame({"id": [1, 2, 3], "text": ["p1", "p2", "p3"]}).to_parquet(tmp_path / "b.parquet")
    pd.DataFrame({"text": ["NA", "", "with, comma", 'multi\nline "quoted"'], "y": [0, 1, 0, 1]}).to_csv(
        tmp_path / "a.csv", index=False)
    (tmp_path / "c.tsv").write_text("label\ttext\n0\tt1\n1\tt2\n", encoding="utf-8")
    (tmp_path / "d.txt").write_text("l1\nl2\r\n\nl4", encoding="utf-8")  # CRLF, an empty line, no final newline
    files = TextFiles(tmp_path / "*.*", chunk_size=2)
    assert [f.name for f in files.files] == ["a.csv", "b.parquet", "c.tsv", "d.txt"]  # sorted: deterministic
    expected = ["NA", "", "with, comma", 'multi\nline "quoted"', "p1", "p2", "p3", "t1", "t2", "l1", "l2", "", "l4"]
    assert list(files) == expected
    assert list(files) == expected  # iterable again
    assert all(len(c) <= 2 for c in files.iter_chunks())
    assert files.count() == len(expected)
    # a list of patterns keeps its order
    assert list(TextFiles([tmp_path / "d.txt", tmp_path / "a.csv"]))[:2] == ["l1", "l2"]


def test_textfiles_work_where_kdtext_takes_texts(tmp_path, teacher):
    texts, _ = make_toy_texts(40, seed=3)
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    files = TextFiles(tmp_path / "t.txt")
    assert list(files) == texts
    kd = DistillationClassifier(teacher, tfidf_lr(), report=False).fit(files)
    assert kd.n_transfer_ == len(set(texts))
    assert kd.predict(files).shape == (40,)


def test_textfiles_other_encodings_and_undecodable_files(tmp_path):
    words = ["привет", "мир", "тёплый"]
    (tmp_path / "ru.csv").write_bytes(("text\n" + "\n".join(words) + "\n").encode("cp1251"))
    (tmp_path / "ru.txt").write_bytes(("ok\n" + "\n".join(words)).encode("cp1251"))
    assert list(TextFiles(tmp_path / "ru.csv", encoding="cp1251")) == words
    assert list(TextFiles(tmp_path / "ru.txt", encoding="cp1251")) == ["ok"] + words
    # as UTF-8 they do not decode: the file and the offset of its first non-UTF-8 byte are named
    with pytest.raises(ValueError, match=r"ru\.csv is not valid utf-8.*byte offset 5 .*encoding="):
        list(TextFiles(tmp_path / "ru.csv"))
    with pytest.raises(ValueError, match=r"ru\.txt is not valid utf-8.*byte offset 3 "):
        list(TextFiles(tmp_path / "ru.txt"))
    (tmp_path / "u16.txt").write_bytes("first\nsecond\n".encode("utf-16"))
    assert list(TextFiles(tmp_path / "u16.txt", encoding="utf-16")) == ["first", "second"]
    with pytest.raises(ValueError, match="encoding"):
        TextFiles(tmp_path / "ru.txt", encoding="no-such-codec")


def test_textfiles_errors_name_the_file_column_and_row(tmp_path):
    pytest.importorskip("pyarrow")
    pd.DataFrame({"body": ["a"], "y": [1]}).to_csv(tmp_path / "x.csv", index=False)
    pd.DataFrame({"text": ["a", "b", "c", None], "y": [1, 2, 3, 4]}).to_parquet(tmp_path / "n.parquet")
    pd.DataFrame({"text": [1, 2]}).to_parquet(tmp_path / "i.parquet")
    with pytest.raises(ValueError, match=r"x\.csv has no column 'text'; its columns are \['body', 'y'\].*text_column"):
        list(TextFiles(tmp_path / "x.csv"))
    assert list(TextFiles(tmp_path / "x.csv", text_column="body")) == ["a"]
    with pytest.raises(ValueError, match=r"n\.parquet has no column 'body'"):
        list(TextFiles(tmp_path / "n.parquet", text_column="body"))
    # the missing text is in the second chunk: its row counts from the start of the file
    with pytest.raises(ValueError, match=r"n\.parquet has a missing text \(None/NaN\) at data row 3"):
        list(TextFiles(tmp_path / "n.parquet", chunk_size=2))
    with pytest.raises(TypeError, match=r"i\.parquet holds int64, not strings"):
        list(TextFiles(tmp_path / "i.parquet"))
    with pytest.raises(FileNotFoundError, match="matches no file"):
        TextFiles(tmp_path / "*.jsonl")
    with pytest.raises(FileNotFoundError, match="No such file"):
        TextFiles(tmp_path / "missing.csv")
    with pytest.raises(IsADirectoryError, match="pattern"):
        TextFiles(tmp_path)
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(ValueError, match="format='parquet'"):
        TextFiles(tmp_path / "data.json")
    with pytest.raises(ValueError, match="paths is empty"):
        TextFiles([])


def test_shards_have_stable_content_ids(tmp_path, corpus):
    (tmp_path / "c.txt").write_text("\n".join(corpus), encoding="utf-8")
    from_files = list(TextFiles(tmp_path / "c.txt", chunk_size=7).iter_shards(50))
    from_list = list(iter_shards(corpus, 50))
    assert [s for s, _ in from_files] == [s for s, _ in from_list]
    assert [len(t) for _, t in from_list] == [50] * 6 + [20]
    assert [t for _, t in from_list] == [corpus[i : i + 50] for i in range(0, len(corpus), 50)]
    assert shard_id(corpus[:50]) == from_list[0][0] != shard_id(corpus[1:51])
    with pytest.raises(ValueError, match="shard_size must be a positive int"):
        list(iter_shards(corpus, 0))


# ----------------------------------------------------------------------------- label_texts
def test_label_texts_in_process_then_distillation_labels_nothing(tmp_path, teacher, corpus, monkeypatch):
    result = label_texts(teacher, corpus, out=tmp_path / "labels", shard_size=50)
    assert (result.n_shards, result.n_labeled_shards, result.n_skipped_shards) == (7, 7, 0)
    assert result.n_texts == len(corpus) and result.n_workers == 1
    assert result.fingerprint == kdtext.distillation.teacher_fingerprint(teacher)
    folder = tmp_path / "labels" / "kdtext_teacher_cache" / result.fingerprint
    assert result.folder == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"shard-{s}.npz" for s, _ in iter_shards(corpus, 50))
    assert_labels_match(read_labels(folder), teacher, corpus)

    again = label_texts(teacher, corpus, out=tmp_path / "labels", shard_size=50)
    assert (again.n_labeled_shards, again.n_skipped_shards, again.n_labeled_texts) == (0, 7, 0)

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher was called although label_texts labeled every text")

    monkeypatch.setattr(kdtext.distillation, "teacher_logits", no_teacher)
    kd = DistillationClassifier(teacher, tfidf_lr(), memory=tmp_path / "labels", report=False).fit(corpus)
    assert kd.n_teacher_calls_ == 0
    assert kd.n_transfer_ == len(set(corpus))


def test_label_texts_resumes_after_a_crash(tmp_path, teacher, corpus, monkeypatch):
    real = kdtext.labeling.label_shard
    calls = []

    def crash_after_three(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the job is killed while labeling its fourth shard
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(kdtext.labeling, "label_shard", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        label_texts(teacher, corpus, out=tmp_path, shard_size=50)
    monkeypatch.setattr(kdtext.labeling, "label_shard", real)
    folder = tmp_path / "kdtext_teacher_cache" / kdtext.distillation.teacher_fingerprint(teacher)
    assert len(list(folder.glob("*.npz"))) == 3
    (folder / "stray.tmp").write_bytes(b"half a file")  # a worker killed mid-write leaves at most this

    resumed = label_texts(teacher, corpus, out=tmp_path, shard_size=50)
    assert (resumed.n_shards, resumed.n_skipped_shards, resumed.n_labeled_shards) == (7, 3, 4)
    labeled_now = {s for s, _ in iter_shards(corpus, 50)} - set(calls)
    assert {p.stem for p in folder.glob("*.npz")} == {f"shard-{s}" for s in set(calls) | labeled_now}
    assert_labels_match(read_labels(folder), teacher, corpus)


def test_label_texts_reads_files(tmp_path, teacher, corpus):
    pytest.importorskip("pyarrow")
    pd.DataFrame({"body": corpus[:150]}).to_parquet(tmp_path / "part-0.parquet")
    pd.DataFrame({"body": corpus[150:]}).to_parquet(tmp_path / "part-1.parquet")
    result = label_texts(teacher, str(tmp_path / "*.parquet"), text_column="body", out=tmp_path / "out",
                         shard_size=100)
    assert (result.n_shards, result.n_texts) == (4, len(corpus))  # shards run across file boundaries
    assert_labels_match(read_labels(Path(result.folder)), teacher, corpus)
    files = TextFiles(tmp_path / "*.parquet", text_column="body")
    assert label_texts(teacher, files, out=tmp_path / "out", shard_size=100).n_skipped_shards == 4
    with pytest.raises(ValueError, match="text_column='text' .*only|TextFiles reads column 'body'"):
        label_texts(teacher, files, out=tmp_path / "out", text_column="other")


class Unfitted(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):  # pragma: no cover - never reached
        return np.ones((len(X), 2)) / 2


def test_label_texts_validates_first(tmp_path, teacher, corpus):
    with pytest.raises(NotFittedError, match=r"not fitted.*teacher\.fit"):
        label_texts(Unfitted(), corpus, out=tmp_path)
    with pytest.raises(TypeError, match="neither predict_proba nor decision_function"):
        label_texts(_PredictOnly().fit(corpus, [0, 1] * 160), corpus, out=tmp_path)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        label_texts(teacher, corpus, out=tmp_path / "a_file")
    with pytest.raises(TypeError, match="out must be a folder"):
        label_texts(teacher, corpus, out=None)
    for bad in (0, -5, 2.5, True, "100"):
        with pytest.raises(ValueError, match="shard_size must be a positive int"):
            label_texts(teacher, corpus, out=tmp_path, shard_size=bad)
    with pytest.raises(ValueError, match="missing value"):
        label_texts(teacher, ["fine", None], out=tmp_path)
    with pytest.raises(TypeError, match="client must be a dask.distributed.Client"):
        label_texts(teacher, corpus, out=tmp_path, client="tcp://localhost:8786")
    assert not list(tmp_path.glob("kdtext_teacher_cache/*/*.npz"))  # nothing labeled by a failed call


class _PredictOnly(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):  # pragma: no cover - never reached
        return np.full(len(X), self.classes_[0])


# ----------------------------------------------------------------------------- Dask
_UNPICKLED = []


class UnpickleCountingTeacher(ClassifierMixin, BaseEstimator):
    """A teacher that records, in the process that unpickles it, each time it arrives."""

    def __init__(self, inner=None):
        self.inner = inner

    def fit(self, X, y):
        self.inner_ = tfidf_lr().fit(X, y)
        self.classes_ = self.inner_.classes_
        return self

    def predict_proba(self, X):
        return self.inner_.predict_proba(X)

    def predict(self, X):
        return self.inner_.predict(X)

    def __setstate__(self, state):
        _UNPICKLED.append(1)
        super().__setstate__(state)


def _n_unpickled() -> int:  # run on each worker: its own count
    return len(_UNPICKLED)


def _reset_unpickled() -> None:
    _UNPICKLED.clear()


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    # Dask's nanny writes its pre-spawn environment (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, ...) into this process's
    # os.environ and never takes it back; later tests' subprocesses would then run torch on one thread.
    environ = dict(os.environ)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=40)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
    os.environ.clear()
    os.environ.update(environ)


def test_dask_cluster_gives_the_in_process_logits(tmp_path, teacher, corpus, dask_client, tiny_bert_path):
    from kdtext import TransformerClassifier

    X, y = make_toy_texts(40, seed=0)
    tiny = TransformerClassifier(tiny_bert_path, epochs=1, batch_size=8, validation_fraction=None,
                                 random_state=0, predict_batch_size=16).fit(X, y)
    for name, model in [("tfidf", teacher), ("transformer", tiny)]:
        local = label_texts(model, corpus, out=tmp_path / name / "local", shard_size=50)
        remote = label_texts(model, corpus, out=tmp_path / name / "dask", shard_size=50, client=dask_client)
        assert remote.n_workers == 2 and remote.fingerprint == local.fingerprint
        assert (remote.n_shards, remote.n_labeled_shards) == (local.n_shards, local.n_labeled_shards) == (7, 7)
        a, b = read_labels(Path(local.folder)), read_labels(Path(remote.folder))
        assert set(a) == set(b)
        assert max(float(np.abs(a[k] - b[k]).max()) for k in a) <= 1e-5
        assert_labels_match(b, model, corpus)

    # resume on the cluster: two shard files lost, two shards labeled again
    folder = Path(remote.folder)
    for p in sorted(folder.glob("*.npz"))[:2]:
        p.unlink()
    resumed = label_texts(tiny, corpus, out=tmp_path / "transformer" / "dask", shard_size=50, client=dask_client)
    assert (resumed.n_labeled_shards, resumed.n_skipped_shards) == (2, 5)
    kd = DistillationClassifier(tiny, tfidf_lr(), memory=tmp_path / "transformer" / "dask", report=False).fit(corpus)
    assert kd.n_teacher_calls_ == 0


def test_dask_ships_the_teacher_once_per_worker(tmp_path, corpus, dask_client):
    X, y = make_toy_texts(60, seed=0)
    model = UnpickleCountingTeacher().fit(X, y)
    dask_client.run(_reset_unpickled)
    result = label_texts(model, corpus, out=tmp_path, shard_size=20, client=dask_client)
    assert (result.n_labeled_shards, result.n_skipped_shards) == (15, 1)  # the last shard repeats the first
    per_worker = dask_client.run(_n_unpickled)
    assert sorted(per_worker.values()) == [1, 1], per_worker  # 15 tasks, one copy of the teacher per worker
    # the job's end unregisters the plugin: no worker keeps the teacher
    assert dask_client.run(_n_shipped) == dict.fromkeys(per_worker, 0)


def _n_shipped() -> int:  # run on each worker
    return len(kdtext.labeling._SHIPPED_TEACHERS)


def test_a_shipped_teacher_missing_on_a_worker_is_a_clear_error():
    with pytest.raises(RuntimeError, match="is not on this Dask worker"):
        kdtext.labeling._ShippedTeacher("no-such-job").load()


class NanTeacher(UnpickleCountingTeacher):
    """Logits that are NaN for texts holding "boring": a broken teacher."""

    def predict_proba(self, X):
        p = self.inner_.predict_proba(X)
        p[["boring" in t for t in X]] = np.nan
        return p


def test_a_failing_task_stops_the_dask_job_with_its_error(tmp_path, corpus, dask_client):
    X, y = make_toy_texts(60, seed=0)
    with pytest.raises(ValueError, match="NaN or infinite outputs"):
        label_texts(NanTeacher().fit(X, y), corpus, out=tmp_path, shard_size=20, client=dask_client)
    folder = next((tmp_path / "kdtext_teacher_cache").iterdir())
    for p in folder.glob("*.npz"):  # what was written is whole and holds only finite labels
        with np.load(p) as data:
            assert np.isfinite(data["logits"]).all()


# --------------------------------------------------------------------------- a teacher named by its folder
@pytest.fixture(scope="module")
def saved_teacher(tmp_path_factory):
    from kdtext import BiLSTMClassifier

    X, y = make_toy_texts(60, seed=0)
    model = BiLSTMClassifier(vocab_size=200, embedding_dim=8, hidden_dim=8, epochs=1, random_state=0,
                             device="cpu").fit(X, y)
    folder = tmp_path_factory.mktemp("saved-teacher")
    model.save_pretrained(folder)
    return model, folder


def _loaded_teachers() -> list:  # run on each worker
    return [type(t).__name__ for t in kdtext.labeling._LOADED_TEACHERS.values()]


def test_a_teacher_folder_labels_as_the_teacher_itself(tmp_path, saved_teacher, corpus):
    model, folder = saved_teacher
    by_folder = label_texts(folder, corpus, out=tmp_path, shard_size=50)
    assert by_folder.fingerprint == kdtext.distillation.teacher_fingerprint(model)
    assert by_folder.n_labeled_shards == 7
    assert_labels_match(read_labels(Path(by_folder.folder)), model, corpus)
    # the object finds the folder's labels: the same cache, nothing labeled again
    assert label_texts(model, corpus, out=tmp_path, shard_size=50).n_labeled_shards == 0


def test_dask_workers_load_a_teacher_folder_themselves(tmp_path, saved_teacher, corpus, dask_client):
    model, folder = saved_teacher
    dask_client.run(kdtext.labeling._LOADED_TEACHERS.clear)
    result = label_texts(str(folder), corpus, out=tmp_path, shard_size=50, client=dask_client)
    assert result.fingerprint == kdtext.distillation.teacher_fingerprint(model)
    assert (result.n_shards, result.n_labeled_shards) == (7, 7)
    assert_labels_match(read_labels(Path(result.folder)), model, corpus)
    loaded = dask_client.run(_loaded_teachers)  # each worker that labeled holds exactly one copy, loaded there
    assert all(v in ([], ["BiLSTMClassifier"]) for v in loaded.values()), loaded
    assert ["BiLSTMClassifier"] in loaded.values()


def test_a_missing_teacher_folder_is_refused_before_anything_is_written(tmp_path, corpus):
    from kdtext.exceptions import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="does not exist.*save_pretrained"):
        label_texts(tmp_path / "no-such-teacher", corpus, out=tmp_path / "labels")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="holds neither kdtext_config.json nor onnx_config.json"):
        label_texts(tmp_path / "empty", corpus, out=tmp_path / "labels")
    assert not (tmp_path / "labels").exists()
