"""The estimator contract for text classifiers, as reusable checks.

scikit-learn's ``check_estimator`` skips estimators that take strings (only
cloneability is checked), so kdtext keeps its own contract and calls the
relevant scikit-learn checks directly. The checks are public: run them on your
own student with :func:`check_text_classifier`.

Examples
--------
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.feature_extraction.text import TfidfVectorizer
>>> from sklearn.linear_model import LogisticRegression
>>> from kdtext.utils.estimator_checks import check_text_classifier
>>> X = ["good film", "bad film", "great plot", "awful plot"] * 10
>>> y = [1, 0, 1, 0] * 10
>>> check_text_classifier(make_pipeline(TfidfVectorizer(), LogisticRegression()), X, y,
...                       param_grid={"logisticregression__C": [0.1, 1.0]},
...                       checks=["clone", "pickle", "pipeline", "grid_search"])
"""

from __future__ import annotations

import pickle
import re
from typing import Any, Callable, Iterable

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

__all__ = ["check_text_classifier", "CONTRACT_CHECKS", "SKLEARN_CHECKS"]


def _fit(est, X, y):
    out = est.fit(X, y)
    assert out is est, f"{type(est).__name__}.fit must return self, returned {type(out).__name__}."
    return est


def check_clone(est, X, y, **_):
    """``clone`` gives an unfitted twin with equal parameters."""
    twin = clone(est)
    assert type(twin) is type(est)
    assert twin is not est
    p1, p2 = est.get_params(deep=False), twin.get_params(deep=False)
    assert set(p1) == set(p2)
    for k in p1:
        a, b = p1[k], p2[k]
        if hasattr(a, "get_params"):
            assert type(a) is type(b)
        else:
            assert a is b or repr(a) == repr(b), f"clone changed parameter {k}: {a!r} -> {b!r}"


def check_get_set_params(est, X, y, **_):
    """``set_params(**get_params())`` round-trips; unknown names raise."""
    params = est.get_params(deep=False)
    est2 = clone(est).set_params(**params)
    assert est2.get_params(deep=False).keys() == params.keys()
    try:
        clone(est).set_params(this_parameter_does_not_exist=1)
    except ValueError as exc:
        assert "this_parameter_does_not_exist" in str(exc)
    else:  # pragma: no cover - a failing estimator
        raise AssertionError("set_params accepted an unknown parameter name")


def check_repr(est, X, y, **_):
    """``repr`` works and names the class."""
    text = repr(est)
    assert type(est).__name__ in text


def check_not_fitted(est, X, y, **_):
    """Prediction methods of an unfitted estimator raise ``NotFittedError``."""
    fresh = clone(est)
    for method in ("predict", "predict_proba", "decision_function", "score"):
        if not hasattr(type(fresh), method):
            continue
        args = (X[:2], y[:2]) if method == "score" else (X[:2],)
        try:
            getattr(fresh, method)(*args)
        except NotFittedError as exc:
            assert "fit" in str(exc).lower()
        except AttributeError:
            # available_if hides a method until fitting shows it exists
            pass
        else:  # pragma: no cover
            raise AssertionError(f"{method} of an unfitted {type(fresh).__name__} did not raise NotFittedError")


def check_fit_predict(est, X, y, **_):
    """Fitting sets ``classes_``; predictions come from it and have the right shapes."""
    fitted = _fit(clone(est), X, y)
    classes = np.unique(y)
    np.testing.assert_array_equal(np.sort(fitted.classes_), classes)
    pred = fitted.predict(X)
    assert len(pred) == len(X)
    assert set(np.unique(pred)) <= set(classes.tolist())
    if hasattr(fitted, "predict_proba"):
        proba = fitted.predict_proba(X)
        assert proba.shape == (len(X), len(classes))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-4)
        np.testing.assert_array_equal(fitted.classes_[np.argmax(proba, axis=1)], pred)
    if hasattr(fitted, "decision_function"):
        dec = np.asarray(fitted.decision_function(X))
        expected = (len(X),) if len(classes) == 2 else (len(X), len(classes))
        assert dec.shape == expected, f"decision_function shape {dec.shape}, expected {expected}"
    score = fitted.score(X, y)
    assert 0.0 <= score <= 1.0


#: The names given to integer labels 0, 1, 2, 3 by the string-label check.
STRING_LABELS = np.array(["neg", "pos", "mid", "other"])


def check_string_labels(est, X, y, *, estimator_for_strings=None, **_):
    """String labels come back from ``predict`` as strings.

    Integer labels ``k`` are renamed ``STRING_LABELS[k]``. Estimators whose
    classes are fixed elsewhere (a distiller's teacher) pass a twin set up
    for those names as ``estimator_for_strings``.
    """
    names = STRING_LABELS[np.asarray(y)]
    est = est if estimator_for_strings is None else estimator_for_strings
    fitted = _fit(clone(est), X, names)
    assert fitted.classes_.dtype.kind in "UO"
    assert set(fitted.predict(X[:5]).tolist()) <= set(names.tolist())


