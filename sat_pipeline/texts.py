"""Texts as the pipeline sees them: decoded strictly, measured in Unicode code points.

Offsets everywhere (token offsets, spans, probabilities) count code points, as Python's ``str``
does, so ``text[start:end]`` on the client gives back each sentence.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from .errors import RequestError

_UTF32 = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"

# Every code point for which str.isspace() is true (what wtpsplit's whitespace handling, str.strip()
# and the regex \s use): computed once so whitespace tests are one vectorised lookup per text.
WHITESPACE = np.array([c for c in range(sys.maxunicode + 1) if chr(c).isspace()], dtype=np.uint32)
# The same set as a lookup table up to the largest such code point (U+3000); one slot past it stands
# for every larger code point, none of which is whitespace.
_IS_SPACE = np.zeros(int(WHITESPACE.max()) + 2, dtype=bool)
_IS_SPACE[WHITESPACE] = True


def decode_texts(raw: np.ndarray, tensor_name: str = "TEXT") -> list[str]:
    """Decode a BYTES tensor (an object array of ``bytes``) into strings, strictly as UTF-8."""
    texts = []
    for index, item in enumerate(raw.reshape(-1)):
        if isinstance(item, str):
            texts.append(item)
            continue
        try:
            texts.append(bytes(item).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise RequestError(
                f"{tensor_name}[{index}] is not valid UTF-8: byte 0x{exc.object[exc.start]:02x} at byte offset "
                f"{exc.start} ({exc.reason}); send text encoded as UTF-8"
            ) from None
    return texts


def codepoints(text: str) -> np.ndarray:
    """The code points of ``text`` as a uint32 array (no per-character Python loop)."""
    return np.frombuffer(text.encode(_UTF32), dtype=np.uint32)


@dataclass(frozen=True)
class TextBatch:
    """A request's texts as one array of code points, so per-character work runs once per request."""

    cps: np.ndarray  # uint32 [total code points]: every text's code points, texts concatenated
    lengths: np.ndarray  # int64 [texts]: code points per text

    @classmethod
    def of(cls, texts: list[str]) -> "TextBatch":
        return cls(codepoints("".join(texts)), np.array([len(text) for text in texts], dtype=np.int64))

    @property
    def starts(self) -> np.ndarray:
        """Where each text begins in ``cps``."""
        return np.cumsum(self.lengths) - self.lengths


def utf8_slices(texts: list[str], counts: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Object array of ``texts[i][start:end].encode("utf-8")`` for every span, ``counts[i]`` spans per text,
    cut from each text's UTF-8 at byte offsets computed with numpy (no ``str`` per slice)."""
    out = np.empty(len(spans), dtype=np.object_)
    first = 0
    for text, count in zip(texts, np.asarray(counts).tolist()):
        if not count:
            continue
        starts, ends = spans[first:first + count, 0], spans[first:first + count, 1]
        blob = text.encode("utf-8")
        if len(blob) != len(text):  # byte offset of code point k: k plus the extra bytes before it
            cps = codepoints(text)
            extra = (cps >= 0x80).astype(np.uint8) + (cps >= 0x800) + (cps >= 0x10000)
            del cps
            offset_type = np.int32 if len(blob) < 2**31 else np.int64
            offsets = np.zeros(len(text) + 1, dtype=offset_type)
            np.cumsum(extra, dtype=offset_type, out=offsets[1:])
            del extra
            starts, ends = starts + offsets[starts], ends + offsets[ends]
            del offsets
        out[first:first + count] = [blob[a:b] for a, b in zip(starts.tolist(), ends.tolist())]
        first += count
    return out


def space_mask(cps: np.ndarray) -> np.ndarray:
    """``mask[i]`` is true where code point ``cps[i]`` is whitespace (one table lookup per position)."""
    return _IS_SPACE[np.minimum(cps, len(_IS_SPACE) - 1)]


def whitespace_mask(text: str) -> np.ndarray:
    """``mask[i] == text[i].isspace()`` for every position."""
    return space_mask(codepoints(text))


def is_blank(text: str) -> bool:
    """wtpsplit leaves texts with ``not text.strip()`` out of inference."""
    return not text.strip()
