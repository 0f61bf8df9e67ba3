"""One place for "run these jobs in a process pool, with a progress bar" (the evaluation drivers)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, TypeVar

from tqdm.auto import tqdm

Job = TypeVar("Job")
Result = TypeVar("Result")


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def map_with_progress(fn: Callable[[Job], Result], jobs: Iterable[Job], workers: int = 1, desc: str = "", unit: str = "it",
                      progress: bool = True, spawn: bool = False) -> list[Result]:
    """``[fn(job) for job in jobs]``, in ``workers`` processes when more than one, in order.

    ``spawn`` starts clean worker processes (each limited to one torch thread, since the workers are
    the parallelism) instead of forking: a child forked after torch or numba started their thread
    pools can hang on a lock it inherited mid-use. Fork is faster to start, and the only choice
    when jobs hold objects that do not pickle.
    """
    jobs = list(jobs)
    results: list[Result] = []
    with tqdm(total=len(jobs), desc=desc, unit=unit, disable=not progress) as bar:
        if workers > 1 and len(jobs) > 1:
            context = multiprocessing.get_context("spawn") if spawn else None
            initializer = _single_thread if spawn else None
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initializer) as pool:
                for result in pool.map(fn, jobs):
                    results.append(result)
                    bar.update(1)
        else:
            for job in jobs:
                results.append(fn(job))
                bar.update(1)
    return results
