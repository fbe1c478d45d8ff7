"""The Dask side of :func:`kdtext.label_texts`: a fitted teacher shipped once to every worker.

Imported only when ``label_texts`` is given a client (``distributed`` is an
optional dependency, ``kdtext[dask]``).

Why a worker plugin and not ``client.scatter(teacher, broadcast=True)``: the
scheduler's Active Memory Manager (on by default, every 2 s) drops the
replicas of a scattered key that no waiting task on that worker needs, so a
broadcast teacher was sometimes dropped before the shards were submitted and
fetched again by the first task on that worker: two copies sent, two
unpickled. A plugin is not data: the scheduler sends it to each worker once
(and to a worker that joins or restarts later), the worker unpickles it once
and keeps the teacher until the plugin is unregistered at the end of the job.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from . import labeling

logger = logging.getLogger(__name__)


class TeacherPlugin(WorkerPlugin):
    """Keeps ``teacher`` in each worker's process under ``token`` while registered.

    Parameters
    ----------
    teacher : fitted classifier
        Pickled once by the client with the plugin, unpickled once per worker.
    token : str
        The job's own key; tasks name the teacher by it (:class:`kdtext.labeling._ShippedTeacher`).
    """

    def __init__(self, teacher: Any, token: str):
        self.teacher = teacher
        self.token = token

    def setup(self, worker: Any) -> None:
        with labeling._LOADING:
            labeling._SHIPPED_TEACHERS[self.token] = self.teacher
        logger.info("teacher %s arrived in process %d", self.token, os.getpid())

    def teardown(self, worker: Any) -> None:
        with labeling._LOADING:
            labeling._SHIPPED_TEACHERS.pop(self.token, None)
