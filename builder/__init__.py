"""sat-triton's builder: SaT checkpoint -> ONNX -> a Triton model repository, and a local server."""

from sat_triton import __version__

__all__ = ["__version__"]
