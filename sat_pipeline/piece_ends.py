"""Token end offsets rebuilt from the ids: the fast path of :func:`tokenization.tokenize`.

``tokenizers``' ``encode_batch`` tracks every token's character offsets, and Python then reads them
one ``(start, end)`` tuple per token: together about a third of the tokenizer step. For a Unigram model
(SaT's XLM-R tokenizer) under a Metaspace pre-tokenizer, each token is a vocabulary piece copied from
the text, so its end follows from the ids alone: the running sum of its text's pieces' lengths (with
``WhitespaceSplit`` first, of its word's, from the word's start). :class:`PieceEnds` takes ids from
``encode_batch_fast`` (no offsets) and rebuilds the ends with numpy over the whole request, and says
which texts it could not rebuild exactly; those go through ``encode_batch`` as before.

A text is rebuilt only where every step can be checked:

- its normalization maps it character for character (unchanged, or each changed character becomes
  one character on its own, as NFKC's full-width punctuation does); otherwise offsets would need the
  normalizer's alignments;
- it holds no added token (``<s>``, ``<mask>``...) and no literal replacement character (``▁``);
- it has as many ``<unk>`` as runs of characters without a piece of their own: Unigram puts ``<unk>``
  on exactly those characters and fuses each run into one, so the k-th ``<unk>`` is the k-th run;
- its pieces add up to its length (with the prepended ``▁``), word by word after ``WhitespaceSplit``,
  whose words the tokens must match one for one (a word's first piece begins with ``▁``).

Supported pipelines (checked once, from ``tokenizer.json``): model Unigram without byte fallback,
pre-tokenizer ``Metaspace`` (split on) alone or after ``WhitespaceSplit``, any normalizer. Others get
``None`` from :meth:`PieceEnds.for_tokenizer` and keep ``encode_batch``, and so does a tokenizer whose
rebuilt arrays differ from ``encode_batch``'s on :data:`SELF_CHECK` when it is loaded.

Cost: the rebuild saves about a quarter of the step's time per character and adds a fixed ~0.1 ms of
numpy calls per request, so requests under :data:`MIN_REBUILD_CHARS` characters keep ``encode_batch``
(``bench/steps.py`` measures both side by side).
"""

from __future__ import annotations

import json
from itertools import chain, compress
from operator import attrgetter

import numpy as np

_IDS = attrgetter("ids")
# below this many characters a request gains nothing rebuilt (bench/steps.py on the 2-core CPU, ~260
# characters a text: 0.96-0.99x at 4 texts, 1.14-1.20x at 8, 1.25-1.30x at 16, 1.31-1.35x from 32)
MIN_REBUILD_CHARS = 2048
# texts the rebuild must reproduce exactly before a tokenizer uses it: scripts, spaces of every kind,
# full-width punctuation, combining marks, emoji, specials written out, unknown characters
SELF_CHECK = [
    "Hello world. This is a test! How are you?", "  leading and trailing spaces  ", "a  b   c\td\ne\r\nf",
    "Der Fuchs sprang über den Zaun. Ça va? Ñandú.", "这是一个测试。你好，世界！", "日本語のテキスト、カタカナ。",
    "مرحبا بالعالم. שלום עולם.", "Привет, мир! Καλημέρα κόσμε.", "e\u0301 a\u0308\u0323 \uff21\uff22 \u2460 \ufb01",
    "\u00a0non\u00a0breaking\u2009thin\u3000ideographic", "😀 👨\u200d👩\u200d👧 🇩🇪 👍🏽", "<s> </s> <pad> <unk> <mask>",
    "\u2581 literal replacement \u2581\u2581", "\x00\x07 controls", "", " ", "x",
]
# Rust's char::is_whitespace (the Unicode White_Space property): what WhitespaceSplit splits on
WHITESPACE = np.array([*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
                       0x202F, 0x205F, 0x3000], dtype=np.uint32)


def _metaspace(pre: dict | None) -> tuple[bool, dict] | None:
    """(whitespace split first?, the Metaspace settings) for a pre-tokenizer this module can follow."""
    if pre is None:
        return None
    steps = pre["pretokenizers"] if pre["type"] == "Sequence" else [pre]
    kinds = [step["type"] for step in steps]
    if kinds == ["Metaspace"]:
        return False, steps[0]
    if kinds == ["WhitespaceSplit", "Metaspace"]:
        return True, steps[1]
    return None


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


