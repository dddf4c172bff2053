"""A run_task that takes at least PAUSE seconds, so a test can kill a batch while it is running.

Workers are spawned processes: they unpickle `slow_run_task` by name from this module.
"""

from __future__ import annotations

import time
from typing import Any

from audit.batch.task import Task, run_task

PAUSE = 0.6


def slow_run_task(task: Task) -> dict[str, Any]:
    result = run_task(task)
    time.sleep(PAUSE)
    return result
