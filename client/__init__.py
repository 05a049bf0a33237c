"""A thin Triton client for sat-triton: ``SaT(...).split()`` as in wtpsplit, over gRPC or HTTP.

Depends only on ``tritonclient`` and ``numpy``. ``SaT`` blocks; ``AsyncSaT`` is the same for asyncio.
Every error it raises is a :class:`SaTError`.
"""

from .aio import AsyncSaT
from .errors import (SaTClosedError, SaTError, SaTOverloadedError, SaTRequestError, SaTServerError, SaTTimeoutError,
                     SaTUnavailableError)
from .health import wait_until_ready
from .retry import NO_RETRY, RetryPolicy
from .sat import SaT

__all__ = ["SaT", "AsyncSaT", "RetryPolicy", "NO_RETRY", "SaTError", "SaTRequestError", "SaTUnavailableError",
           "SaTOverloadedError", "SaTTimeoutError", "SaTServerError", "SaTClosedError", "wait_until_ready"]
