"""sat-triton: Segment any Text (SaT) sentence segmentation served inside NVIDIA Triton.

What gets installed lives under this one namespace, mapped from the repository's folders
(``pyproject.toml``, ``[tool.setuptools] package-dir``):

- :mod:`sat_triton.client`   ``client/``: ``SaT`` over tritonclient (the bare ``pip install sat-triton``)
- :mod:`sat_triton.builder`  ``builder/``: ``sat-triton build`` and ``sat-triton serve``
- :mod:`sat_triton.pipeline` ``sat_pipeline/``: the pure numpy steps the Python models run
- :mod:`sat_triton.model_repository_templates` ``model_repository_templates/``: config and model templates

``from sat_triton import SaT`` is the client, as wtpsplit users write ``from wtpsplit import SaT``.
"""

__version__ = "0.1.0"

from .client import (AsyncSaT, RetryPolicy, SaT, SaTError, SaTOverloadedError, SaTRequestError,  # noqa: E402
                     SaTTimeoutError, SaTUnavailableError, wait_until_ready)

__all__ = ["SaT", "AsyncSaT", "RetryPolicy", "SaTError", "SaTRequestError", "SaTUnavailableError",
           "SaTOverloadedError", "SaTTimeoutError", "wait_until_ready", "__version__"]
