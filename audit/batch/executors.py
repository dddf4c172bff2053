"""Where batch tasks run: a local pool of worker processes, or a Ray cluster (`pip install 'provaudit[ray]'`).

Both yield `(task, result)` pairs as tasks finish, in completion order. A worker that dies (killed, out of
memory) does not stop the batch: its tasks are retried in a fresh worker up to `MAX_ATTEMPTS` times, then
recorded as failed.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from audit.batch.task import Task, run_task
from audit.errors import InputError

MAX_ATTEMPTS = 3
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def failure(task: Task, message: str) -> dict[str, Any]:
    """The result of a task whose worker never returned one."""
    return {"index": task.index, "key": None, "record": None, "error": message, "error_kind": "internal",
            "source": "audit", "note": None, "stored": False, "seconds": None}


def execute(tasks: Iterable[Task], kind: str = "local", workers: int | None = None,
            ray_address: str | None = None) -> Iterator[tuple[Task, dict[str, Any]]]:
    """Run `run_task` over `tasks` on the chosen executor ("local" or "ray")."""
    if kind == "local":
        return run_local(list(tasks), workers or 1)
    if kind == "ray":
        return run_ray(list(tasks), workers, ray_address)
    raise InputError(f"unknown executor {kind!r} (local or ray)")


def _init_worker(threads: int) -> None:
    """Share the machine's cores between workers (BLAS threads), unless the user set these already."""
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(threads))


def run_local(tasks: list[Task], workers: int) -> Iterator[tuple[Task, dict[str, Any]]]:
    """A spawn-context ProcessPoolExecutor with `workers` processes; at most 2 x workers tasks queued."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, (os.cpu_count() or 1) // workers)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(threads,))

    pending = deque(tasks)
    attempts: dict[int, int] = {}
    inflight: dict[Future, Task] = {}
    pool = new_pool()
    try:
        while pending or inflight:
            while pending and len(inflight) < 2 * workers:
                task = pending.popleft()
                attempts[task.index] = attempts.get(task.index, 0) + 1
                inflight[pool.submit(run_task, task)] = task
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken = False
            for fut in done:
                task = inflight.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    broken = True
                    if attempts[task.index] >= MAX_ATTEMPTS:
                        yield task, failure(task, f"worker process died {MAX_ATTEMPTS} times auditing this model "
                                                  "(out of memory or killed?)")
                    else:
                        pending.appendleft(task)
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a result that could not be pickled
                    result = failure(task, f"internal error: {type(exc).__name__}: {exc}")
                yield task, result
            if broken:  # every task still in this pool is lost with it: queue them again on a fresh pool
                pending.extendleft(reversed(list(inflight.values())))
                inflight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def run_ray(tasks: list[Task], workers: int | None, address: str | None) -> Iterator[tuple[Task, dict[str, Any]]]:
    """Ray tasks (1 CPU each) on the cluster at `address` (a local one when None); `workers` caps how many
    run at once (default: the cluster's CPUs). Workers must see the models and the cache at the same paths."""
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install 'provaudit[ray]'") from None

    inflight: dict[Any, Task] = {}
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        window = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(num_cpus=1, max_retries=MAX_ATTEMPTS - 1)(run_task)
        pending = deque(tasks)
        while pending or inflight:
            while pending and len(inflight) < window:
                task = pending.popleft()
                inflight[remote.remote(task)] = task
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                task = inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a worker that died MAX_ATTEMPTS times, and the like
                    result = failure(task, f"ray task failed: {type(exc).__name__}: {str(exc)[:300]}")
                yield task, result
    finally:
        for ref in inflight:  # stopped early (interrupted): do not leave work running on the cluster
            ray.cancel(ref)
        if started:
            ray.shutdown()
