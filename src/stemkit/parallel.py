"""The one process pool of stemkit: safe after torch has run, and gone when its job is gone.

Why a helper of our own rather than ``ProcessPoolExecutor()``:

- **Spawn, never fork.** A child forked after torch (or numba, or OpenMP) started its thread pools
  inherits their locks mid-use and can hang forever; ``stemkit demo`` did, at "evaluating 0/3".
  Spawned workers start clean; each is limited to one torch thread, since the workers are the
  parallelism.
- **Workers die with their job.** A worker ignores Ctrl-C (the main process decides), turns SIGTERM
  into a normal exit (so ``finally`` blocks remove its temporary files), and watches its parent: if
  the main process is killed outright (SIGKILL, OOM killer), the worker exits within a second
  instead of rendering on, unowned.
- **Data loaders too.** A DataLoader forks its workers by default, after Lightning and torch have
  started; :func:`loader_processes` gives them a fork server instead (a clean process, started once,
  with the dataset modules preloaded, that forks each worker), so they are safe and quick to start.
- **An interrupted job is interrupted.** When the main process stops for any reason, the pool is
  terminated, not drained: no worker goes on to write an output the main process no longer reports.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from multiprocessing.pool import Pool
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

Job = TypeVar("Job")
Result = TypeVar("Result")

#: How often a worker checks that the process that started it is still alive, in seconds.
PARENT_POLL_SECONDS = 0.5


def _exit_on_sigterm(signum: int, frame) -> None:
    sys.exit(128 + signum)


def _watch_parent(parent: int) -> None:
    """Exit this worker when ``parent`` is gone (its parent id changes when it is re-parented)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)  # exit through the handler, so cleanup runs
    time.sleep(5.0)
    os._exit(1)  # the main thread was stuck in native code: leave anyway


def _init_worker(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="stemkit-parent-watch").start()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


@contextmanager
def worker_pool(workers: int) -> Iterator[Pool]:
    """A pool of ``workers`` spawned processes, terminated (not drained) if the block fails or is interrupted."""
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(os.getpid(),))
    try:
        yield pool
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()
    pool.join()


def map_with_progress(fn: Callable[[Job], Result], jobs: Iterable[Job], workers: int = 1, desc: str = "", unit: str = "it",
                      progress: bool = True) -> list[Result]:
    """``[fn(job) for job in jobs]``, in ``workers`` spawned processes when more than one, in order.

    ``fn`` must be a module-level function and jobs picklable (spawned workers import ``fn``'s module).
    """
    jobs = list(jobs)
    results: list[Result] = []
    with tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress) as bar:
        if workers > 1 and len(jobs) > 1:
            with worker_pool(min(workers, len(jobs))) as pool:
                for result in pool.imap(fn, jobs):
                    results.append(result)
                    bar.update(1)
        else:
            for job in jobs:
                results.append(fn(job))
                bar.update(1)
    return results


#: Modules the data-loader fork server imports once, so that its workers start without importing them.
LOADER_PRELOAD = ["torch", "numpy", "soundfile", "stemkit.data.datasets", "stemkit.data.monophonic"]


def loader_processes(num_workers: int) -> dict:
    """DataLoader keyword arguments for ``num_workers`` worker processes started safely (see above)."""
    if num_workers <= 0:
        return {"num_workers": 0}
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(LOADER_PRELOAD)
    return {"num_workers": num_workers, "multiprocessing_context": context}
