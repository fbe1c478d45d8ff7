"""DistillationClassifierCV: candidates, folds, the twin, the teacher's single pass, state and errors."""

from __future__ import annotations

import pickle
import tempfile

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

import kdtext
from kdtext import DistillationClassifier, DistillationClassifierCV
from kdtext.model_selection import _default_grid, _RegressorTwin

from conftest import make_toy_texts

CLASSIFIER_GRID = [
    {"alpha": 0.0, "target": "hard"},
    {"alpha": 0.0, "target": "proba"},
    {"alpha": 0.5, "target": "hard"},
    {"alpha": 0.5, "target": "proba"},
]


class CountingTeacher(ClassifierMixin, BaseEstimator):
    """A fitted TF-IDF + LogisticRegression teacher that logs every text it labels."""

    def __init__(self, C=10.0):
        self.C = C

    def fit(self, X, y):
        self.model_ = make_pipeline(TfidfVectorizer(), LogisticRegression(C=self.C)).fit(X, y)
        self.classes_ = self.model_.classes_
        self.seen_ = []
        return self

    def __getstate__(self):  # the log is not part of the model: it must not change the cache fingerprint
        state = self.__dict__.copy()
        state.pop("seen_", None)
        return state

    def predict_proba(self, X):
        self.seen_.extend(X)
        return self.model_.predict_proba(X)

    def predict(self, X):
        return self.model_.predict(X)


class SoftStudent(ClassifierMixin, BaseEstimator):
    """A fake kdtext student: fit_soft records the settings, predicts through a TF-IDF + LR."""

    def fit(self, X, y):
        self.model_ = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def fit_soft(self, X, teacher_logits, y=None, *, classes, loss="kl", temperature=2.0, alpha=0.0):
        self.settings_ = (loss, temperature, alpha)
        classes = np.asarray(classes)
        self.model_ = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, classes[np.argmax(teacher_logits, 1)])
        self.classes_ = classes
        return self

    def predict(self, X):
        return self.model_.predict(X)


class FailsOnLargeFits(ClassifierMixin, BaseEstimator):
    """A TF-IDF + LR student whose fit fails on more than ``max_texts`` texts (so the refit on all data fails)."""

    def __init__(self, max_texts=10**9):
        self.max_texts = max_texts

    def fit(self, X, y, sample_weight=None):
        if len(X) > self.max_texts:
            raise RuntimeError("student fit failed")
        self.model_ = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(
            X, y, logisticregression__sample_weight=sample_weight
        )
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


def tfidf_lr():
    return make_pipeline(TfidfVectorizer(), LogisticRegression())


def tfidf_ridge():
    return make_pipeline(TfidfVectorizer(), Ridge())


@pytest.fixture
def data():
    """60 labeled texts, 60 unlabeled ones, a teacher fitted on 120 other texts."""
    X, y = make_toy_texts(60, seed=0)
    X_unl, _ = make_toy_texts(60, seed=1)
    X_teacher, y_teacher = make_toy_texts(120, seed=2)
    return X + X_unl, np.concatenate([y, np.full(len(X_unl), -1)]), CountingTeacher().fit(X_teacher, y_teacher)


# ------------------------------------------------------------- default grids
def test_default_grid_for_classifier_students(data):
    X, y, teacher = data
    cv = DistillationClassifierCV(teacher, tfidf_lr(), random_state=0).fit(X, y)
    assert cv.cv_results_["params"] == [{"twin": True}] + CLASSIFIER_GRID
    # without sample_weight there is no "proba" route
    knn = make_pipeline(TfidfVectorizer(), KNeighborsClassifier(3))
    cv = DistillationClassifierCV(teacher, knn, random_state=0).fit(X, y)
    assert cv.cv_results_["params"] == [{"twin": True}, {"alpha": 0.0, "target": "hard"}, {"alpha": 0.5, "target": "hard"}]


