"""DistillationClassifier: teacher use, caching, routes, labels, errors."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from kdtext import DistillationClassifier, TransformerClassifier
from kdtext import distillation as distillation_module
from kdtext.exceptions import NotFittedTeacherError

from conftest import make_toy_texts


class CountingTeacher(ClassifierMixin, BaseEstimator):
    """A fitted teacher that counts every text it is asked to label."""

    def __init__(self, model=None):
        self.model = model

    def fit(self, X, y):
        self.model_ = make_pipeline(TfidfVectorizer(), LogisticRegression(C=10)).fit(X, y)
        self.classes_ = self.model_.classes_
        self.seen_ = []
        return self

    def __getstate__(self):
        # the log is not part of the model: it must not change the teacher's fingerprint
        state = self.__dict__.copy()
        state.pop("seen_", None)
        return state

    def predict_proba(self, X):
        self.seen_.extend(X)
        return self.model_.predict_proba(X)

    def predict(self, X):
        return self.model_.predict(X)


class FlippedTeacher(CountingTeacher):
    """classes_ in descending order, [1, 0]: column j of predict_proba is classes_[j]."""

    def fit(self, X, y):
        super().fit(X, y)
        self.classes_ = self.classes_[::-1].copy()
        return self

    def predict_proba(self, X):
        return super().predict_proba(X)[:, ::-1]


class PredictOnly(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


@pytest.fixture
def data():
    X, y = make_toy_texts(80, seed=0)
    X_unl, _ = make_toy_texts(60, seed=1)
    return X, y, X_unl


@pytest.fixture
def teacher(data):
    X, y, _ = data
    return CountingTeacher().fit(X, y)


def tfidf_ridge():
    return make_pipeline(TfidfVectorizer(), Ridge(alpha=1.0))


def tfidf_lr():
    return make_pipeline(TfidfVectorizer(), LogisticRegression())


def all_x_y(data, marker=-1):
    X, y, X_unl = data
    return X + X_unl, np.concatenate([y, np.full(len(X_unl), marker)])


# ------------------------------------------------------------------ teacher
def test_clone_keeps_the_fitted_teacher(teacher):
    kd = DistillationClassifier(teacher, tfidf_ridge())
    twin = clone(kd)
    assert twin.teacher is teacher
    assert twin.student is not kd.student


def test_frozen_teacher_is_accepted(teacher, data):
    X, y = all_x_y(data)
    kd = DistillationClassifier(FrozenEstimator(teacher), tfidf_lr()).fit(X, y)
    np.testing.assert_array_equal(kd.classes_, teacher.classes_)
    assert clone(kd).teacher.estimator is teacher


def test_teacher_labels_each_distinct_text_once(teacher, data):
    X, y = all_x_y(data)
    X2 = X + X[:30]  # duplicates
    y2 = np.concatenate([y, y[:30]])
    teacher.seen_.clear()
    kd = DistillationClassifier(teacher, tfidf_ridge()).fit(X2, y2)
    distinct = len(set(X2))
    assert kd.n_teacher_calls_ == distinct == kd.n_transfer_
    assert sorted(teacher.seen_) == sorted(set(X2))
    assert kd.teacher_ is teacher


def test_memory_caches_teacher_outputs_across_fits(teacher, data, tmp_path):
    X, y = all_x_y(data)
    teacher.seen_.clear()
    kd = DistillationClassifier(teacher, tfidf_ridge(), memory=str(tmp_path)).fit(X, y)
    assert kd.n_teacher_calls_ == len(set(X))
    first = np.array(kd.teacher_logits_)
    kd2 = DistillationClassifier(teacher, tfidf_lr(), memory=joblib.Memory(tmp_path, verbose=0)).fit(X, y)
    assert kd2.n_teacher_calls_ == 0
    np.testing.assert_allclose(np.array(kd2.teacher_logits_), first, rtol=1e-6)
    assert len(teacher.seen_) == len(set(X))
    # new texts only are labeled
    kd3 = DistillationClassifier(teacher, tfidf_ridge(), memory=tmp_path).fit(X + ["a brand new text"])
    assert kd3.n_teacher_calls_ == 1


def test_grid_search_with_memory_runs_teacher_once_in_total(teacher, data, tmp_path):
    X, y = all_x_y(data)
    teacher.seen_.clear()
    kd = DistillationClassifier(teacher, tfidf_ridge(), memory=tmp_path)
    search = GridSearchCV(kd, {"student__ridge__alpha": [0.1, 1, 10], "alpha": [0, 0.5]}, cv=3)
    search.fit(X, y)
    assert len(teacher.seen_) == len(set(X))  # 18 fits + refit, one teacher pass
    assert search.best_estimator_.teacher_ is teacher


def test_grid_search_without_memory_works_and_scores_labeled_only(teacher, data):
    X, y = all_x_y(data)
    search = GridSearchCV(DistillationClassifier(teacher, tfidf_lr()), {"student__logisticregression__C": [0.1, 10]}, cv=3)
    search.fit(X, y)
    assert 0.5 < search.best_score_ <= 1.0
    scores = cross_val_score(DistillationClassifier(teacher, tfidf_ridge()), X, y, cv=3)
    assert scores.shape == (3,) and (scores > 0.5).all()


# ------------------------------------------------------------------- routes
def test_auto_routes(teacher, data, tiny_bert_path):
    X, y = all_x_y(data)
    assert DistillationClassifier(teacher, tfidf_ridge()).fit(X, y).target_ == "logits"
    assert DistillationClassifier(teacher, tfidf_lr()).fit(X, y).target_ == "hard"
    student = TransformerClassifier(tiny_bert_path, epochs=1, validation_fraction=None)
    assert DistillationClassifier(teacher, student).fit(X, y).target_ == "soft"


def test_logits_route_regresses_teacher_logits(teacher, data):
    X, y = all_x_y(data)
    kd = DistillationClassifier(teacher, make_pipeline(TfidfVectorizer(), Ridge(alpha=1e-6))).fit(X, y)
    logits = distillation_module.teacher_logits(teacher, X)
    predicted = kd.student_.predict(X)
    assert predicted.shape == logits.shape
    np.testing.assert_allclose(predicted, logits, atol=0.1)  # near-interpolation (word order is lost)
    assert np.corrcoef(predicted[:, 1], logits[:, 1])[0, 1] > 0.99
    proba = kd.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1)
    np.testing.assert_array_equal(kd.predict(X), kd.classes_[proba.argmax(1)])
    assert kd.decision_function(X).shape == (len(X),)
    assert kd.fidelity_ == 1.0


def test_hard_route_uses_teacher_labels_weighted_by_confidence(teacher, data, monkeypatch):
    X, y = all_x_y(data)
    captured = {}
    real_fit = LogisticRegression.fit

    def spy(self, X_, y_, sample_weight=None):
        captured["y"], captured["w"] = np.asarray(y_), sample_weight
        return real_fit(self, X_, y_, sample_weight=sample_weight)

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    DistillationClassifier(teacher, tfidf_lr(), alpha=0.0, report=False).fit(X, y)
    proba = teacher.predict_proba(list(dict.fromkeys(X)))
    np.testing.assert_array_equal(captured["y"], teacher.classes_[proba.argmax(1)])
    # weights follow the teacher's confidence, scaled to mean 1 per text (so a fixed C regularises as without them)
    np.testing.assert_allclose(captured["w"], proba.max(1) / proba.max(1).mean(), rtol=1e-5)
    assert captured["w"].mean() == pytest.approx(1.0)
    # alpha > 0: gold rows added with weight alpha, teacher rows of labeled texts weighted 1 - alpha (then scaled)
    DistillationClassifier(teacher, tfidf_lr(), alpha=0.25, report=False).fit(X, y)
    n_labeled = int((y != -1).sum())
    distinct = list(dict.fromkeys(X))
    assert len(captured["y"]) == len(distinct) + n_labeled
    w = captured["w"]
    assert w.sum() == pytest.approx(len(distinct))  # total weight: one per distinct text
    gold_w = w[-n_labeled:]
    np.testing.assert_allclose(gold_w, gold_w[0])
    is_labeled = np.isin(distinct, [x for x, t in zip(X, y) if t != -1])
    # a labeled text's teacher row weighs (1 - alpha) * confidence against its gold row's alpha
    i = int(np.flatnonzero(is_labeled)[0])
    np.testing.assert_allclose(w[i] / gold_w[0], 0.75 * proba.max(1)[i] / 0.25, rtol=1e-5)


def test_hard_route_without_sample_weight(teacher, data):
    X, y = all_x_y(data)
    kd = DistillationClassifier(teacher, make_pipeline(TfidfVectorizer(), KNeighborsClassifier(3))).fit(X, y)
    assert kd.target_ == "hard" and kd.fidelity_ > 0.8


def test_proba_route_is_soft_label_cross_entropy(teacher, data):
    X, y = all_x_y(data)
    kd = DistillationClassifier(teacher, tfidf_lr(), target="proba", temperature=1.0, alpha=0.0).fit(X, y)
    # the same fit by hand: each text once per class, weighted by the teacher's probability
    distinct = list(dict.fromkeys(X))
    p = teacher.predict_proba(distinct)
    rows = [t for t in distinct for _ in range(2)]
    manual = tfidf_lr().fit(rows, np.tile(teacher.classes_, len(distinct)), logisticregression__sample_weight=p.ravel())
    np.testing.assert_allclose(kd.predict_proba(X), manual.predict_proba(X), atol=1e-4)
    with pytest.raises(TypeError, match="sample_weight"):
        DistillationClassifier(teacher, make_pipeline(TfidfVectorizer(), KNeighborsClassifier()), target="proba").fit(X, y)


def test_soft_route_passes_logits_labels_and_loss(teacher, data, monkeypatch):
    X, y = all_x_y(data)
    calls = {}

    class SoftStudent(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):  # pragma: no cover - not used by the soft route
            raise AssertionError("fit must not be called")

        def fit_soft(self, X, teacher_logits, y=None, *, classes, loss="kl", temperature=2.0, alpha=0.0):
            calls.update(X=X, logits=teacher_logits, y=y, classes=classes, loss=loss, T=temperature, alpha=alpha)
            self.classes_ = np.asarray(classes)
            self.fitted_ = True
            return self

        def predict(self, X):
            return self.classes_[np.zeros(len(X), dtype=int)]

    kd = DistillationClassifier(teacher, SoftStudent(), loss="mse", temperature=3.0, alpha=0.3, augment=0).fit(X, y)
    assert kd.target_ == "soft"
    assert calls["loss"] == "mse" and calls["T"] == 3.0 and calls["alpha"] == 0.3
    assert calls["logits"].shape == (len(set(X)), 2)
    gold = calls["y"]
    assert ((gold == -1).sum(), (gold >= 0).sum()) == (60, 80)
    np.testing.assert_array_equal(calls["classes"], teacher.classes_)


def test_transformer_student_distils(teacher, data, tiny_bert_path):
    X, y = all_x_y(data)
    student = TransformerClassifier(tiny_bert_path, epochs=10, batch_size=8, learning_rate=1e-3,
                                    validation_fraction=None, random_state=0)
    kd = DistillationClassifier(teacher, student, alpha=0.0, loss="kl", temperature=2.0).fit(X, y)
    X_test, y_test = make_toy_texts(60, seed=9)
    assert kd.score(X_test, y_test) >= 0.85
    assert kd.fidelity_ >= 0.85 and len(kd.history_) == 10


# ------------------------------------------------------------ augmentation
def test_augmentation_is_deterministic_and_labeled_by_teacher(teacher, data):
    X, y = all_x_y(data)
    teacher.seen_.clear()
    a = DistillationClassifier(teacher, tfidf_ridge(), augment=2, p_mask=0.2, random_state=0).fit(X, y)
    assert a.n_transfer_ > len(set(X))
    assert len(teacher.seen_) == a.n_transfer_
    b = DistillationClassifier(teacher, tfidf_ridge(), augment=2, p_mask=0.2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(np.array(a.teacher_logits_), np.array(b.teacher_logits_))
    c = DistillationClassifier(teacher, tfidf_ridge(), augment=2, p_mask=0.2, random_state=1).fit(X, y)
    assert c.n_transfer_ != a.n_transfer_ or not np.array_equal(np.array(a.teacher_logits_), np.array(c.teacher_logits_))


def test_augment_auto_the_default_grows_small_transfer_sets_of_neural_students(teacher, data, monkeypatch):
    from kdtext import BiLSTMClassifier

    X, y = all_x_y(data)
    assert DistillationClassifier(teacher, tfidf_ridge()).augment == "auto"
    kd = DistillationClassifier(teacher, tfidf_ridge()).fit(X, y)  # the default
    assert kd.augment_ == 0 and kd.n_transfer_ == len(set(X))  # scikit-learn students: none
    student = BiLSTMClassifier(vocab_size=300, embedding_dim=8, hidden_dim=8, epochs=1, random_state=0)
    kd = DistillationClassifier(teacher, student, random_state=0).fit(X, y)  # the default
    assert kd.augment_ == distillation_module.AUGMENT_MAX  # a few hundred texts: the most variants
    assert kd.n_transfer_ > 2 * len(set(X))
    assert DistillationClassifier(teacher, student, augment=1).fit(X, y).augment_ == 1
    # the rule: variants enough to reach AUGMENT_TARGET texts, at most AUGMENT_MAX, none beyond the target
    auto = DistillationClassifier(teacher, student, augment="auto")
    target = distillation_module.AUGMENT_TARGET
    assert [auto._n_variants(n, "soft") for n in (100, target // 5, target // 2, target - 1, target, 10 * target)] \
        == [4, 4, 1, 1, 0, 0]
    assert auto._n_variants(100, "hard") == 0


# -------------------------------------------------------------------- labels
def test_y_none_all_unlabeled_and_generators(teacher, data):
    X, _, X_unl = data
    kd = DistillationClassifier(teacher, tfidf_ridge()).fit(X_unl)
    assert kd.n_transfer_ == len(set(X_unl))
    kd2 = DistillationClassifier(teacher, tfidf_ridge()).fit(t for t in X_unl)
    np.testing.assert_array_equal(kd2.predict(X), kd.predict(X))
    kd3 = DistillationClassifier(teacher, tfidf_lr(), alpha=0.5).fit(X_unl, np.full(len(X_unl), -1))
    assert kd3.n_transfer_ == len(set(X_unl))


def test_string_labels_with_a_marker(data):
    X, y, X_unl = data
    names = np.array(["neg", "pos"])[y]
    teacher = CountingTeacher().fit(X, names)
    y_all = np.array(list(names) + [None] * len(X_unl), dtype=object)
    kd = DistillationClassifier(teacher, tfidf_lr(), unlabeled_label=None).fit(X + X_unl, y_all)
    assert set(kd.predict(X).tolist()) <= {"neg", "pos"}
    assert kd.score(X + X_unl, y_all) > 0.8  # None entries are not scored
    with pytest.raises(ValueError, match="unlabeled_label=None"):
        DistillationClassifier(teacher, tfidf_lr()).fit(X + X_unl, y_all)
    ambiguous = np.array(list(names) + ["-1"] * len(X_unl))
    with pytest.raises(ValueError, match="ambiguous"):
        DistillationClassifier(teacher, tfidf_lr()).fit(X + X_unl, ambiguous)
    kd2 = DistillationClassifier(teacher, tfidf_lr(), unlabeled_label="-1").fit(X + X_unl, ambiguous)
    assert kd2.n_transfer_ == len(set(X + X_unl))


def test_marker_that_is_a_class_is_rejected(data):
    X, y, _ = data
    teacher = CountingTeacher().fit(X, y - 1)  # classes -1 and 0
    with pytest.raises(ValueError, match="also one of the teacher's classes"):
        DistillationClassifier(teacher, tfidf_lr()).fit(X, y - 1)


def test_unknown_labels_are_rejected(teacher, data):
    X, y, _ = data
    with pytest.raises(ValueError, match="does not know"):
        DistillationClassifier(teacher, tfidf_lr()).fit(X, y + 5)


# -------------------------------------------------------------------- errors
def test_unfitted_teacher_is_clear(data):
    X, y, _ = data
    with pytest.raises(NotFittedTeacherError, match="teacher.fit"):
        DistillationClassifier(CountingTeacher(), tfidf_lr()).fit(X, y)
    with pytest.raises(NotFittedError):
        DistillationClassifier(TransformerClassifier(), tfidf_lr()).fit(X, y)


def test_teacher_without_probabilities_is_clear(data):
    X, y, _ = data
    with pytest.raises(TypeError, match="predict_proba nor decision_function"):
        DistillationClassifier(PredictOnly().fit(X, y), tfidf_lr()).fit(X, y)


def test_empty_and_bad_x(teacher):
    with pytest.raises(ValueError, match="empty"):
        DistillationClassifier(teacher, tfidf_lr()).fit([])
    with pytest.raises(TypeError, match="single str"):
        DistillationClassifier(teacher, tfidf_lr()).fit("one text")
    with pytest.raises(ValueError, match="lengths"):
        DistillationClassifier(teacher, tfidf_lr()).fit(["a", "b"], [0])


def test_large_teacher_outputs_are_memory_mapped(teacher, data, monkeypatch):
    X, y = all_x_y(data)
    monkeypatch.setattr(distillation_module, "MEMMAP_THRESHOLD", 0)
    kd = DistillationClassifier(teacher, tfidf_ridge(), chunk_size=7).fit(X, y)
    assert isinstance(kd.teacher_logits_, np.memmap)
    # the backing file is an unnamed temporary file (kdtext._stream.scratch_array): nothing piles up across fits
    assert kd.teacher_logits_.filename is None
    np.testing.assert_allclose(np.asarray(kd.teacher_logits_), distillation_module.teacher_logits(teacher, list(dict.fromkeys(X))), rtol=1e-5)


def test_pickle_round_trip(teacher, data):
    X, y = all_x_y(data)
    kd = DistillationClassifier(teacher, tfidf_lr()).fit(X, y)
    again = pickle.loads(pickle.dumps(kd))
    np.testing.assert_allclose(again.predict_proba(X), kd.predict_proba(X))


def test_teacher_logits_helper_matches_probabilities(teacher, data):
    X, _, _ = data
    logits = distillation_module.teacher_logits(teacher, X)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(p, teacher.predict_proba(X), rtol=1e-4)
    lr = teacher.model_  # binary decision_function route
    d_logits = distillation_module.teacher_logits(type("D", (), {"decision_function": lr.decision_function})(), X)
    np.testing.assert_allclose(d_logits[:, 1] - d_logits[:, 0], lr.decision_function(X), rtol=1e-5)


# ------------------------------------------------ kdtext teacher end to end
def test_transformer_teacher_into_bilstm_student(data, tiny_bert_path):
    """The main use: a fitted TransformerClassifier teacher, used as is, distilled into a BiLSTM."""
    import torch

    from kdtext import BiLSTMClassifier

    X_unl = data[2]
    X, y = make_toy_texts(120, seed=0)
    teacher = TransformerClassifier(tiny_bert_path, epochs=10, batch_size=8, learning_rate=1e-3,
                                    validation_fraction=None, random_state=0).fit(X, y)
    model = teacher.model_
    before = {k: v.clone() for k, v in model.state_dict().items()}
    student = BiLSTMClassifier(vocab_size=300, embedding_dim=16, hidden_dim=16, epochs=15, batch_size=16,
                               learning_rate=1e-2, validation_fraction=None, random_state=0)
    X_all = X + X_unl + X[:10]  # ten duplicates: labeled once each
    y_all = np.concatenate([y, np.full(len(X_unl), -1), y[:10]])
    kd = DistillationClassifier(teacher, student, loss="mse", alpha=0.0, augment=0, random_state=0).fit(X_all, y_all)

    assert kd.teacher_ is teacher and teacher.model_ is model  # used, not copied or refitted
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert clone(kd).teacher is teacher
    assert kd.n_teacher_calls_ == len(set(X_all))
    # the soft labels are the teacher's own logits, in the order of the distinct texts
    distinct = list(dict.fromkeys(X_all))
    np.testing.assert_allclose(np.asarray(kd.teacher_logits_), teacher.predict_logits(distinct), atol=1e-5)
    np.testing.assert_array_equal(kd.classes_, teacher.classes_)
    X_test, y_test = make_toy_texts(60, seed=9)
    assert teacher.score(X_test, y_test) >= 0.9
    assert kd.score(X_test, y_test) >= 0.85 and kd.fidelity_ >= 0.85
    assert isinstance(kd.student_, BiLSTMClassifier) and len(kd.history_) > 0
    again = pickle.loads(pickle.dumps(kd))
    np.testing.assert_array_equal(again.predict(X_test), kd.predict(X_test))


# ------------------------------------------------------- review regressions
def test_decision_function_follows_the_teachers_classes(data):
    """Columns (or the binary margin's sign) follow ``classes_``, whatever the student saw or its order."""
    X3, y3 = make_toy_texts(90, seed=0, n_classes=3)
    teacher3 = make_pipeline(TfidfVectorizer(), LogisticRegression(C=10)).fit(X3, y3)
    only_two = [x for x, c in zip(X3, y3) if c < 2]  # the teacher labels these 0 or 1 only
    kd = DistillationClassifier(teacher3, tfidf_lr()).fit(only_two)
    assert list(kd.student_.classes_) == [0, 1]
    scores = kd.decision_function(X3[:6])
    assert scores.shape == (6, 3) and np.isneginf(scores[:, 2]).all()
    np.testing.assert_array_equal(kd.classes_[np.argmax(scores, axis=1)], kd.predict(X3[:6]))

    X, y, _ = data
    flipped = FlippedTeacher().fit(X, y)
    kd2 = DistillationClassifier(flipped, tfidf_lr()).fit(X)
    assert list(kd2.classes_) == [1, 0] and list(kd2.student_.classes_) == [0, 1]
    margin = kd2.decision_function(X)
    assert margin.shape == (len(X),)
    np.testing.assert_array_equal(np.where(margin > 0, kd2.classes_[1], kd2.classes_[0]), kd2.predict(X))


def test_all_unlabeled_numbers_with_a_string_teacher(data):
    X, y, X_unl = data
    teacher = CountingTeacher().fit(X, np.array(["neg", "pos"])[y])
    kd = DistillationClassifier(teacher, tfidf_lr()).fit(X_unl, np.full(len(X_unl), -1))
    assert kd.n_transfer_ == len(set(X_unl)) and set(kd.predict(X).tolist()) <= {"neg", "pos"}
    with pytest.raises(ValueError, match="numbers but the teacher's classes are strings"):
        DistillationClassifier(teacher, tfidf_lr()).fit(X, y)


def test_float32_nan_is_unlabeled_with_marker_none(teacher, data):
    X, y, _ = data
    y32 = y.astype(np.float32)
    y32[::2] = np.nan
    kd = DistillationClassifier(teacher, tfidf_lr(), unlabeled_label=None, alpha=0.5).fit(X, y32)
    assert kd.n_transfer_ == len(set(X))
    assert kd.score(X, y32) > 0.8


def test_refit_with_a_student_without_history_drops_the_old_history(teacher, data, tiny_bert_path):
    from kdtext import BiLSTMClassifier

    X, y = all_x_y(data)
    kd = DistillationClassifier(teacher, BiLSTMClassifier(vocab_size=300, embedding_dim=8, hidden_dim=8, epochs=1,
                                                          validation_fraction=None, random_state=0)).fit(X, y)
    assert len(kd.history_) == 1
    kd.set_params(student=tfidf_ridge()).fit(X, y)
    assert not hasattr(kd, "history_")


def test_memory_keys_texts_with_lone_surrogates(teacher, data, tmp_path):
    X, y = all_x_y(data)
    odd = "good film \udcff"
    kd = DistillationClassifier(teacher, tfidf_ridge(), memory=tmp_path).fit(X + [odd])
    assert kd.n_transfer_ == len(set(X)) + 1
    again = DistillationClassifier(teacher, tfidf_ridge(), memory=tmp_path).fit(X + [odd])
    assert again.n_teacher_calls_ == 0
