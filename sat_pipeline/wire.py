"""Tensor names between the ensemble's steps, and on the wire to clients.

The builder renders every ``config.pbtxt`` (ensemble maps included) from these constants, the
exporter names the ONNX graph's inputs and outputs with them, and the client reads them: one
source, so a renamed tensor cannot break a hand-written map.
"""

# Ensemble inputs and outputs (the public contract, see README "Wire contract").
TEXT = "TEXT"  # TYPE_STRING [-1]
SENTENCES = "SENTENCES"  # TYPE_STRING [-1]
SENTENCE_COUNTS = "SENTENCE_COUNTS"  # TYPE_INT32 [-1]
SENTENCE_SPANS = "SENTENCE_SPANS"  # TYPE_INT64 [-1, 2]
SENTENCE_PARAGRAPH = "SENTENCE_PARAGRAPH"  # TYPE_INT32 [-1]
PARAGRAPH_COUNTS = "PARAGRAPH_COUNTS"  # TYPE_INT32 [-1]: paragraphs per text
CHAR_PROBS = "CHAR_PROBS"  # TYPE_FP32 [-1]: boundary probability of every character, texts concatenated


# Tokenizer -> ONNX model.
INPUT_IDS = "input_ids"  # INT64 [chunks, seq]
ATTENTION_MASK = "attention_mask"  # INT64 [chunks, seq]
# ONNX model -> postprocessor: the boundary logit (label 0) of every position.
LOGITS = "logits"  # FP32 [chunks, seq]

# Tokenizer -> postprocessor.
TOKEN_COUNTS = "TOKEN_COUNTS"  # INT64 [texts]: tokens per text (0 for blank texts)
TOKEN_ENDS = "TOKEN_ENDS"  # INT64 [tokens]: end offset (code points) of every token, texts concatenated

# Ensemble-internal tensor names (between steps).
ENSEMBLE_INPUT_IDS = "chunk_input_ids"
ENSEMBLE_ATTENTION_MASK = "chunk_attention_mask"
ENSEMBLE_LOGITS = "chunk_logits"
ENSEMBLE_TOKEN_COUNTS = "token_counts"
ENSEMBLE_TOKEN_ENDS = "token_ends"

# Marker in the error a request gets when its chunks exceed what the ONNX step accepts; the client
# reacts to it by sending the texts to the long-text model.
TOO_MANY_CHUNKS = "too many chunks"
# Marker in the error a request gets when it has more characters than the ensemble takes in one request
# (sat-triton build --max_ensemble_request_chars), refused before tokenizing; the client reacts to it
# as to TOO_MANY_CHUNKS.
TOO_LONG_FOR_ENSEMBLE = "too long for one ensemble request"
