"""DistillationClassifierCV: distillation settings chosen on held-out gold labels, the hard-label twin included."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import warnings
from numbers import Integral
from typing import Any, Iterable, Iterator

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone, is_classifier, is_regressor
from sklearn.metrics import get_scorer, get_scorer_names
from sklearn.model_selection import ParameterGrid, StratifiedKFold, check_cv
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .base import TextInputMixin, check_score_labels, check_texts, is_soft_target_student
from .distillation import (
    DistillationClassifier,
    _bind_pretrained,
    _check_partly_labeled_scoring,
    _SharesTeacherMixin,
    _sample_weight_key,
)

logger = logging.getLogger(__name__)

__all__ = ["DistillationClassifierCV"]

#: The parameters of the candidate distillers that DistillationClassifierCV sets itself.
_OWN_PARAMS = frozenset({"teacher", "student", "memory", "unlabeled_label"})

#: The key of the twin's entry in ``best_params_`` and ``cv_results_["params"]``.
_TWIN = "twin"


def _student_kind(student: Any) -> str:
    """"soft" (has ``fit_soft``), "regressor", "classifier" or "unknown"."""
    if is_soft_target_student(student):
        return "soft"
    if is_regressor(student):
        return "regressor"
    if is_classifier(student):
        return "classifier"
    return "unknown"


def _default_grid(student: Any) -> list[dict[str, list]]:
    """The default candidates by student kind (see the class docstring for the measurement behind them)."""
    kind = _student_kind(student)
    if kind == "soft":
        return [
            {"loss": ["kl"], "alpha": [0.0], "temperature": [1.0, 2.0, 4.0]},
            {"loss": ["kl"], "alpha": [0.5], "temperature": [2.0]},
            {"loss": ["mse"], "alpha": [0.0]},
        ]
    if kind == "regressor":
        return [{"target": ["logits"]}]
    if kind == "classifier":
        # "proba" needs sample_weight: a classifier without it (e.g. k-NN) gets the "hard" route only
        targets = ["hard", "proba"] if _sample_weight_key(student) is not None else ["hard"]
        return [{"target": targets, "alpha": [0.0, 0.5]}]
    raise TypeError(
        f"There is no default param_grid for the student {type(student).__name__}: it is neither a classifier, a "
        "regressor, nor has fit_soft. Pass param_grid explicitly, e.g. param_grid={'target': ['logits']}."
    )


class _RegressorTwin(TextInputMixin, ClassifierMixin, BaseEstimator):
    """The hard-label twin of a regressor student: it regresses one-hot gold labels, the argmax predicts.

    Parameters
    ----------
    regressor : regressor
        Cloned and fitted on the one-hot targets; the fitted copy is ``regressor_``.
    """

    def __init__(self, regressor: Any):
        self.regressor = regressor

    def fit(self, X, y):
        texts = check_texts(X)
        y = np.asarray(y)
        classes, codes = np.unique(y, return_inverse=True)
        onehot = np.zeros((len(texts), len(classes)), dtype=np.float64)
        onehot[np.arange(len(texts)), codes.reshape(-1)] = 1.0
        self.regressor_ = clone(self.regressor).fit(texts, onehot)
        self.classes_ = classes
        return self

    def _scores(self, X) -> np.ndarray:
        check_is_fitted(self, "regressor_")
        texts = check_texts(X)
        return np.asarray(self.regressor_.predict(texts), dtype=np.float64).reshape(len(texts), -1)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self._scores(X), axis=1)]

    def decision_function(self, X) -> np.ndarray:
        """The regressed one-hot scores; for two classes the score of ``classes_[1]`` minus ``classes_[0]``."""
        scores = self._scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores


def _fit_twin(student: Any, texts: list[str], labels: np.ndarray):
    """The same student trained on the gold labels alone."""
    if _student_kind(student) == "regressor":
        return _RegressorTwin(student).fit(texts, labels)
    return clone(student).fit(texts, labels)


def _fit_and_score(estimator, train_X, train_y, test_X, test_y, scorer, twin: bool) -> tuple[float, float, float, int]:
    """Fit one candidate on one fold: its held-out score, fit and score times, and the texts the teacher labeled.

    ``twin=True``: ``estimator`` is the student, trained on the fold's gold texts ``train_X`` alone.
    """
    t0 = time.perf_counter()
    if twin:
        fitted, n_calls = _fit_twin(estimator, train_X, train_y), 0
    else:
        fitted = clone(estimator).fit(train_X, train_y)
        n_calls = int(fitted.n_teacher_calls_)
    fit_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    score = float(scorer(fitted, test_X, test_y))
    return score, fit_time, time.perf_counter() - t0, n_calls


def _best_has(attr: str):
    """available_if check, as GridSearchCV's: only with refit=True, and only where the best estimator has it."""

    def check(self) -> bool:
        if not self.refit:
            raise AttributeError(
                f"This {type(self).__name__} instance was initialized with refit=False. {attr} is available only "
                "after refitting on the best parameters; refit one manually from best_params_."
            )
        if hasattr(self, "best_estimator_"):
            getattr(self.best_estimator_, attr)  # AttributeError where the winner lacks it
            return True
        if attr in ("predict", "score"):
            return True
        # unfitted: as DistillationClassifier, any candidate offering it (a regressor's logits give both)
        return hasattr(self.student, attr) or is_regressor(self.student)

    return check


