"""A run_task that logs every checkpoint a worker opens, so a test can count reads of each model.

Workers are spawned processes: they unpickle `counting_run_task` by name from this module and append one line
per `open_checkpoint` call (the resolved path) to the file named by $PROVAUDIT_TEST_OPEN_LOG.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import audit.checkpoint as checkpoint
from audit.batch.task import Task, run_task

LOG_VAR = "PROVAUDIT_TEST_OPEN_LOG"


def logging_open(original: Any) -> Any:
    """`open_checkpoint` that appends the model's resolved path to the log first."""

    def opened(model: Any, *args: Any, **kwargs: Any) -> Any:
        with Path(os.environ[LOG_VAR]).open("a", encoding="utf-8") as fh:
            fh.write(str(Path(model).resolve()) + "\n")
        return original(model, *args, **kwargs)

    return opened


def counting_run_task(task: Task) -> dict[str, Any]:
    original = checkpoint.open_checkpoint
    checkpoint.open_checkpoint = logging_open(original)
    try:
        return run_task(task)
    finally:
        checkpoint.open_checkpoint = original
