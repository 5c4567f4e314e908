"""Processes started to use every core: the cold start's parsers, a build's renderers.

They start by "spawn": the server may already run threads (granian's runtime), which fork
would copy. A spawned process imports the main script anew, so a script without an
``if __name__ == "__main__":`` guard would run its work again in every process
(:func:`refuse_in_bootstrap`), and a process must not outlive the one that started it
(:func:`die_with_parent`).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def die_with_parent() -> None:
    """In a started process: end when the process that started it ends (killed mid-work)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown has to do
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def refuse_in_bootstrap() -> None:
    """Raise where a process being started is running the main script again.

    A script that opens the site without an ``if __name__ == "__main__":`` guard would then
    wait in every started process for the index its parent is building, and both would hang.
    Raised instead, the started process ends, and the parent works alone.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # as multiprocessing.spawn asks
        raise RuntimeError(
            "a new process is running the main script again while it starts: put the script's "
            "work under if __name__ == '__main__': (see Python's multiprocessing documentation)"
        )


def pool(
    processes: int, initializer: Callable[..., None] = die_with_parent, initargs: tuple[object, ...] = ()
) -> ProcessPoolExecutor:
    """``processes`` spawned processes, each running ``initializer(*initargs)`` first."""
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(processes, mp_context=context, initializer=initializer, initargs=initargs)
