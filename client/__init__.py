"""A thin Triton client for sat-triton: ``SaT(...).split()`` as in wtpsplit, over gRPC or HTTP.

Depends only on ``tritonclient`` and ``numpy``.
"""

from .health import wait_until_ready
from .sat import SaT, SaTRequestError

__all__ = ["SaT", "SaTRequestError", "wait_until_ready"]
