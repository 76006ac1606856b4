"""Storage faults (disk full, read-only or vanished data directory, I/O errors) as 503 ProblemDetails with the reason.

SQLite reports them as OperationalError / DatabaseError with a message, the file system as OSError with an errno.
The transaction they hit is rolled back (Store.transaction), so nothing of the refused request is kept, and the
broker keeps serving reads; writes succeed again, without any repair, as soon as space or write access is back.
"""

from __future__ import annotations

import errno
import sqlite3

from ._errors import NgsiLdError

RETRY_AFTER_S = 10
_SQLITE_MESSAGES = (
    ("disk is full", "disk full"),
    ("readonly database", "data directory is read-only"),
    ("read-only file system", "data directory is read-only"),
    ("disk i/o error", "disk I/O error"),
    ("unable to open database file", "data directory not accessible"),
)
_ERRNOS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "data directory is read-only",
    errno.EACCES: "data directory not writable",
    errno.EIO: "disk I/O error",
}


def storage_fault(exc: BaseException) -> str | None:
    """What an operator must fix, when `exc` is a storage fault; None for any other exception."""
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
        text = str(exc).lower()
        for fragment, reason in _SQLITE_MESSAGES:
            if fragment in text:
                return reason
    if isinstance(exc, OSError) and exc.errno in _ERRNOS:
        return _ERRNOS[exc.errno]
    return None


def unavailable(reason: str, exc: BaseException) -> NgsiLdError:
    """503 with the reason; Retry-After tells clients (the IoT Agent's writer included) to come back."""
    return NgsiLdError("InternalError", "Storage unavailable", f"{reason} ({exc}); the request was not stored",
                       status=503, headers={"Retry-After": str(RETRY_AFTER_S)})