def test_default_grid_for_regressor_students_and_the_regressor_twin(data):
    X, y, teacher = data
    cv = DistillationClassifierCV(teacher, tfidf_ridge(), random_state=0).fit(X, y)
    assert cv.cv_results_["params"] == [{"twin": True}, {"target": "logits"}]
    # the twin alone: a regressor fitted on one-hot gold labels, its argmax predicts
    twin = DistillationClassifierCV(teacher, tfidf_ridge(), param_grid=[], random_state=0).fit(X, y)
    assert twin.best_params_ == {"twin": True} and twin.n_teacher_calls_ == 0
    assert isinstance(twin.best_estimator_, _RegressorTwin)
    X_test, y_test = make_toy_texts(40, seed=9)
    assert twin.score(X_test, y_test) > 0.8
    margin = twin.decision_function(X_test)
    assert margin.shape == (len(X_test),)
    np.testing.assert_array_equal(np.where(margin > 0, twin.classes_[1], twin.classes_[0]), twin.predict(X_test))
    assert not hasattr(twin, "predict_proba")  # the regressed one-hot scores are no probabilities


def test_default_grid_for_soft_students(data):
    X, y, teacher = data
    cv = DistillationClassifierCV(teacher, SoftStudent(), random_state=0).fit(X, y)
    assert cv.cv_results_["params"] == [
        {"twin": True},
        {"alpha": 0.0, "loss": "kl", "temperature": 1.0},
        {"alpha": 0.0, "loss": "kl", "temperature": 2.0},
        {"alpha": 0.0, "loss": "kl", "temperature": 4.0},
        {"alpha": 0.5, "loss": "kl", "temperature": 2.0},
        {"alpha": 0.0, "loss": "mse"},
    ]
    if cv.best_params_ != {"twin": True}:
        best = cv.best_params_
        assert cv.best_estimator_.student_.settings_[0] == best["loss"]
        assert cv.best_estimator_.student_.settings_[2] == best["alpha"]


def test_user_grid_replaces_the_default(data):
    X, y, teacher = data
    grid = {"student__logisticregression__C": [0.1, 10.0], "target": ["hard"]}
    cv = DistillationClassifierCV(teacher, tfidf_lr(), param_grid=grid, include_twin=False, random_state=0).fit(X, y)
    assert cv.cv_results_["params"] == [
        {"student__logisticregression__C": 0.1, "target": "hard"},
        {"student__logisticregression__C": 10.0, "target": "hard"},
    ]
    assert np.isnan(cv.twin_score_)
    assert isinstance(cv.best_estimator_, DistillationClassifier)
    assert cv.best_estimator_.get_params()["student__logisticregression__C"] == cv.best_params_["student__logisticregression__C"]


def test_bilstm_student(data):
    from kdtext import BiLSTMClassifier

    X, y, teacher = data
    student = BiLSTMClassifier(vocab_size=400, embedding_dim=16, hidden_dim=16, epochs=2, batch_size=8,
                               validation_fraction=None, random_state=0)
    # the default grid is the soft-student one (run in full on SoftStudent above); a short grid keeps this fast
    assert _default_grid(student) == [
        {"loss": ["kl"], "alpha": [0.0], "temperature": [1.0, 2.0, 4.0]},
        {"loss": ["kl"], "alpha": [0.5], "temperature": [2.0]},
        {"loss": ["mse"], "alpha": [0.0]},
    ]
    cv = DistillationClassifierCV(teacher, student, param_grid={"loss": ["mse"], "alpha": [0.0]}, cv=2,
                                  distiller_params={"augment": 0}, random_state=0).fit(X, y)
    assert cv.cv_results_["params"] == [{"twin": True}, {"alpha": 0.0, "loss": "mse"}] and cv.n_splits_ == 2
    assert cv.n_teacher_calls_ == len(set(X))
    if cv.best_params_ == {"twin": True}:
        assert isinstance(cv.best_estimator_, BiLSTMClassifier)
    else:
        assert isinstance(cv.best_estimator_, DistillationClassifier) and cv.best_estimator_.target_ == "soft"
    X_test, _ = make_toy_texts(20, seed=9)
    proba = cv.predict_proba(X_test)
    assert proba.shape == (20, 2)
    np.testing.assert_array_equal(cv.classes_[proba.argmax(1)], cv.predict(X_test))


