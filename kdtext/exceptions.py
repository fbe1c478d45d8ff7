"""Errors and warnings raised by kdtext.

They subclass scikit-learn's and Python's own, so ``except NotFittedError`` or
``except ValueError`` in user code keeps working.
"""

from sklearn.exceptions import NotFittedError

__all__ = ["KdtextError", "ModelNotFoundError", "NotFittedTeacherError", "TrainingInterruptedWarning",
           "WeakTeacherWarning"]


class KdtextError(Exception):
    """Base class of kdtext's own errors."""


class ModelNotFoundError(KdtextError, FileNotFoundError):
    """A model folder or hub id could not be found or loaded."""


class NotFittedTeacherError(KdtextError, NotFittedError):
    """The teacher given to :class:`~kdtext.DistillationClassifier` is not fitted."""


class TrainingInterruptedWarning(UserWarning):
    """Training was interrupted (``KeyboardInterrupt``); the best weights so far were kept."""


class WeakTeacherWarning(UserWarning):
    """The teacher scored no better on the gold labels than a quick TF-IDF + LogisticRegression."""
