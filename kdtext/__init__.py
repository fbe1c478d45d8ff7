"""kdtext: knowledge distillation for text classification, as scikit-learn estimators.

>>> from kdtext import DistillationClassifier, TransformerClassifier, BiLSTMClassifier
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public names -> module that defines them. Imported lazily so ``import kdtext``
# stays cheap and torch/transformers load only when an estimator is used.
_LAZY = {
    "TransformerClassifier": "kdtext.teachers",
    "BiLSTMClassifier": "kdtext.students",
    "DistillationClassifier": "kdtext.distillation",
    "DistillationClassifierCV": "kdtext.model_selection",
    "TextCleaner": "kdtext.preprocessing",
    "Lemmatizer": "kdtext.preprocessing",
    "StopWordRemover": "kdtext.preprocessing",
    "shrink_transformer": "kdtext.shrink",
    "distill_encoder": "kdtext.encoders",
    "OnnxClassifier": "kdtext.onnx",
    "StaticEmbeddingClassifier": "kdtext.static",
    "TextFiles": "kdtext.labeling",
    "label_texts": "kdtext.labeling",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kdtext' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