# ------------------------------------------------------------ the teacher
def test_teacher_labels_each_distinct_text_once_over_the_whole_search(data):
    X, y, teacher = data
    X2, y2 = X + X[:20] + X[-10:], np.concatenate([y, y[:20], y[-10:]])  # copies, labeled and unlabeled
    teacher.seen_.clear()
    cv = DistillationClassifierCV(teacher, tfidf_lr(), random_state=0).fit(X2, y2)
    # 5 candidates x 3 folds + the refit, one teacher pass
    assert sorted(teacher.seen_) == sorted(set(X2))
    assert cv.n_teacher_calls_ == len(set(X2))
    if cv.best_params_ != {"twin": True}:
        assert cv.best_estimator_.teacher_ is teacher
    # in parallel too (threads, so the log is shared)
    teacher.seen_.clear()
    with parallel_config(backend="threading"):
        cv = DistillationClassifierCV(teacher, tfidf_ridge(), n_jobs=2, random_state=0).fit(X2, y2)
    assert sorted(teacher.seen_) == sorted(set(X2)) and cv.n_teacher_calls_ == len(set(X2))


def test_temporary_memory_is_removed_and_a_given_one_is_reused(data, tmp_path, monkeypatch):
    X, y, teacher = data
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cv = DistillationClassifierCV(teacher, tfidf_lr(), param_grid={"target": ["hard"]}, random_state=0).fit(X, y)
    assert list(scratch.iterdir()) == []  # the temporary cache is gone
    if cv.best_params_ != {"twin": True}:
        assert cv.best_estimator_.memory is None  # it does not point at the removed folder
    memory = tmp_path / "cache"
    first = DistillationClassifierCV(teacher, tfidf_lr(), memory=memory, random_state=0).fit(X, y)
    assert first.n_teacher_calls_ == len(set(X)) and any(memory.iterdir())
    again = DistillationClassifierCV(teacher, tfidf_ridge(), memory=memory, random_state=0).fit(X, y)
    assert again.n_teacher_calls_ == 0


# ------------------------------------------------------------- selection
def test_twin_is_chosen_when_the_teacher_is_useless(data):
    X, y, _ = data
    X_teacher, y_teacher = make_toy_texts(120, seed=2)
    useless = CountingTeacher().fit(X_teacher, np.random.default_rng(0).permutation(y_teacher))
    for student in (tfidf_lr(), tfidf_ridge()):
        cv = DistillationClassifierCV(useless, student, random_state=0).fit(X, y)
        assert cv.best_params_ == {"twin": True}
        assert cv.best_score_ == cv.twin_score_ == cv.cv_results_["mean_test_score"][0]
        assert cv.best_index_ == 0 and cv.cv_results_["rank_test_score"][0] == 1
        assert cv.twin_score_ > cv.cv_results_["mean_test_score"][1:].max()
        X_test, y_test = make_toy_texts(40, seed=9)
        assert cv.score(X_test, y_test) > 0.8


def test_distilled_candidate_is_chosen_when_the_teacher_is_good_and_gold_labels_few():
    X_gold, y_gold = make_toy_texts(12, seed=0)  # 6 gold labels per class
    X_unl, _ = make_toy_texts(200, seed=1)
    X_teacher, y_teacher = make_toy_texts(300, seed=2)
    teacher = CountingTeacher().fit(X_teacher, y_teacher)
    X = X_gold + X_unl
    y = np.concatenate([y_gold, np.full(len(X_unl), -1)])
    cv = DistillationClassifierCV(teacher, tfidf_lr(), random_state=0).fit(X, y)
    assert cv.best_params_ != {"twin": True}
    assert cv.best_score_ > cv.twin_score_
    assert isinstance(cv.best_estimator_, DistillationClassifier)
    assert cv.best_estimator_.get_params()["target"] == cv.best_params_["target"]
    X_test, y_test = make_toy_texts(100, seed=9)
    twin = tfidf_lr().fit(X_gold, y_gold)
    assert cv.score(X_test, y_test) > twin.score(X_test, y_test)


