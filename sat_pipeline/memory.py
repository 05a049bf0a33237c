"""Freed memory goes back to the operating system in a long-lived Python step.

glibc serves a large allocation with its own mmap and returns it on free, but after such a block is
freed it raises that threshold (up to 32 MB), so the next arrays of a few MB come from the heap and stay
in the process's RSS after they are freed: the long model's RSS then keeps what its largest request's
temporaries took. Fixing the threshold (which also turns off the raising) keeps large arrays on mmap.
Measured on a 10,000,000-character text (docs/limits.md): the long model's peak +1,470 MB without.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_large_frees_to_the_os(threshold: int = 128 * 1024) -> bool:
    """Serve every allocation of ``threshold`` bytes or more with mmap, in this process; False where
    the C library is not glibc (nothing changes there)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False
