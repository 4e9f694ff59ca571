"""Where the registration runs: the compute device (CUDA when present, else the CPU, same code)
and one intra-op CPU thread while registering."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache, wraps
from typing import TypeVar

import torch


@lru_cache(maxsize=1)
def compute_device() -> torch.device:
    """CUDA when a GPU is present, else the CPU: the same code runs on both."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_F = TypeVar("_F", bound=Callable)


@contextmanager
def _one_cpu_thread() -> Iterator[None]:
    """One intra-op CPU thread while registering. Each iteration is a few dozen operations on
    ~8000 samples: splitting them between threads gains little, and when the cores are busy
    (other analyses, a worker beside this one) OpenMP's threads wait on each other: a small
    registration measured 27 s of CPU with 2 threads on 2 loaded cores against 1.2 s with one.
    It also makes results independent of the machine's core count."""
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def single_threaded(fn: _F) -> _F:
    @wraps(fn)
    def inner(*args, **kwargs):
        with _one_cpu_thread():
            return fn(*args, **kwargs)
    return inner  # type: ignore[return-value]