def test_cv_results_layout(data):
    X, y, teacher = data
    cv = DistillationClassifierCV(teacher, tfidf_lr(), cv=4, random_state=0).fit(X, y)
    res = cv.cv_results_
    n = 1 + len(CLASSIFIER_GRID)
    for key in ("params", "mean_test_score", "std_test_score", "rank_test_score", "mean_fit_time", "std_fit_time",
                "mean_score_time", "std_score_time", "param_alpha", "param_target", "param_twin"):
        assert len(res[key]) == n, key
    splits = np.column_stack([res[f"split{k}_test_score"] for k in range(4)])
    assert "split4_test_score" not in res and cv.n_splits_ == 4
    np.testing.assert_allclose(res["mean_test_score"], splits.mean(1))
    np.testing.assert_allclose(res["std_test_score"], splits.std(1))
    assert res["param_twin"][0] is True and res["param_twin"].mask[1:].all()
    assert res["param_alpha"].mask[0] and list(res["param_alpha"][1:]) == [0.0, 0.0, 0.5, 0.5]
    assert res["rank_test_score"].min() == 1 and res["rank_test_score"].dtype == np.int32
    assert cv.best_params_ == res["params"][cv.best_index_]
    assert cv.best_score_ == res["mean_test_score"].max()
    np.testing.assert_array_equal(cv.classes_, teacher.classes_)


def test_held_out_gold_texts_leave_the_transfer_set(data, monkeypatch):
    X, y, teacher = data
    X, y = X + X[:6] + X[-6:], np.concatenate([y, y[:6], y[-6:]])  # copies of labeled and unlabeled texts
    seen = []
    real_fit = DistillationClassifier.fit

    def spy(self, X_, y_=None):
        seen.append((list(X_), np.asarray(y_)))
        return real_fit(self, X_, y_)

    monkeypatch.setattr(DistillationClassifier, "fit", spy)
    labeled = [t for t, v in zip(X, y) if v != -1]
    unlabeled = {t for t, v in zip(X, y) if v == -1}
    # an explicit iterable of splits over the labeled subset (positions among the labeled texts)
    half = len(labeled) // 2
    splits = [(np.arange(half, len(labeled)), np.arange(half)), (np.arange(half), np.arange(half, len(labeled)))]
    DistillationClassifierCV(teacher, tfidf_lr(), cv=splits, param_grid={"target": ["hard"]}).fit(X, y)
    assert len(seen) == 3  # two folds and the refit
    for (train_X, train_y), (_, test) in zip(seen, splits):
        held = {labeled[i] for i in test}
        assert not held & set(train_X)
        assert (unlabeled - held) <= set(train_X)
        assert set(train_X) == (set(X) - held)
    assert seen[-1][0] == X  # the refit sees everything
    # int cv: copies of a labeled text are held out together, and every labeled text is held out once
    seen.clear()
    DistillationClassifierCV(teacher, tfidf_lr(), cv=3, param_grid={"target": ["hard"]}, random_state=0).fit(X, y)
    held_out = [set(labeled) - set(train_X) for train_X, _ in seen[:3]]
    assert set.union(*held_out) == set(labeled) and sum(map(len, held_out)) == len(set(labeled))
    # a splitter object works as well
    seen.clear()
    cv = DistillationClassifierCV(teacher, tfidf_lr(), cv=KFold(2), param_grid={"target": ["hard"]}).fit(X, y)
    assert cv.n_splits_ == 2 and len(seen) == 3