class PieceEnds:
    """Ids and end offsets for the texts it can rebuild exactly (see the module docstring)."""

    def __init__(self, tokenizer, whitespace_split: bool, replacement: str, prepend: str, spec: dict):
        from tokenizers import Tokenizer

        pieces = [piece for piece, _ in spec["model"]["vocab"]]
        self.lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        self.word_first = np.fromiter((p.startswith(replacement) for p in pieces), dtype=bool, count=len(pieces))
        self.unknown = np.zeros(len(pieces), dtype=bool)
        if spec["model"].get("unk_id") is not None:
            self.unknown[spec["model"]["unk_id"]] = True
        # characters with a piece of their own (never under an <unk>); a space is the replacement
        # character, and after WhitespaceSplit whitespace is in no token at all
        self.alone = np.zeros(0x110000, dtype=bool)  # by code point (1.1 MB): one lookup a character
        self.alone[[ord(piece) for piece in pieces if len(piece) == 1]] = True
        self.alone[0x20] = self.alone[ord(replacement)]
        if whitespace_split:
            self.alone[WHITESPACE] = True
        self.whitespace_split, self.prepend = whitespace_split, prepend
        self.avoid = sorted({token["content"] for token in spec.get("added_tokens", [])} | {replacement})
        self.normalizer = tokenizer.normalizer
        self.single = {}  # code point -> the code point it normalizes to on its own, or -1
        # the clone encodes the normalized texts as they are (normalization happens once, here) and,
        # as texts holding an added token never reach it, without scanning for them (5% of its time)
        self.plain = Tokenizer.from_str(json.dumps(dict(spec, normalizer=None, added_tokens=[], post_processor=None,
                                                        decoder=None, padding=None, truncation=None)))

    @classmethod
    def for_tokenizer(cls, tokenizer) -> PieceEnds | None:
        """A rebuilder for this ``tokenizers.Tokenizer``, or None where its pipeline is not one it follows."""
        if not hasattr(tokenizer, "encode_batch_fast"):  # tokenizers < 0.20
            return None
        spec = json.loads(tokenizer.to_str())
        model, pre = spec["model"], _metaspace(spec.get("pre_tokenizer"))
        if model["type"] != "Unigram" or model.get("byte_fallback") or pre is None:
            return None
        whitespace_split, meta = pre
        prepend = meta.get("prepend_scheme") or ("always" if meta.get("add_prefix_space", True) else "never")
        if not meta.get("split", True) or len(meta["replacement"]) != 1 or prepend not in ("always", "first", "never"):
            return None
        pieces = cls(tokenizer, whitespace_split, meta["replacement"], prepend, spec)
        return pieces if pieces.agrees(tokenizer, SELF_CHECK) else None

    def agrees(self, tokenizer, texts: list[str]) -> bool:
        """The rebuilt ids and ends of ``texts`` are ``encode_batch``'s, text by text."""
        ids, ends, counts, rebuilt = self.encode(texts)
        at = 0
        for text, count, done in zip(texts, counts, rebuilt):
            if done:
                encoding = tokenizer.encode(text, add_special_tokens=False)
                if (encoding.ids != ids[at:at + count].tolist()
                        or [end for _, end in encoding.offsets] != ends[at:at + count].tolist()):
                    return False
                at += count
        return True

    # -- which texts qualify --------------------------------------------------------------------------

    def _one_to_one(self, texts: list[str], normalized: list[str]) -> np.ndarray:
        """Per text: the normalized text is the text with some characters replaced one for one, each by
        what it normalizes to alone (so the normalizer's alignments are the identity)."""
        n = len(texts)
        same = np.fromiter(map(str.__eq__, normalized, texts), dtype=bool, count=n)
        if same.all():
            return same
        changed = np.flatnonzero(~same)
        lengths = np.fromiter((len(texts[i]) for i in changed), dtype=np.int64, count=len(changed))
        even = lengths == np.fromiter((len(normalized[i]) for i in changed), dtype=np.int64, count=len(changed))
        changed, lengths = changed[even], lengths[even]
        if not len(changed):
            return same
        before = _code_points("".join(texts[i] for i in changed)).astype(np.int64)
        after = _code_points("".join(normalized[i] for i in changed)).astype(np.int64)
        differs = before != after
        pairs, where = np.unique(before[differs] << 21 | after[differs], return_inverse=True)
        for code in np.unique(pairs >> 21):
            if int(code) not in self.single:
                alone = self.normalizer.normalize_str(chr(code))
                self.single[int(code)] = ord(alone) if len(alone) == 1 else -1
        good_pair = np.fromiter((self.single[int(p >> 21)] == int(p & 0x1FFFFF) for p in pairs), dtype=bool,
                                count=len(pairs))
        owner = np.repeat(np.arange(len(changed)), lengths)[differs]
        bad = np.bincount(owner[~good_pair[where]], minlength=len(changed)) > 0
        same[changed[~bad]] = True
        return same

    def _free_of_avoided(self, joined: str, texts: list[str], ok: np.ndarray) -> np.ndarray:
        for content in self.avoid:
            if content in joined:
                ok &= np.fromiter((content not in text for text in texts), dtype=bool, count=len(texts))
        return ok

    # -- words ------------------------------------------------------------------------------------------

    def _words(self, points: np.ndarray, text_starts: np.ndarray, text_ends: np.ndarray):
        """``WhitespaceSplit``'s words (runs of non-whitespace): each one's start in the joined texts, its
        text, its length in pieces' characters (with the prepended replacement character, if any) and
        that prepended count (0 or 1)."""
        last = len(points) - 1
        word = ~np.isin(points, WHITESPACE)
        edge = np.empty(len(points) + 1, dtype=bool)  # a word begins or ends between two characters
        edge[1:-1] = word[1:] != word[:-1]
        edge[0] = edge[-1] = True
        edge[text_starts] = edge[text_ends] = True
        cuts = np.flatnonzero(edge)[:-1]
        in_word = word[np.minimum(cuts, last)]
        starts, stops = cuts[in_word], np.flatnonzero(edge)[1:][in_word]
        text = np.searchsorted(text_starts, starts, side="right") - 1
        prepended = (np.ones(len(starts), dtype=bool) if self.prepend == "always"
                     else starts == text_starts[text] if self.prepend == "first" else np.zeros(len(starts), dtype=bool))
        return starts, text, stops - starts + prepended, prepended.astype(np.int64)

    # -- the rebuild ------------------------------------------------------------------------------------

    def encode(self, texts: list[str]):
        """``(ids, ends, counts, rebuilt)``: ``rebuilt`` marks the texts done here; ``ids`` and ``ends``
        hold only their tokens, text after text, and ``counts`` is 0 for the others."""
        n = len(texts)
        normalized = list(map(self.normalizer.normalize_str, texts)) if self.normalizer is not None else texts
        rebuilt = self._one_to_one(texts, normalized)
        joined = "".join(normalized)
        rebuilt = self._free_of_avoided(joined, normalized, rebuilt)
        if normalized is not texts and normalized != texts:
            rebuilt = self._free_of_avoided("".join(texts), texts, rebuilt)
        everything = rebuilt.all()
        chosen = normalized if everything else list(compress(normalized, rebuilt))
        encodings = self.plain.encode_batch_fast(chosen, add_special_tokens=False) if chosen else []
        counts = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
        total = int(counts.sum())
        ids = np.fromiter(chain.from_iterable(map(_IDS, encodings)), dtype=np.int64, count=total)
        if total == 0:  # nothing chosen, or only empty texts
            return ids, ids.copy(), np.zeros(n, dtype=np.int64), rebuilt
        lengths = np.fromiter(map(len, chosen), dtype=np.int64, count=len(chosen))
        points = _code_points(joined if everything else "".join(chosen))
        steps = self.lengths[ids]
        unknown = self.unknown[ids]
        good = np.ones(len(chosen), dtype=bool)
        if unknown.any():
            steps, good = self._unknown_runs(counts, steps, unknown, points, lengths)
        if self.whitespace_split:
            ends, fits = self._by_words(ids, counts, steps, points, lengths)
        else:
            ends, fits = self._tiled(counts, steps, points, lengths)
        good &= fits
        if not good.all():
            keep = np.repeat(good, counts)
            ids, ends, counts = ids[keep], ends[keep], np.where(good, counts, 0)
            rebuilt[np.flatnonzero(rebuilt)[~good]] = False
        if everything and good.all():
            return ids, ends, counts, rebuilt
        all_counts = np.zeros(n, dtype=np.int64)
        all_counts[rebuilt] = counts[good]
        return ids, ends, all_counts, rebuilt

    def _unknown_runs(self, counts, steps, unknown, points, lengths):
        """Each ``<unk>``'s length: Unigram puts ``<unk>`` exactly on the characters that have no piece of
        their own and fuses each run of them into one, so a text's k-th ``<unk>`` covers its k-th run of
        such characters. Texts with as many runs as ``<unk>`` get those lengths (a piece that swallowed
        such a character would make the text longer than its pieces, which the callers check)."""
        n = len(lengths)
        alone = self.alone[points]
        text_ends = np.cumsum(lengths)
        firsts, lasts = (text_ends - lengths)[lengths > 0], text_ends[lengths > 0] - 1
        begins, stops = ~alone, ~alone
        begins[1:] &= alone[:-1]
        begins[firsts] = ~alone[firsts]
        stops[:-1] &= alone[1:]
        stops[lasts] = ~alone[lasts]
        run_starts = np.flatnonzero(begins)
        run_lengths = np.flatnonzero(stops) + 1 - run_starts
        run_text = np.searchsorted(text_ends, run_starts, side="right")
        unknown_text = np.repeat(np.arange(n), counts)[unknown]
        good = np.bincount(unknown_text, minlength=n) == np.bincount(run_text, minlength=n)
        steps = steps.copy()
        steps[np.flatnonzero(unknown)[good[unknown_text]]] = run_lengths[good[run_text]]
        return steps, good

    def _tiled(self, counts, steps, points, lengths):
        """Metaspace alone: a text's pieces (each ``<unk>`` as long as its run) tile it, with the prepended
        replacement character, so a token's end is the running sum of its text's piece lengths."""
        prepended = np.zeros(len(lengths), dtype=np.int64)
        if self.prepend != "never":
            nonempty = lengths > 0
            prepended[nonempty] = points[(np.cumsum(lengths) - lengths)[nonempty]] != 0x20
        running = np.cumsum(steps)
        before_text = np.cumsum(counts) - counts
        before_text = (running - steps)[before_text[counts > 0]]  # each non-empty text's first token
        in_text = running - np.repeat(before_text, counts[counts > 0])
        # a prepended character sits on the text's first character (a lone one ends at 1, not 0)
        ends = np.maximum(in_text - np.repeat(prepended, counts), 1)
        covered = np.zeros(len(lengths), dtype=np.int64)
        covered[counts > 0] = in_text[np.cumsum(counts)[counts > 0] - 1]
        return ends, covered == lengths + prepended

    def _by_words(self, ids, counts, steps, points, lengths):
        """After ``WhitespaceSplit`` the pieces leave the whitespace out: tokens are matched to the
        pre-tokenizer's words, and each word's pieces must add up to its length."""
        n = len(lengths)
        text_ends = np.cumsum(lengths)
        text_starts = text_ends - lengths
        word_start, word_text, word_length, prepended = self._words(points, text_starts, text_ends)
        # tokens -> words: a word's first token begins with the replacement character (or begins the text)
        first = self.word_first[ids]
        first[(np.cumsum(counts) - counts)[counts > 0]] = True
        token_text = np.repeat(np.arange(n), counts)
        good = np.bincount(token_text[first], minlength=n) == np.bincount(word_text, minlength=n)
        matched = good[token_text]  # tokens of texts split into other words are left out from here on
        if not good.all():
            first, steps = first[matched], steps[matched]
            kept_words = good[word_text]
            word_start, word_text, word_length, prepended = (word_start[kept_words], word_text[kept_words],
                                                             word_length[kept_words], prepended[kept_words])
        word = np.cumsum(first) - 1
        exact = np.bincount(word, weights=steps, minlength=len(word_start)).astype(np.int64) == word_length
        if not exact.all():
            good &= np.bincount(word_text[~exact], minlength=n) == 0
        # end within the word, then in the text: a prepended character sits on the word's first character
        running = np.cumsum(steps)
        in_word = running - (running - steps)[first][word]
        ends = np.zeros(len(ids), dtype=np.int64)
        ends[matched] = word_start[word] - text_starts[word_text[word]] + np.maximum(in_word - prepended[word], 1)
        return ends, good
