"""Tensor names of the sat-triton ensemble (kept in step with sat_pipeline.wire by a test).

The client ships alone (``pip install sat-triton`` needs only tritonclient and numpy), so it carries
its own copy of the few names it uses.
"""

TEXT = "TEXT"
SENTENCES = "SENTENCES"
SENTENCE_COUNTS = "SENTENCE_COUNTS"
SENTENCE_SPANS = "SENTENCE_SPANS"
SENTENCE_PARAGRAPH = "SENTENCE_PARAGRAPH"
PARAGRAPH_COUNTS = "PARAGRAPH_COUNTS"
CHAR_PROBS = "CHAR_PROBS"
TOO_MANY_CHUNKS = "too many chunks"
TOO_LONG_FOR_ENSEMBLE = "too long for one ensemble request"
