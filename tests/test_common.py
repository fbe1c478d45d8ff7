"""The estimator contract, run over every public estimator.

A new estimator joins by one entry in ``ESTIMATORS``: a factory taking the
test paths and returning a fast configuration, and a small parameter grid.
"""

from __future__ import annotations

import pytest

from kdtext.utils.estimator_checks import CONTRACT_CHECKS, STRING_LABELS, check_text_classifier

from conftest import make_toy_texts


def _transformer(paths):
    from kdtext import TransformerClassifier

    return TransformerClassifier(
        paths["tiny_bert"], epochs=2, batch_size=16, learning_rate=1e-3, validation_fraction=None, random_state=0
    )


def _teacher(paths, labels):
    """A fitted TF-IDF + LogisticRegression teacher on the contract data (labels renamed if given)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X, y = make_toy_texts(48, seed=3)
    return make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, labels[y] if labels is not None else y)


def _distill_ridge(paths, labels=None):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    from kdtext import DistillationClassifier

    return DistillationClassifier(_teacher(paths, labels), make_pipeline(TfidfVectorizer(), Ridge()))


def _distill_lr(paths, labels=None):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from kdtext import DistillationClassifier

    return DistillationClassifier(_teacher(paths, labels), make_pipeline(TfidfVectorizer(), LogisticRegression()))


def _distill_transformer(paths, labels=None):
    from kdtext import DistillationClassifier

    return DistillationClassifier(_teacher(paths, labels), _transformer(paths), alpha=0.5)


def _bilstm(paths):
    from kdtext import BiLSTMClassifier

    return BiLSTMClassifier(
        vocab_size=400, embedding_dim=16, hidden_dim=16, epochs=4, batch_size=8, learning_rate=1e-2,
        validation_fraction=None, random_state=0,
    )


def _bilstm_pretrained(paths):
    from kdtext import BiLSTMClassifier

    return BiLSTMClassifier(
        pretrained=paths["tiny_bert"], embedding_dim=8, hidden_dim=8, epochs=4, batch_size=8, learning_rate=1e-2,
        validation_fraction=None, random_state=0,
    )


def _static(paths):
    from kdtext import StaticEmbeddingClassifier

    return StaticEmbeddingClassifier(
        paths["tiny_bert"], pca_dims=8, hidden_dim=8, epochs=4, batch_size=8, learning_rate=1e-2,
        validation_fraction=None, random_state=0,
    )


def _distill_static(paths, labels=None):
    from kdtext import DistillationClassifier

    return DistillationClassifier(_teacher(paths, labels), _static(paths))


def _distill_bilstm(paths, labels=None):
    from kdtext import DistillationClassifier

    return DistillationClassifier(_teacher(paths, labels), _bilstm(paths), alpha=0.5)


def _distill_cv_lr(paths, labels=None):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from kdtext import DistillationClassifierCV

    return DistillationClassifierCV(
        _teacher(paths, labels), make_pipeline(TfidfVectorizer(), LogisticRegression()), random_state=0
    )


def _distill_cv_ridge(paths, labels=None):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    from kdtext import DistillationClassifierCV

    return DistillationClassifierCV(_teacher(paths, labels), make_pipeline(TfidfVectorizer(), Ridge()), random_state=0)


def _onnx(paths, labels=None):
    """An OnnxClassifier over a BiLSTM trained on the contract data and exported (see ``onnx_folders``)."""
    from kdtext import OnnxClassifier

    return OnnxClassifier(paths["onnx_str" if labels is not None else "onnx"], batch_size=16)


def _int8(paths, labels=None):
    """A TorchInt8Classifier over a BiLSTM trained on the contract data (see ``fitted_bilstms``)."""
    from kdtext.quantization import TorchInt8Classifier

    return TorchInt8Classifier(paths["bilstm_str" if labels is not None else "bilstm"])


def _margin_fallback(paths, labels=None):
    """A MarginFallbackClassifier: torch's int8 copy of a fitted BiLSTM, the BiLSTM for the unsure texts."""
    from kdtext.quantization import MarginFallbackClassifier, TorchInt8Classifier

    exact = paths["bilstm_str" if labels is not None else "bilstm"]
    return MarginFallbackClassifier(TorchInt8Classifier(exact).fit(), exact, margin=0.3)


