"""Data-parallel training of kdtext's neural estimators across processes, through Hugging Face ``accelerate``.

A fit runs data-parallel when the script is launched with several processes
(``torchrun --nproc_per_node N script.py`` or ``accelerate launch``: the
launcher sets ``WORLD_SIZE``); in one process nothing here is used and
``accelerate`` is not imported.

How one fit is shared (``NeuralTextClassifier._train``):

- Every process holds the same texts and labels (checked: a fingerprint of the
  training data is compared across processes before training) and rank 0's
  seed, so all of them draw the same validation split, the same model and the
  same sequence of batches.
- Each batch of ``batch_size`` texts is split between the processes
  (``idx[rank::world_size]``); the model is wrapped by ``Accelerator.prepare``
  (``DistributedDataParallel``), which averages the gradients. Each process
  scales its loss by its share of the batch's texts, so the averaged gradient
  is the one-process gradient of the whole batch for losses that are a mean
  over texts (KL / MSE on logits, cross-entropy): the weights follow the
  one-process run up to floating-point summation order (and dropout masks,
  which each process draws for its own texts). Losses normalised otherwise
  come close but not exactly: the hidden-state losses average over tokens,
  and class-weighted cross-entropy divides by the sum of the weights, so a
  share's part in the batch is its share of tokens or weights, not of texts.
- Validation is split the same way; the losses and correct counts are summed
  across processes, each validation text counted exactly once (checked), so
  every process sees the same score and early stopping stops all of them
  after the same epoch.
- Only the main process writes checkpoints; after a fit every process holds
  the same fitted model (the unwrapped module), ready to predict or save.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["DataParallel", "launched_world_size"]


def launched_world_size() -> int:
    """The number of processes of a ``torchrun`` / ``accelerate launch`` job (``WORLD_SIZE``), 1 otherwise."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


class DataParallel:
    """One process's part in a data-parallel fit (see the module docstring).

    Parameters
    ----------
    device : torch.device
        The device the estimator resolved (``device="cpu"`` runs every
        process on the CPU with the gloo backend; a GPU device gives each
        process its own GPU, ``LOCAL_RANK``).
    """

    def __init__(self, device: Any):
        try:
            from accelerate import Accelerator
            from accelerate.utils import DistributedDataParallelKwargs
        except ImportError:
            raise ImportError(
                f"This script runs in {launched_world_size()} processes (WORLD_SIZE is set, e.g. by torchrun), "
                'and training across processes needs accelerate: pip install "kdtext[accelerate]". '
                "To train in one process, launch the script with python instead."
            ) from None
        # Every step runs the same graph, so DDP may learn it once (static_graph): parameters it never reaches
        # (the pooler of a mean-pooled transformer) are then no reason to hang, without a graph search per step.
        self.accelerator = Accelerator(
            cpu=device.type == "cpu",
            kwargs_handlers=[DistributedDataParallelKwargs(static_graph=True)],
        )
        self.rank = self.accelerator.process_index
        self.world_size = self.accelerator.num_processes
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process

    # ------------------------------------------------------------ agreement
    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` in every process (a picklable object)."""
        from accelerate.utils import broadcast_object_list

        box = [value]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def check_same_data(self, fingerprint: str, what: str) -> None:
        """Raise in every process when the processes were given different training data."""
        from accelerate.utils import gather_object

        seen = gather_object([fingerprint])
        differ = [rank for rank, fp in enumerate(seen) if fp != seen[0]]
        if differ:
            raise ValueError(
                f"{what}: process(es) {differ} were given other training data than process 0 (texts, labels, "
                "teacher outputs or parameters differ). In a multi-process fit every process must call fit with "
                "the same data; with augmentation or random_state=None draw them from the same seed "
                "(e.g. random_state=0)."
            )

    # ------------------------------------------------------------- training
    def prepare(self, step: Callable, modules: list[Any]):
        """Wrap ``step`` (idx -> (loss, logits)) as a module over ``modules`` with ``Accelerator.prepare``."""
        import torch

        class _Step(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.parts = torch.nn.ModuleList(modules)

            def forward(self, idx):
                return step(idx)

        return self.accelerator.prepare(_Step())

    def shard(self, idx: np.ndarray) -> tuple[np.ndarray, float]:
        """This process's texts of a batch and the factor that makes its loss a share of the batch's mean.

        A process without a text in a short last batch computes the loss of
        one text times 0: every process must take part in each gradient
        averaging.
        """
        mine = idx[self.rank :: self.world_size]
        if not len(mine):
            return idx[:1], 0.0
        return mine, len(mine) * self.world_size / len(idx)

    def backward(self, loss) -> None:
        self.accelerator.backward(loss)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over all processes (the same result in every process)."""
        import torch

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.accelerator.reduce(t, reduction="sum").tolist()

    def wait(self) -> None:
        self.accelerator.wait_for_everyone()

    def unwrap(self, wrapped) -> Any:
        return self.accelerator.unwrap_model(wrapped)