def test_scoring_and_score_ignore_unlabeled_entries(data):
    X, y, teacher = data
    cv = DistillationClassifierCV(teacher, tfidf_lr(), scoring="f1_macro", random_state=0).fit(X, y)
    assert 0.5 < cv.best_score_ <= 1.0
    assert cv.score(X, y) == pytest.approx(cv.score([t for t, v in zip(X, y) if v != -1], y[y != -1]))

    def errors(est, X_, y_):
        return -float(np.mean(est.predict(X_) != y_))

    cv2 = DistillationClassifierCV(teacher, tfidf_lr(), scoring=errors, random_state=0).fit(X, y)
    assert -0.5 < cv2.best_score_ <= 0.0
    assert cv2.score(X, y) <= 0.0
    with pytest.raises(ValueError, match="no labeled texts"):
        cv.score(X[:3], [-1, -1, -1])


def test_string_labels_with_a_none_marker(data):
    X, y, _ = data
    names = np.array(["neg", "pos"])
    X_teacher, y_teacher = make_toy_texts(120, seed=2)
    teacher = CountingTeacher().fit(X_teacher, names[y_teacher])
    y_str = np.array([None if v == -1 else names[v] for v in y], dtype=object)
    cv = DistillationClassifierCV(teacher, tfidf_lr(), unlabeled_label=None, random_state=0).fit(X, y_str)
    assert set(cv.predict(X).tolist()) <= {"neg", "pos"}
    assert cv.score(X, y_str) > 0.8


def test_refit_false_has_no_prediction_methods(data):
    X, y, teacher = data
    cv = DistillationClassifierCV(teacher, tfidf_lr(), refit=False, random_state=0).fit(X, y)
    assert not hasattr(cv, "best_estimator_") and cv.best_params_
    with pytest.raises(AttributeError, match="has no attribute 'predict'") as info:
        cv.predict(X)
    assert "refit=False" in str(info.value.__cause__)


# ------------------------------------------------- sklearn plumbing, state
def test_clone_get_params_and_pickle(data):
    X, y, teacher = data
    cv = DistillationClassifierCV(teacher, tfidf_lr(), cv=2, distiller_params={"chunk_size": 16}, random_state=0)
    twin = clone(cv)
    assert twin.teacher is teacher and twin.student is not cv.student
    params = cv.get_params()
    assert params["cv"] == 2 and params["distiller_params"] == {"chunk_size": 16}
    assert "student__logisticregression__C" in params
    cv.fit(X, y)
    again = pickle.loads(pickle.dumps(cv))
    np.testing.assert_allclose(again.predict_proba(X), cv.predict_proba(X))
    assert again.best_params_ == cv.best_params_ and again.n_teacher_calls_ == cv.n_teacher_calls_
    if cv.best_params_ != {"twin": True}:
        assert cv.best_estimator_.chunk_size == 16


def test_distiller_params_reach_every_candidate(data, monkeypatch):
    X, y, teacher = data
    chunk_sizes = []
    real_fit = DistillationClassifier.fit

    def spy(self, X_, y_=None):
        chunk_sizes.append((self.chunk_size, self.augment))
        return real_fit(self, X_, y_)

    monkeypatch.setattr(DistillationClassifier, "fit", spy)
    DistillationClassifierCV(teacher, tfidf_ridge(), distiller_params={"chunk_size": 7, "augment": 1},
                             random_state=0).fit(X, y)
    assert chunk_sizes and set(chunk_sizes) == {(7, 1)}


def test_a_failing_refit_leaves_the_fitted_state_unchanged(data):
    X, y, teacher = data
    cv = DistillationClassifierCV(teacher, FailsOnLargeFits(), param_grid={"target": ["hard"]}, include_twin=False,
                                  random_state=0).fit(X, y)
    before = {k: v for k, v in vars(cv).items() if k.endswith("_")}
    proba = cv.predict_proba(X)
    # the folds train on fewer texts than the refit: only the refit fails
    cv.set_params(student=FailsOnLargeFits(max_texts=len(set(X)) - 1))
    with pytest.raises(RuntimeError, match="student fit failed"):
        cv.fit(X, y)
    after = {k: v for k, v in vars(cv).items() if k.endswith("_")}
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    np.testing.assert_array_equal(cv.predict_proba(X), proba)


