"""Swapping two names in one step, which two writers need: the date stamper (an article's new
version for its old one) and the export (a new tree for the one a web server serves).

Python has no call for it; Linux has ``renameat2`` with ``RENAME_EXCHANGE`` (3.15+, most local
file systems), reached through the C library.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from functools import lru_cache

_RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100  # names relative to the working folder


@lru_cache(maxsize=1)
def _renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:
        return None
    if function is None:
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str], *, dir_fd: int = AT_FDCWD) -> bool:
    """Swap the names ``a`` and ``b`` (relative to ``dir_fd``) in one step; False where this
    system or its file system cannot, OSError for anything else (a name missing, no right)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(dir_fd, os.fsencode(a), dir_fd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fsdecode(a), None, os.fsdecode(b))
