"""Pure, Triton-free logic of the SaT serving pipeline.

Every step the Triton models run lives here as plain numpy functions so unit tests can call
them directly and the Python-backend ``model.py`` files stay thin adapters:

- :mod:`sat_triton.pipeline.options`      request parameters (names and defaults as in ``SaT.split``)
- :mod:`sat_triton.pipeline.texts`        decoding and validating the ``TEXT`` tensor
- :mod:`sat_triton.pipeline.tokenization` ``tokenizers`` batch encoding into flat arrays
- :mod:`sat_triton.pipeline.piece_ends`   its fast path: token ends rebuilt from the pieces' lengths
- :mod:`sat_triton.pipeline.chunking`     overlapping token windows and the ONNX input matrices
- :mod:`sat_triton.pipeline.stitching`    float16 averaging of chunk logits, token to character probabilities
- :mod:`sat_triton.pipeline.segmentation` thresholding probabilities into sentence spans
- :mod:`sat_triton.pipeline.wire`         tensor names shared by the builder, the models and the client

The builder copies this package next to each Python-backend ``model.py`` so a model repository
is self-contained (numpy, tokenizers and onnxruntime are all the server needs).
"""