def test_public_name():
    assert "DistillationClassifierCV" in kdtext.__all__
    assert kdtext.DistillationClassifierCV is DistillationClassifierCV


# ------------------------------------------------------------------ errors
def test_too_few_labeled_texts_per_class(data):
    X, y, teacher = data
    y_few = np.full(len(y), -1)
    y_few[[0, 1, 2, 3, 5]] = y[[0, 1, 2, 3, 5]]  # class 0: 2 texts, class 1: 3 texts
    with pytest.raises(ValueError, match=r"cv=3 needs at least 3 .*\{0: 2, 1: 3\}.*Lower cv \(to at most 2\)"):
        DistillationClassifierCV(teacher, tfidf_lr()).fit(X, y_few)
    cv = DistillationClassifierCV(teacher, tfidf_lr(), cv=2, random_state=0).fit(X, y_few)
    assert cv.n_splits_ == 2


def test_no_labeled_texts(data):
    X, y, teacher = data
    with pytest.raises(ValueError, match="no labeled texts"):
        DistillationClassifierCV(teacher, tfidf_lr()).fit(X, np.full(len(X), -1))
    with pytest.raises(ValueError, match="needs gold labels"):
        DistillationClassifierCV(teacher, tfidf_lr()).fit(X, None)


def test_one_gold_class_needs_include_twin_false(data):
    X, y, teacher = data
    y_one = np.where(y == 1, -1, y)
    with pytest.raises(ValueError, match="single class.*include_twin=False"):
        DistillationClassifierCV(teacher, tfidf_lr()).fit(X, y_one)
    with pytest.warns(UserWarning, match=r"No text has a gold label of the teacher's classes \[1\]"):
        cv = DistillationClassifierCV(teacher, tfidf_lr(), include_twin=False, random_state=0).fit(X, y_one)
    assert set(cv.predict(X).tolist()) == {0, 1}  # the teacher taught the class gold labels never showed


def test_bad_grids_and_distiller_params(data):
    X, y, teacher = data
    with pytest.raises(ValueError, match="cannot search"):
        DistillationClassifierCV(teacher, tfidf_lr(), param_grid={"memory": [None]}).fit(X, y)
    with pytest.raises(ValueError, match="cannot search"):
        DistillationClassifierCV(teacher, tfidf_lr(), param_grid={"twin": [True]}).fit(X, y)
    with pytest.raises(ValueError, match="both in distiller_params"):
        DistillationClassifierCV(teacher, tfidf_lr(), param_grid={"alpha": [0.1]}, distiller_params={"alpha": 0.2}).fit(X, y)
    with pytest.raises(ValueError, match="not DistillationClassifier parameters"):
        DistillationClassifierCV(teacher, tfidf_lr(), distiller_params={"augmnet": 2}).fit(X, y)
    with pytest.raises(ValueError, match="pass them to DistillationClassifierCV"):
        DistillationClassifierCV(teacher, tfidf_lr(), distiller_params={"memory": "x"}).fit(X, y)
    with pytest.raises(ValueError, match="Invalid parameter"):
        DistillationClassifierCV(teacher, tfidf_lr(), param_grid={"alhpa": [0.1]}).fit(X, y)
    with pytest.raises(ValueError, match="no candidates"):
        DistillationClassifierCV(teacher, tfidf_lr(), param_grid=[], include_twin=False).fit(X, y)
    with pytest.raises(TypeError, match="no default param_grid"):
        DistillationClassifierCV(teacher, make_pipeline(TfidfVectorizer(), KMeans(2))).fit(X, y)
    with pytest.raises(ValueError, match="scoring"):
        DistillationClassifierCV(teacher, tfidf_lr(), scoring="no_such_metric").fit(X, y)
    assert teacher.seen_ == []  # every error came before the teacher ran