class DistillationClassifierCV(_SharesTeacherMixin, MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Distillation with its settings chosen by cross-validation on gold labels.

    As :class:`~sklearn.linear_model.LogisticRegressionCV` is to
    :class:`~sklearn.linear_model.LogisticRegression`, this is to
    :class:`~kdtext.DistillationClassifier`: it tries each candidate of
    ``param_grid`` (distillation settings such as ``alpha``, ``loss``,
    ``temperature`` and the ``target`` route) on folds of the **labeled**
    texts, scores each on its held-out gold labels, and refits the best on all
    the data. With ``include_twin=True`` the candidates also include the
    *hard-label twin*: the same student trained on the gold labels alone, with
    no teacher. So distillation is chosen only where it measured better than
    not distilling, and the result never falls below the twin by more than the
    noise of the held-out folds. Ties go to the twin.

    Folds: ``StratifiedKFold(cv, shuffle=True, random_state)`` over the
    distinct labeled texts (copies of a text are held out together). In each
    fold the held-out gold texts are removed from the fold's transfer set
    entirely (every occurrence, labeled or not); the other labeled texts and
    all unlabeled texts train, and the held-out texts are scored on their
    gold labels.

    The teacher labels each distinct text once for the whole search: its
    outputs are cached in ``memory`` (a temporary folder, removed at the end
    of ``fit``, when ``memory=None``) and every candidate reads them from
    there.

    Parameters
    ----------
    teacher : fitted classifier
        As in :class:`~kdtext.DistillationClassifier`: used as is, never
        refitted or copied (``clone`` keeps the same teacher object).
    student : estimator
        Cloned for every candidate and fold.
    param_grid : dict or list of dict, default=None
        Candidate settings: keys are :class:`~kdtext.DistillationClassifier`
        parameters (``student__...`` included), values lists, as in
        :class:`~sklearn.model_selection.GridSearchCV`. ``teacher``,
        ``memory`` and ``unlabeled_label`` are set by this estimator and
        cannot be searched. None picks a default grid by student kind:

        - a student with ``fit_soft`` (kdtext's BiLSTM and transformer):
          ``[{"loss": ["kl"], "alpha": [0.0], "temperature": [1.0, 2.0,
          4.0]}, {"loss": ["kl"], "alpha": [0.5], "temperature": [2.0]},
          {"loss": ["mse"], "alpha": [0.0]}]``: the measured best (kl,
          alpha=0, T=2; see :class:`~kdtext.DistillationClassifier`'s
          ``loss``) with its temperatures and the runners-up;
        - a scikit-learn classifier: ``{"target": ["hard", "proba"],
          "alpha": [0.0, 0.5]}`` (``"hard"`` only when its ``fit`` takes no
          ``sample_weight``, which ``"proba"`` needs);
        - a regressor (e.g. TF-IDF + Ridge): ``{"target": ["logits"]}``.

        Measured (``benchmarks/robustness.py``, row ``lr_cv``: TF-IDF +
        LogisticRegression with the twin's ``C``, 1,000 labeled + 4,000
        unlabeled texts, cv=3, the set's metric as ``scoring``): SST-2
        0.759 (twin 0.681, defaults 0.736), GoEmotions macro-F1 0.435
        (twin 0.343, defaults 0.399), ru_toxic F1 0.788 (twin 0.712,
        defaults 0.788), GermEval F1 0.552 (twin 0.437, defaults 0.539):
        never below the twin, at least the defaults everywhere. It took
        40-320 s there (the "proba" rows grow with the number of
        classes; on 77 classes prefer ``{"target": ["hard"], "alpha":
        [0.0, 0.5]}``). The soft-student grid was not yet measured in full.
    cv : int, cross-validation generator or iterable, default=3
        An int: that many stratified, shuffled folds of the distinct labeled
        texts (each class with gold labels needs at least ``cv`` of them). Or
        any scikit-learn splitter, or an iterable of ``(train, test)`` index
        arrays, over the **labeled subset**: positions among the labeled
        texts, in order, copies included (a copy of a held-out text is then
        dropped from training). None means 3.
    scoring : str, callable or None, default=None
        Held-out score, as accepted by :func:`sklearn.metrics.check_scoring`
        (``"f1_macro"``, ``"roc_auc"``, a scorer ``(estimator, X, y)``).
        None: accuracy.
    include_twin : bool, default=True
        Whether the hard-label twin is a candidate.
    unlabeled_label : int, str or None, default=-1
        The value of ``y`` that marks a text without a gold label.
    memory : str, path-like, joblib.Memory or None, default=None
        Folder for the teacher-output cache (kept after ``fit``, and shared
        with later fits). None: a temporary folder, removed at the end of
        ``fit``.
    refit : bool, default=True
        Whether to refit the best candidate on all the data as
        ``best_estimator_``. ``predict`` and the other methods need it.
    n_jobs : int or None, default=None
        Candidate-fold fits run in parallel (joblib). The teacher labels every
        text before they start; worker processes receive copies of the
        teacher, whose fingerprint (:func:`kdtext.distillation.teacher_fingerprint`)
        equals the original's, so they read its outputs from the cache. Each
        copy costs memory: with a large transformer teacher prefer
        ``n_jobs=None`` or a threading backend
        (``joblib.parallel_config(backend="threading")``), which copy nothing.
    random_state : int, RandomState instance or None, default=None
        Shuffles the folds and seeds the candidates' augmentation.
    verbose : int, default=0
        A progress bar over the candidates (and over the teacher's texts).
    distiller_params : dict or None, default=None
        Fixed :class:`~kdtext.DistillationClassifier` parameters of every
        candidate, e.g. ``{"augment": 2, "chunk_size": 1024}``. A name cannot
        be both here and in ``param_grid``.

    Attributes
    ----------
    best_params_ : dict
        The chosen candidate's settings; ``{"twin": True}`` for the twin.
    best_score_ : float
        Its mean held-out score.
    best_index_ : int
        Its index in ``cv_results_``.
    best_estimator_ : estimator
        The chosen candidate refit on all the data (with ``refit=True``): a
        fitted :class:`~kdtext.DistillationClassifier`, or for the twin a
        fitted clone of the student on the gold texts (a regressor student
        inside a small classifier that regresses one-hot gold labels).
    cv_results_ : dict of ndarray
        As :class:`~sklearn.model_selection.GridSearchCV`'s: ``params``,
        ``param_<name>`` (masked), ``split<k>_test_score``,
        ``mean_test_score``, ``std_test_score``, ``rank_test_score``,
        ``mean_fit_time``, ``std_fit_time``, ``mean_score_time``,
        ``std_score_time``. The twin, when included, is entry 0.
    twin_score_ : float
        The twin's mean held-out score (NaN with ``include_twin=False``).
    classes_ : ndarray of shape (n_classes,)
        The teacher's classes.
    n_splits_ : int
        Number of folds.
    n_teacher_calls_ : int
        Texts the teacher labeled during this fit, in total (0 when all came
        from ``memory``).

    See Also
    --------
    kdtext.DistillationClassifier : One distillation with fixed settings.
    sklearn.model_selection.GridSearchCV : Wrapping a DistillationClassifier in
        it scores on all folds of ``y`` but keeps the held-out texts in the
        transfer set and has no twin.

    Examples
    --------
    >>> from sklearn.feature_extraction.text import TfidfVectorizer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from kdtext import DistillationClassifierCV
    >>> X = ["good film", "bad film", "great plot", "awful plot", "good acting", "bad acting",
    ...      "great film", "awful film", "nice plot", "poor plot", "nice acting", "poor acting"]
    >>> y = [1, 0] * 6
    >>> teacher = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, y)
    >>> X_all = X + ["great acting", "awful acting", "nice film", "poor film", "good plot", "bad plot"]
    >>> y_all = y + [-1] * 6  # -1: no gold label
    >>> student = make_pipeline(TfidfVectorizer(), LogisticRegression())
    >>> cv = DistillationClassifierCV(teacher, student, cv=2, random_state=0).fit(X_all, y_all)
    >>> cv.predict(["good acting", "awful plot"])
    array([1, 0])
    >>> len(cv.cv_results_["params"])  # the twin and the four default candidates
    5
    >>> cv.cv_results_["params"][0]
    {'twin': True}
    >>> cv.n_teacher_calls_  # each distinct text once
    18
    """

    _parameter_constraints: dict = {
        "teacher": [HasMethods(["predict"])],
        "student": [HasMethods(["fit", "predict"])],
        "param_grid": [None, dict, list],
        "cv": ["cv_object"],
        "scoring": [None, StrOptions(set(get_scorer_names())), callable],
        "include_twin": ["boolean"],
        "unlabeled_label": "no_validation",
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "refit": ["boolean"],
        "n_jobs": [None, Integral],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "distiller_params": [None, dict],
    }

    def __init__(
        self,
        teacher: Any,
        student: Any,
        *,
        param_grid: dict | list[dict] | None = None,
        cv: Any = 3,
        scoring: Any = None,
        include_twin: bool = True,
        unlabeled_label: Any = -1,
        memory: Any = None,
        refit: bool = True,
        n_jobs: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
        distiller_params: dict | None = None,
    ):
        self.teacher = teacher
        self.student = student
        self.param_grid = param_grid
        self.cv = cv
        self.scoring = scoring
        self.include_twin = include_twin
        self.unlabeled_label = unlabeled_label
        self.memory = memory
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.distiller_params = distiller_params

    # ------------------------------------------------------------ set-up
    def _distiller(self, memory: Any, random_state: Any) -> DistillationClassifier:
        """The candidates' common DistillationClassifier, ``distiller_params`` applied."""
        fixed = dict(self.distiller_params or {})
        reserved = sorted(_OWN_PARAMS & set(fixed))
        if reserved:
            raise ValueError(
                f"distiller_params cannot set {reserved}: pass them to DistillationClassifierCV itself "
                "(teacher, student, memory and unlabeled_label are its own parameters)."
            )
        valid = set(DistillationClassifier(None, None).get_params(deep=False)) - _OWN_PARAMS
        unknown = sorted(set(fixed) - valid)
        if unknown:
            raise ValueError(
                f"distiller_params holds {unknown}, which are not DistillationClassifier parameters; valid names "
                f"are {sorted(valid)}."
            )
        fixed.setdefault("random_state", random_state)
        return DistillationClassifier(
            self.teacher, self.student, unlabeled_label=self.unlabeled_label, memory=memory, **fixed
        )

    def _candidates(self) -> list[dict[str, Any]]:
        grid = _default_grid(self.student) if self.param_grid is None else self.param_grid
        candidates = list(ParameterGrid(grid))  # checks the grid's shape, as GridSearchCV does
        fixed = set(self.distiller_params or {})
        for params in candidates:
            bad = sorted((_OWN_PARAMS | {_TWIN}) & set(params))
            if bad:
                raise ValueError(
                    f"param_grid cannot search {bad}: teacher, memory and unlabeled_label are set by "
                    "DistillationClassifierCV, and the twin is a candidate of its own (include_twin)."
                )
            both = sorted(fixed & set(params))
            if both:
                raise ValueError(
                    f"{both} are both in distiller_params (fixed) and in param_grid (searched); keep them in one."
                )
        if not candidates and not self.include_twin:
            raise ValueError("There are no candidates: param_grid is empty and include_twin=False.")
        return candidates

    def _splits(self, texts: list[str], y_idx: np.ndarray, labeled: np.ndarray, classes: np.ndarray,
                seed: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """(training gold positions, held-out positions) of each fold, as positions in ``texts``.

        An int ``cv`` splits the distinct labeled texts (each stratified by its first gold label), so the copies
        of a text are held out together; a splitter or iterable splits the labeled positions as given.
        """
        cv = 3 if self.cv is None else self.cv
        if isinstance(cv, Integral):
            first: dict[str, int] = {}
            for i in labeled.tolist():
                first.setdefault(texts[i], i)
            distinct = np.fromiter(first.values(), dtype=np.int64, count=len(first))
            strata = y_idx[distinct]
            counts = np.bincount(strata, minlength=len(classes))
            if ((counts > 0) & (counts < cv)).any():
                per_class = ", ".join(f"{c!r}: {int(n)}" for c, n in zip(classes.tolist(), counts))
                raise ValueError(
                    f"cv={cv} needs at least {cv} distinct labeled texts of each class, but the labeled texts per "
                    f"class are {{{per_class}}}. Lower cv (to at most {max(2, int(counts[counts > 0].min()))}) or "
                    "label more texts."
                )
            splitter = StratifiedKFold(n_splits=int(cv), shuffle=True, random_state=seed)
            splits = []
            for _, te in splitter.split(np.zeros(len(distinct)), strata):
                held = {texts[i] for i in distinct[te]}
                out = np.array([texts[i] in held for i in labeled.tolist()], dtype=bool)
                splits.append((labeled[~out], labeled[out]))
            return splits
        labeled_y = y_idx[labeled]
        splitter = check_cv(cv, labeled_y, classifier=True)
        splits = [(labeled[np.asarray(tr, dtype=np.int64)], labeled[np.asarray(te, dtype=np.int64)])
                  for tr, te in splitter.split([texts[i] for i in labeled], labeled_y)]
        if not splits:
            raise ValueError(f"cv={cv!r} gave no splits.")
        return splits

    # ---------------------------------------------------------------- fit
    def fit(self, X: Iterable[str], y: Any):
        """Score every candidate on folds of the labeled texts, then refit the best on all of them.

        Parameters
        ----------
        X : iterable of str
            Labeled and unlabeled texts.
        y : array-like of shape (n_samples,)
            Gold labels, ``unlabeled_label`` (default -1) where a text has none.
            With an int ``cv``, each class with gold labels needs at least ``cv``
            distinct labeled texts.

        Returns
        -------
        self : object
        """
        self._validate_params()
        # a RandomState is drawn from once, so folds and candidates share one seed
        seed = self.random_state
        if seed is not None and not isinstance(seed, Integral):
            seed = int(check_random_state(seed).randint(0, 2**31 - 1))
        probe = self._distiller(None, seed)
        probe._validate_params()
        teacher, classes = probe._check_teacher()
        # the twin is the same student as the distilled candidates get (pretrained="auto" bound to the teacher)
        twin_student = _bind_pretrained(clone(self.student), teacher)
        texts = check_texts(X)
        if y is None:
            raise ValueError(
                "DistillationClassifierCV needs gold labels y to score the candidates on: pass y with a label per "
                f"text and unlabeled_label={self.unlabeled_label!r} where a text has none."
            )
        y_idx = probe._split_labels(y, len(texts), classes)
        y_arr = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
        labeled = np.flatnonzero(y_idx >= 0)
        if not len(labeled):
            raise ValueError(
                f"y holds no labeled texts (all are unlabeled_label={self.unlabeled_label!r}): the candidates are "
                "scored on held-out gold labels, so some texts need one. Use DistillationClassifier to distil "
                "without any."
            )
        gold_classes = np.unique(y_idx[labeled])
        if self.include_twin and len(gold_classes) < 2:
            raise ValueError(
                f"The gold labels hold a single class ({classes[gold_classes[0]]!r}): the hard-label twin cannot be "
                "trained on one class. Label texts of at least two classes, or pass include_twin=False."
            )
        if len(gold_classes) < len(classes):
            missing = [c for i, c in enumerate(classes.tolist()) if i not in set(gold_classes.tolist())]
            warnings.warn(
                f"No text has a gold label of the teacher's classes {missing}: the held-out scores cannot measure "
                "them, and the twin never predicts them.",
                UserWarning,
                stacklevel=2,
            )
        candidates = self._candidates()
        for params in candidates:  # unknown names fail here, before any training
            clone(probe).set_params(**params)
        splits = self._splits(texts, y_idx, labeled, classes, seed)
        scorer = get_scorer("accuracy" if self.scoring is None else self.scoring)

        # the data of each fold: held-out gold texts leave the transfer set entirely
        folds = []
        for train_gold, test_pos in splits:
            held = {texts[i] for i in test_pos}
            train_labeled = np.zeros(len(texts), dtype=bool)
            train_labeled[train_gold] = True
            keep = np.array([t not in held for t in texts], dtype=bool) & ((y_idx < 0) | train_labeled)
            train_pos = np.flatnonzero(keep)
            gold_pos = np.flatnonzero(keep & (y_idx >= 0))
            folds.append(
                dict(
                    train_X=[texts[i] for i in train_pos],
                    train_y=y_arr[train_pos],
                    gold_X=[texts[i] for i in gold_pos],
                    gold_y=classes[y_idx[gold_pos]],
                    test_X=[texts[i] for i in test_pos],
                    test_y=classes[y_idx[test_pos]],
                )
            )
        names = ([{_TWIN: True}] if self.include_twin else []) + candidates
        logger.info(
            "%d candidates x %d folds over %d labeled and %d unlabeled texts",
            len(names), len(folds), len(labeled), len(texts) - len(labeled),
        )

        with self._memory_location() as location:
            base_kd = clone(probe).set_params(memory=location)
            n_calls = 0
            if candidates:  # the teacher labels every distinct text once, before any candidate
                primer = clone(base_kd).set_params(verbose=max(int(self.verbose), int(base_kd.verbose)))
                distinct = list(dict.fromkeys(texts))
                t0 = time.perf_counter()
                _, n_calls = primer._label(teacher, distinct, len(classes))
                logger.info("teacher labeled %d of %d distinct texts in %.1fs", n_calls, len(distinct),
                            time.perf_counter() - t0)
            # the teacher report (a TF-IDF + LR cross-validation) is for the final refit, not every fold
            estimators = [None if _TWIN in p else clone(base_kd).set_params(**{"report": False, **p}) for p in names]
            tasks = [
                delayed(_fit_and_score)(twin_student, fold["gold_X"], fold["gold_y"], fold["test_X"], fold["test_y"],
                                        scorer, True)
                if est is None
                else delayed(_fit_and_score)(est, fold["train_X"], fold["train_y"], fold["test_X"], fold["test_y"],
                                             scorer, False)
                for est in estimators
                for fold in folds
            ]
            pbar = None
            if self.verbose:
                from tqdm.auto import tqdm

                pbar = tqdm(total=len(names), desc=type(self).__name__, unit="candidate")
            out = []
            try:
                for result in Parallel(n_jobs=self.n_jobs, return_as="generator")(tasks):
                    out.append(result)
                    if pbar is not None and len(out) % len(folds) == 0:
                        pbar.update(1)
            finally:
                if pbar is not None:
                    pbar.close()
            n_calls += sum(r[3] for r in out)
            cv_results = _cv_results(names, [r[0] for r in out], [r[1] for r in out], [r[2] for r in out],
                                     len(folds))
            best_index = int(np.flatnonzero(cv_results["rank_test_score"] == 1)[0])  # ties: the earlier (the twin)
            best_params = dict(names[best_index])
            best_score = float(cv_results["mean_test_score"][best_index])
            twin_score = float(cv_results["mean_test_score"][0]) if self.include_twin else float("nan")
            logger.info("best %s: %.4f (twin %.4f)", best_params, best_score, twin_score)

            best_estimator = None
            if self.refit:
                t0 = time.perf_counter()
                if estimators[best_index] is None:
                    best_estimator = _fit_twin(twin_student, [texts[i] for i in labeled], classes[y_idx[labeled]])
                else:
                    best_estimator = clone(estimators[best_index])
                    best_estimator.set_params(report=names[best_index].get("report", base_kd.report))
                    best_estimator.fit(texts, y_arr)
                    n_calls += int(best_estimator.n_teacher_calls_)
                    if self.memory is None:  # its cache folder is about to go: do not point at it
                        best_estimator.set_params(memory=None)
                logger.info("refit in %.1fs", time.perf_counter() - t0)

        # success: assign the new state
        self.cv_results_ = cv_results
        self.best_index_ = best_index
        self.best_params_ = best_params
        self.best_score_ = best_score
        self.twin_score_ = twin_score
        self.classes_ = classes
        self.n_splits_ = len(folds)
        self.n_teacher_calls_ = int(n_calls)
        if best_estimator is not None:
            self.best_estimator_ = best_estimator
        elif hasattr(self, "best_estimator_"):  # refit=False after a refit: no stale winner
            del self.best_estimator_
        return self

    @contextlib.contextmanager
    def _memory_location(self) -> Iterator[Any]:
        if self.memory is not None:
            yield self.memory
            return
        with tempfile.TemporaryDirectory(prefix="kdtext-cv-") as folder:
            yield folder

    # ----------------------------------------------------------- predict
    def _texts(self, X) -> list[str]:
        check_is_fitted(self, "best_estimator_")
        return check_texts(X)

    def _align(self, columns: np.ndarray, est_classes: Any, fill: float) -> np.ndarray:
        """Columns of a twin (which knows only the gold classes) in ``classes_`` order."""
        est_classes = np.asarray(est_classes)
        if len(est_classes) == len(self.classes_) and np.array_equal(est_classes, self.classes_):
            return columns
        out = np.full((columns.shape[0], len(self.classes_)), fill, dtype=np.float64)
        position = {c: i for i, c in enumerate(self.classes_.tolist())}
        for j, c in enumerate(est_classes.tolist()):
            out[:, position[c]] = columns[:, j]
        return out

    @available_if(_best_has("predict"))
    def predict(self, X) -> np.ndarray:
        """Labels predicted by ``best_estimator_``, from ``classes_``."""
        texts = self._texts(X)
        return np.asarray(self.best_estimator_.predict(texts))

    @available_if(_best_has("predict_proba"))
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of ``best_estimator_``, columns in ``classes_`` order."""
        texts = self._texts(X)
        est = self.best_estimator_
        proba = np.asarray(est.predict_proba(texts))
        return proba if isinstance(est, DistillationClassifier) else self._align(proba, est.classes_, 0.0)

    @available_if(_best_has("decision_function"))
    def decision_function(self, X) -> np.ndarray:
        """Confidence scores of ``best_estimator_``, columns in ``classes_`` order.

        Shape (n_samples, n_classes), or (n_samples,) for two classes (the
        score of ``classes_[1]`` minus that of ``classes_[0]``); a class the
        twin never saw scores ``-inf``.
        """
        texts = self._texts(X)
        est = self.best_estimator_
        scores = np.asarray(est.decision_function(texts), dtype=np.float64)
        if isinstance(est, DistillationClassifier):
            return scores
        if scores.ndim == 1:
            scores = np.stack([-scores / 2, scores / 2], axis=1)
        scores = self._align(scores, est.classes_, -np.inf)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    @available_if(_best_has("predict"))
    def score(self, X, y, sample_weight=None) -> float:
        """``scoring`` (accuracy by default) on the labeled texts of ``(X, y)``; ``unlabeled_label`` entries are ignored."""
        texts = self._texts(X)
        marker = DistillationClassifier(None, None, unlabeled_label=self.unlabeled_label)
        y, sample_weight, labeled = _check_partly_labeled_scoring(texts, y, sample_weight, marker._unlabeled_mask)
        texts = [t for t, keep in zip(texts, labeled) if keep]
        y_true = check_score_labels(y[labeled], len(texts), self.classes_)
        scorer = get_scorer("accuracy" if self.scoring is None else self.scoring)
        if sample_weight is None:
            return float(scorer(self, texts, y_true))
        return float(scorer(self, texts, y_true, sample_weight=sample_weight[labeled]))


def _cv_results(names, scores, fit_times, score_times, n_splits) -> dict[str, Any]:
    """GridSearchCV's ``cv_results_`` layout, one row per candidate."""
    from scipy.stats import rankdata

    n = len(names)
    scores = np.asarray(scores, dtype=np.float64).reshape(n, n_splits)
    fit_times = np.asarray(fit_times, dtype=np.float64).reshape(n, n_splits)
    score_times = np.asarray(score_times, dtype=np.float64).reshape(n, n_splits)
    results: dict[str, Any] = {
        "mean_fit_time": fit_times.mean(axis=1),
        "std_fit_time": fit_times.std(axis=1),
        "mean_score_time": score_times.mean(axis=1),
        "std_score_time": score_times.std(axis=1),
    }
    keys = sorted({k for p in names for k in p})
    for key in keys:
        column = np.ma.MaskedArray(np.empty(n, dtype=object), mask=True)
        for i, p in enumerate(names):
            if key in p:
                column[i] = p[key]
        results[f"param_{key}"] = column
    results["params"] = [dict(p) for p in names]
    for k in range(n_splits):
        results[f"split{k}_test_score"] = scores[:, k]
    means = scores.mean(axis=1)
    results["mean_test_score"] = means
    results["std_test_score"] = scores.std(axis=1)
    # a candidate whose score is NaN (a failed metric) ranks last, as in GridSearchCV
    results["rank_test_score"] = rankdata(-np.where(np.isnan(means), -np.inf, means), method="min").astype(np.int32)
    return results