def check_pickle_round_trip(est, X, y, **_):
    """A fitted estimator survives pickle with identical predictions."""
    fitted = _fit(clone(est), X, y)
    before = fitted.predict_proba(X) if hasattr(fitted, "predict_proba") else fitted.predict(X)
    restored = pickle.loads(pickle.dumps(fitted))
    after = restored.predict_proba(X) if hasattr(restored, "predict_proba") else restored.predict(X)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(restored.predict(X), fitted.predict(X))


def check_pipeline(est, X, y, **_):
    """The estimator works as the last step of a Pipeline."""
    pipe = make_pipeline(FunctionTransformer(lambda texts: [t.lower() for t in texts]), clone(est))
    pipe.fit(X, y)
    assert len(pipe.predict(X[:3])) == 3


def check_grid_search(est, X, y, *, param_grid=None, **_):
    """GridSearchCV clones, fits and scores it."""
    if not param_grid:
        return
    search = GridSearchCV(clone(est), param_grid, cv=2, error_score="raise")
    search.fit(list(X), np.asarray(y))
    assert search.best_params_.keys() == param_grid.keys()
    assert len(search.predict(X[:3])) == 3


def _expect(exc_types, pattern, fn):
    try:
        fn()
    except exc_types as exc:
        assert re.search(pattern, str(exc), re.I), f"error message {str(exc)!r} does not match {pattern!r}"
    else:  # pragma: no cover
        raise AssertionError(f"expected {exc_types} matching {pattern!r}")


def check_bad_input(est, X, y, *, single_class_is_error=True, **_):
    """Bad input gets an error that names the problem.

    ``single_class_is_error=False`` for estimators whose classes come from
    elsewhere (a distiller accepts gold labels of one class).
    """
    est = clone(est)
    _expect((TypeError, ValueError), r"single str|list", lambda: clone(est).fit("one text", [0]))
    _expect((ValueError,), r"missing|None|NaN", lambda: clone(est).fit(list(X[:-1]) + [None], y))
    _expect((TypeError, ValueError), r"str", lambda: clone(est).fit(list(X[:-1]) + [3.5], y))
    _expect((ValueError,), r"length|labels", lambda: clone(est).fit(X, y[:-1]))
    if single_class_is_error:
        _expect((ValueError,), r"class", lambda: clone(est).fit(X, np.zeros(len(X), dtype=int)))
    _expect((ValueError,), r"empty|at least one|0 sample", lambda: clone(est).fit([], []))


def check_sklearn_checks(est, X, y, **_):
    """scikit-learn's checks that apply to string-input estimators."""
    from sklearn.utils import estimator_checks as ec

    name = type(est).__name__
    for check in SKLEARN_CHECKS:
        getattr(ec, check)(name, clone(est))


#: scikit-learn checks called directly (``check_estimator`` skips text estimators).
SKLEARN_CHECKS = (
    "check_no_attributes_set_in_init",
    "check_estimator_repr",
    "check_set_params",
    "check_get_params_invariance",
    "check_estimators_unfitted",
    "check_mixin_order",
    "check_estimator_cloneable",
)

#: The contract, by name.
CONTRACT_CHECKS: dict[str, Callable] = {
    "clone": check_clone,
    "get_set_params": check_get_set_params,
    "repr": check_repr,
    "not_fitted": check_not_fitted,
    "fit_predict": check_fit_predict,
    "string_labels": check_string_labels,
    "pickle": check_pickle_round_trip,
    "pipeline": check_pipeline,
    "grid_search": check_grid_search,
    "bad_input": check_bad_input,
    "sklearn": check_sklearn_checks,
}


def check_text_classifier(
    estimator: Any,
    X: Iterable[str],
    y: Any,
    *,
    param_grid: dict | None = None,
    checks: Iterable[str] | None = None,
    **options: Any,
) -> None:
    """Run the kdtext estimator contract on a text classifier.

    Parameters
    ----------
    estimator : classifier taking a list of str
        An unfitted estimator, ideally in a fast configuration.
    X : list of str
        A small, learnable data set.
    y : array-like of int
        Its labels (integers; string labels are derived for that check).
    param_grid : dict, optional
        A small grid for the GridSearchCV check (skipped when None).
    checks : iterable of str, optional
        Names from :data:`CONTRACT_CHECKS`; all by default.
    **options
        Passed to every check: ``estimator_for_strings`` (a twin for the
        string-label check) and ``single_class_is_error`` (default True).

    Raises
    ------
    AssertionError
        Where the estimator breaks the contract.
    """
    assert is_classifier(estimator), f"{type(estimator).__name__} is not a classifier"
    X = list(X)
    y = np.asarray(y)
    for name in checks or CONTRACT_CHECKS:
        CONTRACT_CHECKS[name](estimator, X, y, param_grid=param_grid, **options)
