"""The estimator contract, run over every public estimator.

A new estimator joins by one entry in ``ESTIMATORS``: a factory taking the
test paths and returning a fast configuration, and a small parameter grid.
"""

from __future__ import annotations

import numpy as np
import pytest

from kdtext.utils.estimator_checks import CONTRACT_CHECKS, check_text_classifier

from conftest import make_toy_texts


def _transformer(paths):
    from kdtext import TransformerClassifier

    return TransformerClassifier(
        paths["tiny_bert"], epochs=2, batch_size=16, learning_rate=1e-3, validation_fraction=None, random_state=0
    )


# name -> (factory(paths) -> unfitted estimator, param grid for GridSearchCV)
ESTIMATORS = {
    "TransformerClassifier": (_transformer, {"epochs": [1, 2]}),
}


@pytest.fixture(scope="module")
def paths(tiny_bert_path):
    return {"tiny_bert": tiny_bert_path}


@pytest.fixture(scope="module")
def contract_data():
    X, y = make_toy_texts(48, seed=3)
    return X, y


@pytest.mark.parametrize("check", list(CONTRACT_CHECKS))
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_contract(name, check, paths, contract_data):
    factory, grid = ESTIMATORS[name]
    X, y = contract_data
    check_text_classifier(factory(paths), X, y, param_grid=grid, checks=[check])
