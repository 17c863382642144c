"""Training logs people can open: TensorBoard event files (``--tensorboard DIR``), per epoch.

``snnergy train`` writes each epoch as it finishes (:class:`TensorBoardLog`); ``compare`` and
``sweep`` write each configuration's log into ``DIR/<its run folder name>`` when it finishes, from
its checkpoint's history (:func:`write_history`; with Ray on several nodes, only the checkpoints
on the driver's node are there to read).

Optional extra ``snnergy[tensorboard]`` (the ``tensorboard`` package, read by
``torch.utils.tensorboard``). One scalar per epoch (the step is the 1-based epoch) for each field of
:class:`~snnergy.training.EpochLog`, under these tags:

| tag | value |
| --- | --- |
| ``loss/task`` | mean cross-entropy over the epoch's batches |
| ``loss/penalty`` | mean activity penalty, before the strength |
| ``loss/distillation`` | mean ``T^2 KL`` term (only with ``train.distill``) |
| ``accuracy/train``, ``accuracy/test`` | training batches (training mode); test split after the epoch |
| ``sparsity/all`` | fraction of exact zeros over every activation map of the epoch |
| ``sparsity/<layer>`` | the same per activation layer |
| ``lr`` | the epoch's learning rate |
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from snnergy.errors import ConfigError
from snnergy.experiments.store import check_not_a_file
from snnergy.training import EpochLog


def epoch_scalars(log: EpochLog, distill: bool = False) -> dict[str, float]:
    """The tags and values one epoch writes.

    Example:
        >>> log = EpochLog(1, 2.0, 0.5, 0.25, 0.75, 0.4, 0.01, 3.0, layer_sparsity={"relu1": 0.4})
        >>> epoch_scalars(log)
        {'loss/task': 2.0, 'loss/penalty': 0.5, 'accuracy/train': 0.25, 'accuracy/test': 0.75, 'sparsity/all': 0.4, 'lr': 0.01, 'sparsity/relu1': 0.4}
    """
    values = {"loss/task": log.task_loss, "loss/penalty": log.penalty}
    if distill:
        values["loss/distillation"] = log.distillation
    values.update({"accuracy/train": log.train_accuracy, "accuracy/test": log.test_accuracy,
                   "sparsity/all": log.sparsity, "lr": log.lr})
    values.update({f"sparsity/{name}": value for name, value in log.layer_sparsity.items()})
    return {tag: float(value) for tag, value in values.items()}


def require_tensorboard(folder: str | Path) -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, checked before any work.

    Raises:
        ConfigError: The ``tensorboard`` package is missing (the message says how to install it),
            or ``folder`` is a file.
    """
    check_not_a_file(folder)
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises ImportError when the tensorboard package is absent
        raise ConfigError(f"--tensorboard {folder}: needs the tensorboard package: "
                          "pip install 'snnergy[tensorboard]'") from None
    return SummaryWriter


class TensorBoardLog:
    """Writes epochs to TensorBoard event files in ``folder`` (created); a context manager that
    closes (flushes) the writer.

    Raises:
        ConfigError: The ``tensorboard`` package is missing (the message says how to install it),
            or ``folder`` is a file.
    """

    def __init__(self, folder: str | Path, distill: bool = False) -> None:
        writer = require_tensorboard(folder)
        self.folder = Path(folder)
        self.distill = distill
        self.writer: Any = writer(log_dir=str(self.folder))

    def write(self, log: EpochLog) -> None:
        """Writes one finished epoch (step = its epoch number) and flushes."""
        for tag, value in epoch_scalars(log, self.distill).items():
            self.writer.add_scalar(tag, value, global_step=log.epoch)
        self.writer.flush()

    def close(self) -> None:
        """Flushes and closes the event file."""
        self.writer.close()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def write_history(history: Sequence[EpochLog], folder: str | Path, distill: bool = False) -> None:
    """Writes a finished training's log (a checkpoint's ``history``) to event files in ``folder``:
    what ``compare --tensorboard`` and ``sweep --tensorboard`` do for each configuration."""
    with TensorBoardLog(folder, distill) as board:
        for log in history:
            board.write(log)


__all__ = ["TensorBoardLog", "epoch_scalars", "require_tensorboard", "write_history"]
