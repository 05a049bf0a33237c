"""Length-constrained segmentation: ``SaT.split(..., min_length=, max_length=, prior_type=, prior_kwargs=,
algorithm=)`` as wtpsplit 2.2.2 computes it, as spans.

wtpsplit takes this branch when ``max_length is not None or min_length > 1`` (``threshold`` and
``split_on_input_newlines`` are then ignored). Per text (or per paragraph) it

1. builds the prior from ``prior_kwargs`` plus ``max_length`` (and ``lang_code`` from the model's
   ``language``): :func:`local_prior_kwargs`, :func:`sat_triton.pipeline.priors.create_prior`;
2. picks split positions with ``constrained_segmentation`` (Viterbi or greedy over the per-character
   probabilities): :func:`constrained_boundaries`;
3. cuts the text there, extends every piece over the whitespace after it and then repairs length
   violations with ``_enforce_segment_constraints``: :func:`enforce_segment_constraints`.

Every step keeps wtpsplit's semantics exactly (same outputs for the same probabilities, including its
tie-breaking and its fallbacks); the Viterbi inner maximum and the greedy scan over a window are numpy
vector operations over the same float64 values wtpsplit compares one at a time.

The one case where a wtpsplit segment is not a slice of the text: with ``strip_whitespace=True`` the
final clean-up of ``_enforce_segment_constraints`` merges a too-short last segment into the one before
as ``prev + last`` of the two *stripped* strings, dropping the whitespace between them (e.g.
``"Hello world." + "Hi"`` -> ``"Hello world.Hi"``). :class:`Pieces` carries that as a cut: sentence k
is ``text[starts[k]:cut_starts[k]] + text[cut_ends[k]:ends[k]]`` (no cut: ``cut_starts == cut_ends ==
ends``); ``(starts, ends)`` alone is then the covering span, whitespace included. It only ever affects
the last segment of a text/paragraph.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from .errors import RequestError
from .priors import PRIOR_TYPES, Prior, create_prior
from .segmentation import boundary_spans
from .texts import whitespace_mask

ALGORITHMS = ("viterbi", "greedy")

Spans = tuple[np.ndarray, np.ndarray]


class Pieces(NamedTuple):
    """Segments as int64 code-point offsets: segment k is ``text[starts[k]:cut_starts[k]] +
    text[cut_ends[k]:ends[k]]``; ``cut_starts[k] == cut_ends[k] == ends[k]`` unless wtpsplit joined two
    stripped pieces (see the module docstring)."""

    starts: np.ndarray
    ends: np.ndarray
    cut_starts: np.ndarray
    cut_ends: np.ndarray

    @property
    def spans(self) -> Spans:
        return self.starts, self.ends

    @property
    def has_cuts(self) -> bool:
        return bool(np.any(self.cut_starts != self.cut_ends))

    def texts(self, text: str) -> list[str]:
        """The segments exactly as wtpsplit returns them."""
        out = []
        for a, b, c, d in zip(self.starts.tolist(), self.ends.tolist(), self.cut_starts.tolist(),
                              self.cut_ends.tolist()):
            out.append(text[a:b] if c == d else text[a:c] + text[d:b])
        return out


def _empty_pieces() -> Pieces:
    z = np.zeros(0, dtype=np.int64)
    return Pieces(z, z, z, z)


# --------------------------------------------------------------------------------------------------
# Priors: SaT._split's glue around create_prior_function
# --------------------------------------------------------------------------------------------------


def local_prior_kwargs(prior_kwargs: dict | None, max_length: int | None, language: str | None = None) -> dict:
    """The kwargs ``SaT._split`` hands to ``create_prior_function``: a copy of ``prior_kwargs`` with
    ``max_length`` set when given (overriding the user's), and ``lang_code = language`` when the model
    has a (truthy) language and the user gave neither ``lang_code`` nor ``target_length``.

    A user ``prior_kwargs["max_length"]`` therefore survives only when the request's ``max_length`` is
    None, and then still forbids longer segments through the prior.
    """
    if prior_kwargs is not None and not isinstance(prior_kwargs, dict):
        raise RequestError(f"option 'prior_kwargs' must be a JSON object, got {prior_kwargs!r}")
    kwargs = {} if prior_kwargs is None else prior_kwargs.copy()
    if max_length is not None:
        kwargs["max_length"] = max_length
    if language and "lang_code" not in kwargs and "target_length" not in kwargs:
        kwargs["lang_code"] = language
    return kwargs


_PRIOR_CACHE: OrderedDict = OrderedDict()
_PRIOR_CACHE_SIZE = 64
_PRIOR_CACHE_LOCK = threading.Lock()


def request_prior(prior_type: str, prior_kwargs: dict | None, max_length: int | None,
                  language: str | None = None) -> Prior:
    """The prior ``SaT.split`` builds for these options (memoised: its table is reused across texts)."""
    kwargs = local_prior_kwargs(prior_kwargs, max_length, language)
    try:
        key = (prior_type, json.dumps(kwargs, sort_keys=True))
    except (TypeError, ValueError):
        return create_prior(prior_type, kwargs)
    with _PRIOR_CACHE_LOCK:
        prior = _PRIOR_CACHE.get(key)
        if prior is not None:
            _PRIOR_CACHE.move_to_end(key)
            return prior
    prior = create_prior(prior_type, kwargs)
    with _PRIOR_CACHE_LOCK:
        _PRIOR_CACHE[key] = prior
        while len(_PRIOR_CACHE) > _PRIOR_CACHE_SIZE:
            _PRIOR_CACHE.popitem(last=False)
    return prior


def check_lengths(min_length: int, max_length: int | None, algorithm: str) -> None:
    """``SaT.split``'s argument checks, as :class:`RequestError` naming the option."""
    if max_length is not None and min_length > max_length:
        raise RequestError(
            f"option 'min_length' ({min_length}) cannot be greater than 'max_length' ({max_length})"
        )
    if min_length < 1:
        raise RequestError(f"option 'min_length' must be >= 1, got {min_length}")
    if max_length is not None and max_length < 1:
        raise RequestError(f"option 'max_length' must be >= 1, got {max_length}")
    if algorithm not in ALGORITHMS:
        raise RequestError(f"option 'algorithm': Unknown algorithm: {algorithm!r}. Must be one of {list(ALGORITHMS)}")


def clamp_lengths(n: int, min_length: int, max_length: int | None) -> tuple[int, int | None]:
    """``min_length`` and ``max_length`` capped at ``n + 1`` for a text (or paragraph) of ``n`` characters:
    the same segments as the values given, in time that depends on ``n`` only.

    Why the result cannot change: every length the algorithms compare with these bounds (a candidate
    segment's length ``i - j``, a piece's, a merge's, the distance to the text's end) is at most ``n``.
    So for any value ``>= n + 1``, ``length < min_length`` is always true and ``length > max_length``
    always false, exactly as for ``n + 1``; ``min(max_length, n)`` and ``min(position + max_length, n)``
    are ``n`` either way; the Viterbi table reads the prior only at lengths ``<= n``, and the prior itself
    is built from the request's own ``max_length`` (``prior(length) == 0`` only for lengths above it).
    Capping both keeps ``min_length <= max_length``; ``None`` stays ``None``. Without it, ``min_length=1e8``
    on a 14-character text allocated a 1e8-entry table (2.4 s; 1e9: 42.6 s). Tested against wtpsplit
    with huge values in tests/test_constraints.py.
    """
    cap = n + 1
    return min(min_length, cap), (None if max_length is None else min(max_length, cap))


# --------------------------------------------------------------------------------------------------
# constrained_segmentation
# --------------------------------------------------------------------------------------------------


def _handle_short_final_segment(indices: list, n: int, min_length: int, max_length: int) -> list:
    """wtpsplit's ``_handle_short_final_segment`` (modifies and returns ``indices``)."""
    if not indices:
        return indices
    last_chunk_len = n - indices[-1]
    if last_chunk_len >= min_length:
        return indices
    if len(indices) > 1:
        prev_split = indices[-2]
        if n - prev_split <= max_length:
            indices.pop()
        else:
            desired_split = n - min_length
            min_valid_split = prev_split + 1
            adjusted_split = max(desired_split, min_valid_split)
            if adjusted_split - prev_split <= max_length:
                indices[-1] = adjusted_split
    else:
        if n <= max_length:
            return []
        desired_split = n - min_length
        if desired_split >= min_length:
            indices[-1] = desired_split
    return indices


def _fallback_greedy_segmentation(n: int, min_length: int, max_length: int) -> list:
    """wtpsplit's ``_fallback_greedy_segmentation``: fixed ``max_length`` chunks when Viterbi finds no path.

    Quirk kept: the split list may end with ``n`` itself (the text end), which the short-final-segment
    handling then usually removes or moves.
    """
    indices = []
    curr_idx = 0
    while curr_idx < n:
        next_split = min(curr_idx + max_length, n)
        if next_split >= curr_idx + min_length:
            indices.append(next_split)
        curr_idx = next_split
    return _handle_short_final_segment(indices, n, min_length, max_length)


def _first_max(scores: np.ndarray) -> int:
    """Index of the first maximum among entries ``> -inf`` (NaN never counts), or -1: what a scan
    ``if score > best: best = score`` starting at ``best = -inf`` picks."""
    k = int(scores.argmax())
    v = scores[k]
    if v > -np.inf:
        return k
    if v != v:  # argmax stops at the first NaN; look at the rest without them
        masked = np.where(scores > -np.inf, scores, -np.inf)
        k = int(masked.argmax())
        if masked[k] > -np.inf:
            return k
    return -1


def _backtrack(dp, backpointers, n: int, min_length: int, max_length: int) -> list:
    """Segment ends from the Viterbi back-pointers (wtpsplit's fallback when nothing is reachable)."""
    if dp[n] == -np.inf:
        return _fallback_greedy_segmentation(n, min_length, max_length)
    bp = list(backpointers.tolist() if hasattr(backpointers, "tolist") else backpointers)
    result = []
    pos = n
    while pos > 0:
        result.append(pos)
        pos = bp[pos]
    result.reverse()
    if result and result[-1] == n:
        result = result[:-1]
    return _handle_short_final_segment(result, n, min_length, max_length)


def _viterbi(probs: np.ndarray, prior: Prior, min_length: int, max_length: int) -> list:
    n = len(probs)
    dp = np.full(n + 1, -np.inf)
    dp[0] = 0.0
    backpointers = [0] * (n + 1)
    with np.errstate(all="ignore"):
        # np.log in the probabilities' own dtype (float32 for float32), as wtpsplit; wtpsplit then adds
        # each as a numpy scalar to a float64 score, i.e. exactly its float64 value, as here.
        log_probs = np.log(probs).astype(np.float64).tolist()
    top = max(min(max_length, n), 1)
    # rev[top - length] = log prior(length): the window j = lo..hi (lengths i-lo down to i-hi) is then
    # the contiguous slice rev[top-i+lo : top-i+hi+1], in wtpsplit's scan order (j ascending).
    rev = np.ascontiguousarray(prior.log_values(top)[::-1])
    buf = np.empty(min(max_length, n) + 1)
    neg_inf = -np.inf
    add, argmax = np.add, np.ndarray.argmax
    with np.errstate(all="ignore"):
        for i in range(1, n + 1):
            lo = i - max_length
            if lo < 0:
                lo = 0
            hi = i - min_length
            if hi < lo:
                continue
            # wtpsplit: candidate = dp[j] + log_prior; candidate += log_probs[i-1] (not at i == n);
            # the first strictly greatest candidate wins, -inf and NaN never do.
            cand = buf[: hi - lo + 1]
            add(dp[lo : hi + 1], rev[top - i + lo : top - i + hi + 1], out=cand)
            if i < n:
                cand += log_probs[i - 1]
            k = int(argmax(cand))
            v = cand[k]
            if v > neg_inf:
                dp[i] = v
                backpointers[i] = lo + k
            elif v != v:
                k = _first_max(cand)
                if k >= 0:
                    dp[i] = cand[k]
                    backpointers[i] = lo + k
    return _backtrack(dp, backpointers, n, min_length, max_length)


# Viterbi with min_length >= this computes min_length positions per numpy step (see _viterbi_blocked).
_BLOCK_MIN_LENGTH = 3


def _viterbi_blocked(probs: np.ndarray, prior: Prior, min_length: int, max_length: int) -> list:
    """The same Viterbi, ``min_length`` positions at a time.

    Position i only looks at dp[j] for j <= i - min_length, so positions i0 .. i0+min_length-1 depend on
    dp[< i0] alone and their candidates form one (rows i) x (columns j) matrix. Cells outside a row's
    window get a -inf log prior (lengths < min_length or > max_length) and never win; the others hold
    exactly wtpsplit's ``(dp[j] + log_prior) + log_probs[i-1]``, and each row takes its first maximum.
    """
    n = len(probs)
    m = min_length
    dp = np.full(n + 1, -np.inf)
    dp[0] = 0.0
    backpointers = np.zeros(n + 1, dtype=np.int64)
    with np.errstate(all="ignore"):
        lp = np.log(probs).astype(np.float64)
    # What row i adds after the prior: log_probs[i-1], and nothing (-0.0 keeps every value) at i == n.
    row_add = np.append(np.append([-0.0], lp), -0.0)[: n + 2]
    row_add[n] = -0.0
    top = min(max_length, n)
    T = top + m
    lpm = np.full(T + 1, -np.inf)  # lpm[L]: log prior of length L where m <= L <= max_length, else -inf
    upto = min(T, max_length)
    if upto >= m:
        lpm[m : upto + 1] = prior.log_values(upto)[m : upto + 1]
    # Row t of `windows` is lpm_rev[t : t + top + 1], lpm_rev[T - L] = lpm[L] (padded so every t <= T fits).
    lpm_rev = np.concatenate((lpm[::-1], np.full(top, -np.inf)))
    windows = np.lib.stride_tricks.sliding_window_view(lpm_rev, top + 1)
    neg_inf = -np.inf
    with np.errstate(all="ignore"):
        for i0 in range(1, n + 1, m):
            i1 = min(i0 + m, n + 1)
            j0 = max(0, i0 - max_length)
            j1 = i1 - 1 - m
            if j1 < j0:
                continue
            width = j1 - j0 + 1
            rows = i1 - i0
            t0 = T - (i0 - j0)  # row r reads lpm_rev[t0 - r : t0 - r + width] = lpm[i - j] for j = j0..j1
            priors = windows[t0 - rows + 1 : t0 + 1, :width][::-1]
            cand = dp[j0 : j1 + 1] + priors
            cand += row_add[i0:i1, None]
            ks = cand.argmax(axis=1)
            best = cand[np.arange(rows), ks]
            ok = best > neg_inf
            if not ok.all():
                for r in np.flatnonzero(best != best).tolist():  # rows with a NaN: skip the NaNs
                    k = _first_max(cand[r])
                    if k >= 0:
                        ks[r], best[r], ok[r] = k, cand[r, k], True
            if ok.any():
                dp[i0:i1][ok] = best[ok]
                backpointers[i0:i1][ok] = j0 + ks[ok]
    return _backtrack(dp, backpointers, n, min_length, max_length)


def _drops_short_tail(indices: list, n: int, current_idx: int, min_length: int, max_length: int) -> bool:
    """Greedy's end of text: a last piece shorter than min_length is merged into the previous one
    (its split popped) when that stays within max_length."""
    if n - current_idx < min_length and indices:
        new_last_split = indices[-2] if len(indices) >= 2 else 0
        if n - new_last_split <= max_length:
            indices.pop()
            return True
    return False


def _greedy(probs: np.ndarray, prior: Prior, min_length: int, max_length: int) -> list:
    n = len(probs)
    # wtpsplit multiplies a probs scalar by the prior's Python/numpy float: a float64 product (numpy 1.x).
    p64 = np.asarray(probs, dtype=np.float64)
    values = prior.values(max(min(max_length, n), 1))
    indices: list = []
    current_idx = 0
    while current_idx < n:
        best_end = -1
        start_search = current_idx + min_length
        end_search = min(current_idx + max_length + 1, n + 1)
        if start_search >= end_search:
            if _drops_short_tail(indices, n, current_idx, min_length, max_length):
                return indices
            best_end = n
        else:
            # ends start_search .. end_search-1; score = probs[end-1] * prior(end - current_idx),
            # except at end == n, where it is the prior alone.
            lengths_lo, lengths_hi = start_search - current_idx, end_search - 1 - current_idx
            with np.errstate(all="ignore"):
                scores = p64[start_search - 1 : end_search - 1] * values[lengths_lo : lengths_hi + 1]
            if end_search == n + 1:
                scores[-1] = values[n - current_idx]
            k = _first_max(scores)
            if k >= 0:
                best_end = start_search + k
            if best_end == -1:
                best_end = min(current_idx + max_length, n)
        if best_end == n:
            if _drops_short_tail(indices, n, current_idx, min_length, max_length):
                return indices
            break
        indices.append(best_end)
        current_idx = best_end
    return indices


def constrained_boundaries(probs: np.ndarray, prior: Prior, min_length: int = 1, max_length: int | None = None,
                           algorithm: str = "viterbi") -> list:
    """wtpsplit's ``constrained_segmentation``: 1-based split end positions in ``[1, n)`` (a list of ints;
    the Viterbi fallback may also yield ``n``). ``max_length=None`` means ``len(probs)``."""
    probs = np.asarray(probs)
    n = len(probs)
    min_length, max_length = clamp_lengths(n, min_length, max_length)
    if max_length is None:
        max_length = n
    if algorithm == "greedy":
        return _greedy(probs, prior, min_length, max_length)
    if algorithm == "viterbi":
        if min_length >= _BLOCK_MIN_LENGTH:
            return _viterbi_blocked(probs, prior, min_length, max_length)
        return _viterbi(probs, prior, min_length, max_length)
    raise RequestError(f"option 'algorithm': Unknown algorithm: {algorithm}")


# --------------------------------------------------------------------------------------------------
# _enforce_segment_constraints
# --------------------------------------------------------------------------------------------------


class _Text:
    """Whitespace lookups over a whole text, so a paragraph can be handled in place."""

    def __init__(self, is_space: np.ndarray):
        n = len(is_space)
        self.n = n
        index = np.where(is_space, n, np.arange(n))
        nxt = np.minimum.accumulate(index[::-1])[::-1] if n else index
        self.next_ns = np.append(nxt, n).astype(np.int64).tolist()  # first non-space >= i (n if none)
        index = np.where(is_space, -1, np.arange(n))
        self.prev_ns = (np.maximum.accumulate(index) if n else index).astype(np.int64).tolist()  # last <= i
        self.is_space_arr = is_space
        self.is_space = is_space.tolist()

    def strip(self, a: int, b: int) -> tuple[int, int]:
        """``text[a:b].strip()`` as a span (empty: ``a == b``)."""
        if a >= b:
            return a, a
        s = self.next_ns[a]
        if s >= b:
            return a, a
        return s, self.prev_ns[b - 1] + 1

    def stripped_len(self, a: int, b: int) -> int:
        s, e = self.strip(a, b)
        return e - s


def _enforce(tx: _Text, base: int, limit: int, indices, min_length: int, max_length: int | None,
             strip_whitespace: bool) -> Pieces:
    """``_enforce_segment_constraints(text[base:limit], indices, ...)`` in ``text`` coordinates."""
    if limit <= base:
        return _empty_pieces()
    n_local = limit - base
    min_length, max_length = clamp_lengths(n_local, min_length, max_length)
    if tx.next_ns[base] >= limit:  # whitespace only
        if strip_whitespace:
            return _empty_pieces()
        if max_length is not None and n_local > max_length:
            starts = np.arange(base, limit, max_length, dtype=np.int64)
            ends = np.minimum(starts + max_length, limit)
            return Pieces(starts, ends, ends, ends)
        s, e = np.array([base], dtype=np.int64), np.array([limit], dtype=np.int64)
        return Pieces(s, e, e, e)

    if min_length <= 1 and max_length is None:  # (not reached from SaT.split, which then does not constrain)
        s, e = boundary_spans(tx.is_space_arr[base:limit], np.asarray(indices, dtype=np.int64), strip_whitespace)
        s, e = s + base, e + base
        return Pieces(s, e, e, e)

    next_ns = tx.next_ns
    # Boundaries: cut after each index, extended over the whitespace after it.
    boundaries = []
    offset = base
    for idx in indices:
        end = base + int(idx) + 1
        if end < limit:
            end = min(next_ns[end], limit)
        if end > offset:
            boundaries.append((offset, end))
        offset = end
    if offset < limit:
        boundaries.append((offset, limit))
    # (`if not boundaries` in wtpsplit is unreachable: a non-empty text always yields one.)

    is_space = tx.is_space
    strip = tx.strip
    result: list = []  # (start, end) spans
    pending = -1  # start of wtpsplit's pending_prefix: it is always text[pending:start of next boundary]
    count = len(boundaries)
    i = 0
    while i < count:
        start, end = boundaries[i]
        seg_s = start if pending < 0 else pending  # segment = text[seg_s:end]
        pending = -1

        if max_length is not None and end - seg_s > max_length:
            while end - seg_s > max_length:
                split_at = max_length
                for j in range(max_length - 1, max(0, max_length - 20), -1):
                    if is_space[seg_s + j]:
                        split_at = j + 1
                        break
                a, b = seg_s, seg_s + split_at
                seg_s += split_at
                if strip_whitespace:
                    a, b = strip(a, b)
                if b > a:
                    result.append((a, b))
            if end > seg_s:
                if i + 1 < count:
                    pending = seg_s
                else:
                    a, b = (strip(seg_s, end) if strip_whitespace else (seg_s, end))
                    if b > a:
                        result.append((a, b))
            i += 1
            continue

        seg_len = tx.stripped_len(seg_s, end) if strip_whitespace else end - seg_s
        if seg_len < min_length and i + 1 < count:
            j = i + 1
            while j < count and seg_len < min_length:
                next_end = boundaries[j][1]
                merged_len = tx.stripped_len(seg_s, next_end) if strip_whitespace else next_end - seg_s
                if max_length is not None and merged_len > max_length:
                    break
                end = next_end
                seg_len = merged_len
                j += 1
            a, b = (strip(seg_s, end) if strip_whitespace else (seg_s, end))
            if b > a:
                result.append((a, b))
            i = j
            continue

        a, b = (strip(seg_s, end) if strip_whitespace else (seg_s, end))
        if b > a:
            result.append((a, b))
        i += 1

    # (wtpsplit's "remaining prefix" block is unreachable: a pending prefix is only left when another
    # boundary follows, and that boundary consumes it.)

    cut = None
    if len(result) > 1:
        last_s, last_e = result[-1]
        last_len = last_e - last_s  # segments are already stripped when strip_whitespace
        if last_len < min_length:
            prev_s, prev_e = result[-2]
            merged_len = (prev_e - prev_s) + last_len  # len(prev + last): the gap is not in it
            if max_length is None or merged_len <= max_length:
                result[-2] = (prev_s, last_e)
                result.pop()
                if prev_e < last_s:
                    cut = (prev_e, last_s)

    arr = np.array(result, dtype=np.int64).reshape(-1, 2)
    starts, ends = arr[:, 0].copy(), arr[:, 1].copy()
    cut_starts, cut_ends = ends.copy(), ends.copy()
    if cut is not None:
        cut_starts[-1], cut_ends[-1] = cut
    return Pieces(starts, ends, cut_starts, cut_ends)


def enforce_segment_constraints(text: str, indices, min_length: int, max_length: int | None,
                                strip_whitespace: bool = False) -> Pieces:
    """wtpsplit's ``_enforce_segment_constraints(text, indices, ...)`` (0-based split indices) as :class:`Pieces`."""
    return _enforce(_Text(whitespace_mask(text)), 0, len(text), indices, min_length, max_length, strip_whitespace)


# --------------------------------------------------------------------------------------------------
# SaT._split's constrained branches
# --------------------------------------------------------------------------------------------------


def _check_probs(text: str, probs: np.ndarray) -> None:
    if probs.ndim != 1 or (len(probs) != len(text) and text.strip()):
        raise ValueError(f"expected one probability per character ({len(text)}), got shape {probs.shape}")


def _segment(tx: _Text, base: int, limit: int, probs: np.ndarray, prior: Prior, min_length: int,
             max_length: int | None, algorithm: str, strip_whitespace: bool) -> Pieces:
    if tx.next_ns[base] >= limit:
        # Empty or whitespace-only: _enforce_segment_constraints answers before looking at the indices
        # (wtpsplit's probabilities for such texts are a single 0 anyway).
        return _enforce(tx, base, limit, [], min_length, max_length, strip_whitespace)
    boundaries = constrained_boundaries(probs, prior, min_length, max_length, algorithm)
    indices = [b - 1 for b in boundaries]
    return _enforce(tx, base, limit, indices, min_length, max_length, strip_whitespace)


def constrained_pieces(text: str, probs: np.ndarray, min_length: int, max_length: int | None,
                       prior_type: str = "uniform", prior_kwargs: dict | None = None, algorithm: str = "viterbi",
                       strip_whitespace: bool = False, language: str | None = None) -> Pieces:
    """The segments ``SaT.split(text, min_length=..., max_length=..., ...)`` returns for these per-character
    probabilities (no paragraph segmentation), exactly, as :class:`Pieces`.

    ``language`` is the ``language=`` the SaT model was created with (prior defaults by language).
    Raises :class:`RequestError` for invalid options/prior kwargs.
    """
    check_lengths(min_length, max_length, algorithm)
    prior = request_prior(prior_type, prior_kwargs, max_length, language)
    if not text:
        return _empty_pieces()
    probs = np.asarray(probs)
    _check_probs(text, probs)
    tx = _Text(whitespace_mask(text))
    return _segment(tx, 0, len(text), probs, prior, min_length, max_length, algorithm, strip_whitespace)


def constrained_spans(text: str, probs: np.ndarray, min_length: int, max_length: int | None,
                      prior_type: str = "uniform", prior_kwargs: dict | None = None, algorithm: str = "viterbi",
                      strip_whitespace: bool = False, language: str | None = None) -> Spans:
    """int64 ``(starts, ends)`` with ``text[a:b]`` the segments wtpsplit returns, except for a final
    segment that wtpsplit joined from two stripped pieces (``strip_whitespace`` only; see
    :class:`Pieces`), whose span here includes the whitespace wtpsplit dropped from its middle."""
    return constrained_pieces(text, probs, min_length, max_length, prior_type, prior_kwargs, algorithm,
                              strip_whitespace, language).spans


def paragraph_constrained_pieces(text: str, probs: np.ndarray, paragraph_threshold: float, min_length: int,
                                 max_length: int | None, prior_type: str = "uniform",
                                 prior_kwargs: dict | None = None, algorithm: str = "viterbi",
                                 strip_whitespace: bool = False,
                                 language: str | None = None) -> tuple[Pieces, np.ndarray, int]:
    """``do_paragraph_segmentation`` with constraints: paragraphs where ``probs > paragraph_threshold``
    (never stripped), then the constrained segmentation inside each, with the paragraph's slice of the
    same probabilities (wtpsplit's sentence and newline probabilities are the same array).

    Returns the pieces of all paragraphs in order, each piece's paragraph index, and the number of
    paragraphs (a paragraph may have no pieces: whitespace-only with ``strip_whitespace``).
    """
    check_lengths(min_length, max_length, algorithm)
    prior = request_prior(prior_type, prior_kwargs, max_length, language)
    if not text:
        return _empty_pieces(), np.zeros(0, dtype=np.int32), 0
    probs = np.asarray(probs)
    _check_probs(text, probs)
    is_space = whitespace_mask(text)
    tx = _Text(is_space)
    # wtpsplit: indices_to_sentences(text, np.where(newline_probs > paragraph_threshold)[0])
    p_starts, p_ends = boundary_spans(is_space, np.flatnonzero(probs > paragraph_threshold), False)
    parts, owners = [], []
    for index, (a, b) in enumerate(zip(p_starts.tolist(), p_ends.tolist())):
        pieces = _segment(tx, a, b, probs[a:b], prior, min_length, max_length, algorithm, strip_whitespace)
        parts.append(pieces)
        owners.append(np.full(len(pieces.starts), index, dtype=np.int32))
    if not parts:
        return _empty_pieces(), np.zeros(0, dtype=np.int32), 0
    merged = Pieces(*(np.concatenate([getattr(p, f) for p in parts]) for f in Pieces._fields))
    return merged, np.concatenate(owners), len(parts)


def paragraph_constrained_spans(text: str, probs: np.ndarray, paragraph_threshold: float, min_length: int,
                                max_length: int | None, prior_type: str = "uniform",
                                prior_kwargs: dict | None = None, algorithm: str = "viterbi",
                                strip_whitespace: bool = False, language: str | None = None) -> tuple[Spans, np.ndarray]:
    """Like :func:`sat_triton.pipeline.segmentation.paragraph_sentence_spans`: the spans and each one's paragraph."""
    pieces, owners, _ = paragraph_constrained_pieces(text, probs, paragraph_threshold, min_length, max_length,
                                                     prior_type, prior_kwargs, algorithm, strip_whitespace, language)
    return pieces.spans, owners


__all__ = [
    "ALGORITHMS", "PRIOR_TYPES", "Pieces", "local_prior_kwargs", "request_prior", "check_lengths", "clamp_lengths",
    "constrained_boundaries", "enforce_segment_constraints", "constrained_pieces", "constrained_spans",
    "paragraph_constrained_pieces", "paragraph_constrained_spans",
]