# name -> (factory(paths[, labels]) -> unfitted estimator, param grid for GridSearchCV, check options)
# Distillers take their classes from the teacher: their factory builds a teacher
# for string labels too, and one gold class is not an error for them.
_DISTILLER = {"single_class_is_error": False}
ESTIMATORS = {
    "TransformerClassifier": (_transformer, {"epochs": [1, 2]}, {}),
    "BiLSTMClassifier": (_bilstm, {"hidden_dim": [8, 16]}, {}),
    "BiLSTMClassifier[pretrained]": (_bilstm_pretrained, {"hidden_dim": [4, 8]}, {}),
    "StaticEmbeddingClassifier": (_static, {"hidden_dim": [0, 8]}, {}),
    "DistillationClassifier[static]": (_distill_static, {"loss": ["kl", "mse"]}, _DISTILLER),
    "DistillationClassifier[bilstm]": (_distill_bilstm, {"temperature": [1.0, 4.0]}, _DISTILLER),
    "DistillationClassifier[tfidf+ridge]": (_distill_ridge, {"student__ridge__alpha": [0.1, 1.0]}, _DISTILLER),
    "DistillationClassifier[tfidf+lr]": (_distill_lr, {"alpha": [0.0, 0.5]}, _DISTILLER),
    "DistillationClassifier[transformer]": (_distill_transformer, {"loss": ["kl", "mse"]}, _DISTILLER),
    # the CV distiller trains the hard-label twin on the gold labels, so one gold class is an error for it
    "DistillationClassifierCV[tfidf+lr]": (_distill_cv_lr, {"cv": [2, 3]}, {}),
    "DistillationClassifierCV[tfidf+ridge]": (_distill_cv_ridge, {"include_twin": [True, False]}, {}),
    # an already trained model: fit loads the folder and ignores X and y (as FrozenEstimator), so the checks
    # that expect fit to look at them do not apply; its classes come from the export
    "OnnxClassifier": (_onnx, {"batch_size": [1, 64]},
                       {"string_twin": True, "skip": {"bad_input": "fit ignores X and y: the model is trained"}}),
    # the same for torch's int8 copy of a fitted BiLSTM; the grid swaps the fitted estimator it quantizes
    "TorchInt8Classifier": (_int8, {"estimator": "fitted_bilstms"},
                            {"string_twin": True, "skip": {"bad_input": "fit ignores X and y: the model is trained"}}),
    "MarginFallbackClassifier": (_margin_fallback, {"margin": [0.1, 0.5]},
                                 {"string_twin": True,
                                  "skip": {"bad_input": "fit ignores X and y: the models are trained"}}),
}


@pytest.fixture(scope="module")
def paths(tiny_bert_path):
    return {"tiny_bert": tiny_bert_path}


@pytest.fixture(scope="module")
def contract_data():
    X, y = make_toy_texts(48, seed=3)
    return X, y


@pytest.fixture(scope="module")
def onnx_folders(contract_data, tmp_path_factory):
    """BiLSTMs trained on the contract data (int and string labels), exported for OnnxClassifier."""
    pytest.importorskip("onnxruntime")
    X, y = contract_data
    folders = {}
    for key, labels in (("onnx", y), ("onnx_str", STRING_LABELS[y])):
        est = _bilstm(None).set_params(epochs=8).fit(X, labels)
        folders[key] = str(est.export_onnx(tmp_path_factory.mktemp("contract-onnx") / key))
    return folders


@pytest.fixture(scope="module")
def fitted_bilstms(contract_data):
    """BiLSTMs trained on the contract data (int and string labels), for TorchInt8Classifier."""
    X, y = contract_data
    return {key: _bilstm(None).set_params(epochs=8, random_state=seed).fit(X, labels)
            for seed, (key, labels) in enumerate((("bilstm", y), ("bilstm_str", STRING_LABELS[y]),
                                                  ("bilstm_other", y)))}


@pytest.mark.parametrize("check", list(CONTRACT_CHECKS))
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_contract(name, check, paths, contract_data, request):
    factory, grid, options = ESTIMATORS[name]
    X, y = contract_data
    options = dict(options)
    if check in options.pop("skip", {}):
        pytest.skip(f"{name}: {ESTIMATORS[name][2]['skip'][check]}")
    if name.startswith("OnnxClassifier"):
        paths = {**paths, **request.getfixturevalue("onnx_folders")}
    if name.startswith("MarginFallbackClassifier"):
        paths = {**paths, **request.getfixturevalue("fitted_bilstms")}
    if name.startswith("TorchInt8Classifier"):
        fitted = request.getfixturevalue("fitted_bilstms")
        paths = {**paths, **fitted}
        from sklearn.frozen import FrozenEstimator

        grid = {"estimator": [FrozenEstimator(fitted["bilstm"]), FrozenEstimator(fitted["bilstm_other"])]}
    if name.startswith("DistillationClassifier") or options.pop("string_twin", False):
        options = {**options, "estimator_for_strings": factory(paths, STRING_LABELS)}
    check_text_classifier(factory(paths), X, y, param_grid=grid, checks=[check], **options)
