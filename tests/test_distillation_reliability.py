"""DistillationClassifier reliability: transactional fits, teacher output checks,
score checks, the teacher cache's keys and shards, and interrupts."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline

from kdtext import BiLSTMClassifier, DistillationClassifier
from kdtext.exceptions import TrainingInterruptedWarning

from conftest import make_toy_texts

PROBE = ["a good film", "awful plot", "the music was nice"]


def _lr_teacher(labels=None, seed=3):
    X, y = make_toy_texts(48, seed=seed)
    y = y if labels is None else np.asarray(labels)[y]
    return make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, y)


class BrokenTeacher(ClassifierMixin, BaseEstimator):
    """A fitted teacher whose outputs are NaN (or huge) on texts holding 'film'."""

    def __init__(self, bad="nan", method="predict_proba"):
        self.bad = bad
        self.method = method

    def fit(self, X, y):
        self.inner_ = _lr_teacher()
        self.classes_ = self.inner_.classes_
        return self

    def _outputs(self, X):
        p = self.inner_.predict_proba(X)
        rows = np.array(["film" in t for t in X])
        if self.bad == "nan":
            p[rows] = np.nan
        return p, rows

    def predict(self, X):
        return self.inner_.predict(X)

    def __getattr__(self, name):
        if name == "predict_proba" and self.__dict__.get("method") == "predict_proba":
            return lambda X: self._outputs(X)[0]
        if name == "decision_function" and self.__dict__.get("method") == "decision_function":
            def decision(X):
                p, rows = self._outputs(X)
                d = np.log(p[:, 1] / p[:, 0])
                if self.bad == "huge":
                    d[rows] = 1e300  # fine in float64, infinite in float32
                return d
            return decision
        raise AttributeError(name)


def _fitted_kd():
    X, y = make_toy_texts(60, seed=5)
    return DistillationClassifier(_lr_teacher(), make_pipeline(TfidfVectorizer(), Ridge())).fit(X, y)


def _snapshot(kd):
    return (kd.predict(PROBE).copy(), kd.predict_proba(PROBE).copy(), kd.classes_.copy(), kd.teacher_, kd.target_,
            kd.student_, np.array(kd.teacher_logits_).copy())


def _unchanged(kd, snap):
    pred, proba, classes, teacher, target, student, logits = snap
    assert np.array_equal(kd.predict(PROBE), pred)
    assert np.array_equal(kd.predict_proba(PROBE), proba)
    assert np.array_equal(kd.classes_, classes)
    assert kd.teacher_ is teacher and kd.target_ == target and kd.student_ is student
    assert np.array_equal(np.asarray(kd.teacher_logits_), logits)


def test_failed_refit_changes_nothing():
    """Defect: teacher_, classes_, target_ and teacher_logits_ were set before the route check."""
    kd = _fitted_kd()
    snap = _snapshot(kd)
    kd.set_params(teacher=_lr_teacher(labels=["neg", "pos"]), target="soft")  # Ridge has no fit_soft
    X, _ = make_toy_texts(30, seed=8)
    with pytest.raises(TypeError, match="fit_soft"):
        kd.fit(X)
    _unchanged(kd, snap)


@pytest.mark.parametrize("student", ["ridge", "lr_hard", "lr_proba"])
def test_nan_teacher_outputs_are_an_error_naming_the_teacher(student):
    kd = _fitted_kd()
    snap = _snapshot(kd)
    students = {
        "ridge": (make_pipeline(TfidfVectorizer(), Ridge()), "auto"),
        "lr_hard": (make_pipeline(TfidfVectorizer(), LogisticRegression()), "hard"),
        "lr_proba": (make_pipeline(TfidfVectorizer(), LogisticRegression()), "proba"),
    }
    est, target = students[student]
    X, y = make_toy_texts(40, seed=9)
    n_bad = sum("film" in t for t in X)
    assert 0 < n_bad < len(X)
    kd.set_params(teacher=BrokenTeacher().fit(X, y), student=est, target=target)
    with pytest.raises(ValueError, match=rf"BrokenTeacher returned NaN or infinite outputs for {n_bad} of"):
        kd.fit(X)
    _unchanged(kd, snap)


def test_teacher_margin_overflowing_float32_is_named():
    X, y = make_toy_texts(40, seed=9)
    kd = DistillationClassifier(BrokenTeacher("huge", "decision_function").fit(X, y),
                                make_pipeline(TfidfVectorizer(), Ridge()))
    with pytest.raises(ValueError, match="BrokenTeacher.*float32"):
        kd.fit(X)


def test_score_without_labels_or_with_wrong_weights():
    kd = _fitted_kd()
    X, y = make_toy_texts(10, seed=1)
    with pytest.raises(ValueError, match="true labels y"):
        kd.score(X, None)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(10,\)"):
        kd.score(X, y, sample_weight=np.ones(3))
    assert kd.score(X, y, sample_weight=np.ones(10)) == kd.score(X, y)


def _texts_with_nul_ending_digest(n):
    out, i = [], 0
    while len(out) < n:
        t = f"good film number {i}"
        if hashlib.blake2b(t.encode(), digest_size=16).digest()[-1] == 0:
            out.append(t)
        i += 1
    return out


def test_cache_keys_ending_in_nul_are_found(tmp_path):
    """Defect: keys stored as numpy S16 lost trailing NUL bytes, so ~1 text in 256 was labeled at every fit."""
    X = _texts_with_nul_ending_digest(3) + ["awful plot", "bad film"]
    kd = DistillationClassifier(_lr_teacher(), make_pipeline(TfidfVectorizer(), Ridge()), memory=tmp_path)
    assert kd.fit(X).n_teacher_calls_ == 5
    assert kd.fit(X).n_teacher_calls_ == 0


def test_damaged_cache_shard_is_skipped_with_a_warning(tmp_path):
    X, _ = make_toy_texts(20, seed=2)
    kd = DistillationClassifier(_lr_teacher(), make_pipeline(TfidfVectorizer(), Ridge()), memory=tmp_path)
    kd.fit(X)
    (shard,) = list(tmp_path.rglob("*.npz"))
    shard.write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match=r"shard .*npz is damaged"):
        kd.fit(X)
    assert kd.n_teacher_calls_ == len(set(X))


_LABELING_BUDGET = {"chunks": 0}  # outside the teacher, so changing it leaves the teacher's fingerprint alone


class InterruptingTeacher(ClassifierMixin, BaseEstimator):
    """Labels as many chunks as the budget allows, then raises KeyboardInterrupt (Ctrl-C while labeling)."""

    def fit(self, X, y):
        self.inner_ = _lr_teacher()
        self.classes_ = self.inner_.classes_
        return self

    def predict_proba(self, X):
        if _LABELING_BUDGET["chunks"] <= 0:
            raise KeyboardInterrupt
        _LABELING_BUDGET["chunks"] -= 1
        return self.inner_.predict_proba(X)

    def predict(self, X):
        return self.inner_.predict(X)


def test_labeling_interrupted_keeps_the_finished_shards(tmp_path):
    X = [f"good film {i}" for i in range(25)]
    teacher = InterruptingTeacher().fit(X, None)
    kd = DistillationClassifier(teacher, make_pipeline(TfidfVectorizer(), Ridge()), memory=tmp_path, chunk_size=10)
    _LABELING_BUDGET["chunks"] = 2
    with pytest.raises(KeyboardInterrupt):
        kd.fit(X)
    assert not hasattr(kd, "student_")
    assert len(list(tmp_path.rglob("*.npz"))) == 2
    _LABELING_BUDGET["chunks"] = 10
    kd.fit(X)
    assert kd.n_teacher_calls_ == 5  # only the chunk that was interrupted


def _bilstm(epochs=4):
    return BiLSTMClassifier(vocab_size=300, embedding_dim=16, hidden_dim=16, epochs=epochs, batch_size=8,
                            learning_rate=1e-2, validation_fraction=None, random_state=0)


def _interrupt_bilstm_at(monkeypatch, batch):
    real = BiLSTMClassifier._forward
    calls = {"n": 0}

    def interrupting(self, b):
        if self.model_.training:
            calls["n"] += 1
            if calls["n"] == batch:
                raise KeyboardInterrupt
        return real(self, b)

    monkeypatch.setattr(BiLSTMClassifier, "_forward", interrupting)


def test_ctrl_c_in_the_student_sets_interrupted_and_warns_once(monkeypatch):
    X, y = make_toy_texts(64, seed=4)  # 8 batches per epoch
    _interrupt_bilstm_at(monkeypatch, 12)
    kd = DistillationClassifier(_lr_teacher(), _bilstm(), augment=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kd.fit(X)
    interrupts = [w for w in caught if issubclass(w.category, TrainingInterruptedWarning)]
    assert len(interrupts) == 1 and "DistillationClassifier" in str(interrupts[0].message)
    assert kd.interrupted_ and kd.student_.interrupted_ and kd.student_.n_iter_ == 1
    monkeypatch.undo()
    assert kd.fit(X).interrupted_ is False


def test_ctrl_c_in_the_students_first_epoch_reraises_and_changes_nothing(monkeypatch):
    X, y = make_toy_texts(64, seed=4)
    kd = DistillationClassifier(_lr_teacher(), _bilstm(epochs=2), augment=0).fit(X)
    before = kd.predict_proba(PROBE)
    student = kd.student_
    _interrupt_bilstm_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        kd.fit(X[:40])
    monkeypatch.undo()
    assert kd.student_ is student and np.array_equal(kd.predict_proba(PROBE), before)


def test_tfidf_teacher_fingerprint_ignores_the_stop_words_address():
    """Defect: TfidfVectorizer keeps id(stop_words), an address that differs between processes, so the same TF-IDF
    teacher fitted again in a new session missed its memory cache."""
    import pickle

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    from kdtext.distillation import teacher_fingerprint

    X, y = make_toy_texts(40, seed=0)
    teacher = make_pipeline(make_union(TfidfVectorizer(), TfidfVectorizer(analyzer="char")),
                            LogisticRegression()).fit(X, y)
    other = pickle.loads(pickle.dumps(teacher))  # as if fitted in another process: another address
    words = other[0].transformer_list[0][1]  # the word analyzer checks its stop words (the char one does not)
    words._stop_words_id = words._stop_words_id + 4096
    assert teacher_fingerprint(other) == teacher_fingerprint(teacher)
    assert other[0].transformer_list[0][1]._stop_words_id != teacher[0].transformer_list[0][1]._stop_words_id
    changed = pickle.loads(pickle.dumps(teacher))
    changed[-1].coef_[0, 0] += 1.0
    assert teacher_fingerprint(changed) != teacher_fingerprint(teacher)  # a real difference still shows


def test_teacher_fingerprint_survives_pickling():
    """Defect: joblib.hash of a fitted LogisticRegression changed after a pickle round trip (coef_ is a view),
    so GridSearchCV(n_jobs=...) workers missed the teacher cache and labeled every text again."""
    import pickle

    from kdtext.distillation import teacher_fingerprint

    teacher = _lr_teacher()
    copy = pickle.loads(pickle.dumps(teacher))
    assert teacher_fingerprint(teacher) == teacher_fingerprint(copy)
    X, y = make_toy_texts(40, seed=0)
    bilstm = _bilstm(epochs=1).fit(X, y)
    assert teacher_fingerprint(bilstm) == teacher_fingerprint(pickle.loads(pickle.dumps(bilstm)))
    assert teacher_fingerprint(bilstm) != teacher_fingerprint(_bilstm(epochs=2).fit(X, y))


def test_pickled_teacher_copy_hits_the_cache(tmp_path):
    import pickle

    X, _ = make_toy_texts(30, seed=2)
    teacher = _lr_teacher()
    first = DistillationClassifier(teacher, make_pipeline(TfidfVectorizer(), Ridge()), memory=tmp_path).fit(X)
    assert first.n_teacher_calls_ == len(set(X))
    copy = pickle.loads(pickle.dumps(teacher))  # what a joblib worker receives
    again = DistillationClassifier(copy, make_pipeline(TfidfVectorizer(), Ridge()), memory=tmp_path).fit(X)
    assert again.n_teacher_calls_ == 0


class _ShuffledTeacher(ClassifierMixin, BaseEstimator):
    """A fitted teacher that learnt shuffled labels: useless."""

    def fit(self, X, y):
        rng = np.random.default_rng(0)
        self.inner_ = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, rng.permutation(y))
        self.classes_ = self.inner_.classes_
        return self

    def predict_proba(self, X):
        return self.inner_.predict_proba(X)

    def predict(self, X):
        return self.inner_.predict(X)


def test_teacher_report_warns_about_a_weak_teacher():
    from kdtext.exceptions import WeakTeacherWarning

    X, y = make_toy_texts(90, seed=6)
    weak = _ShuffledTeacher().fit(X, y)
    with pytest.warns(WeakTeacherWarning, match="no better than a quick TF-IDF"):
        kd = DistillationClassifier(weak, make_pipeline(TfidfVectorizer(), Ridge())).fit(X, y)
    r = kd.teacher_report_
    assert r["n_gold"] == 90 and r["teacher_gold_accuracy"] <= r["baseline_cv_accuracy"]
    assert 0.5 <= r["teacher_mean_confidence"] <= 1.0 and r["fidelity"] == kd.fidelity_

    good = _lr_teacher(seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeakTeacherWarning)
        kd = DistillationClassifier(good, make_pipeline(TfidfVectorizer(), Ridge())).fit(X, y)
    assert kd.teacher_report_["teacher_gold_accuracy"] > 0.9
    no_gold = DistillationClassifier(weak, make_pipeline(TfidfVectorizer(), Ridge())).fit(X)
    assert no_gold.teacher_report_["n_gold"] == 0 and "baseline_cv_accuracy" not in no_gold.teacher_report_


def test_teacher_report_never_fails_the_fit():
    """A baseline that cannot be fitted (texts without any word: an empty vocabulary) is noted, not raised."""
    X = ["\U0001F600" * k for k in range(1, 21)] + ["?" * k for k in range(1, 21)]
    y = np.array([1] * 20 + [0] * 20)
    teacher = make_pipeline(TfidfVectorizer(analyzer="char"), LogisticRegression()).fit(X, y)
    kd = DistillationClassifier(teacher, make_pipeline(TfidfVectorizer(analyzer="char"), Ridge())).fit(X, y)
    assert "empty vocabulary" in kd.teacher_report_["baseline_error"]


def test_hub_ids_are_not_taken_for_paths(tmp_path, monkeypatch):
    """A folder named like a hub organisation is not a model store: the hub id stays a hub id."""
    from kdtext.exceptions import ModelNotFoundError
    from kdtext.teachers import resolve_model_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sentence-transformers").mkdir()
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    (tmp_path / "models" / "bert-a").mkdir(parents=True)
    (tmp_path / "models" / "bert-a" / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="not a folder that exists"):
        resolve_model_path("models/bert-b")  # ./models holds model folders: a mistyped path, fails at once
