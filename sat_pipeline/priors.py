"""Length priors for constrained segmentation, as wtpsplit 2.2.2's ``utils/priors.py`` defines them.

:func:`create_prior` builds the same scalar function ``create_prior_function`` does (the formulas are
copied verbatim, so every value is bit-identical, warts and all) and wraps it in a :class:`Prior` that
also tabulates it over all lengths at once for the vectorised Viterbi/greedy in
:mod:`sat_triton.pipeline.constraints`. The table is filled by calling the scalar formula once per length
(memoised), not by re-deriving it in numpy: numpy's ``x ** 2`` is ``x * x`` while Python's float
``** 2`` calls libm ``pow``, so a numpy rewrite could differ in the last bit and flip a tie.

Bad ``prior_kwargs`` become :class:`~sat_triton.pipeline.errors.RequestError` naming the option. wtpsplit
itself only raises ``ValueError("Unknown prior: ...")``; for everything else it would crash with a
``TypeError``/``ZeroDivisionError``/``OverflowError`` from inside the formula (at creation or on the first
call). Here exactly those cases are refused, eagerly (on creation, by evaluating the prior at length
1); kwargs wtpsplit evaluates without an exception are accepted and behave as in wtpsplit, including
degenerate ones (e.g. lognormal with ``spread=0`` or a negative ``target_length`` gives a prior that is
0/NaN everywhere, so Viterbi falls back to fixed-size chunks, exactly as wtpsplit does).
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np

from .errors import RequestError

PRIOR_TYPES = ("uniform", "gaussian", "clipped_polynomial", "lognormal")

# wtpsplit/utils/priors.py DEFAULT_SENTENCE_STATS: the defaults for an unknown (or no) language.
DEFAULT_SENTENCE_STATS = {"target_length": 70, "spread": 25}

# wtpsplit 2.2.2 data/sentence_stats.json ("stats", Universal Dependencies v2.14):
# language code -> (target_length, spread), in characters. Copied as data so the server needs no wtpsplit.
LANGUAGE_STATS: dict[str, tuple[int, int]] = {
    "ab": (48, 22), "af": (132, 70), "ajp": (27, 14), "akk": (51, 36), "aln": (67, 35), "am": (18, 10),
    "apu": (30, 12), "aqz": (16, 10), "ar": (67, 55), "arr": (16, 10), "az": (29, 14), "azz": (30, 28),
    "bar": (51, 40), "be": (58, 48), "bej": (58, 46), "bg": (66, 46), "bho": (72, 42), "bm": (38, 22),
    "bor": (29, 22), "br": (42, 33), "bxr": (55, 37), "ca": (151, 85), "ceb": (27, 13), "ckt": (34, 19),
    "cop": (70, 42), "cpg": (40, 28), "cs": (86, 62), "cu": (39, 29), "cy": (82, 62), "da": (82, 61),
    "de": (111, 61), "egy": (29, 16), "el": (94, 74), "eme": (19, 11), "en": (63, 53), "es": (135, 87),
    "ess": (29, 11), "et": (74, 55), "eu": (79, 45), "fa": (72, 48), "fi": (63, 47), "fo": (63, 48),
    "fr": (90, 65), "frm": (87, 66), "fro": (37, 25), "ga": (111, 54), "gd": (66, 72), "gl": (160, 57),
    "got": (49, 37), "grc": (66, 48), "gsw": (73, 25), "gu": (36, 26), "gub": (33, 16), "gun": (20, 11),
    "gv": (26, 10), "ha": (29, 24), "hbo": (118, 45), "he": (86, 48), "hi": (93, 45), "hit": (67, 37),
    "hr": (118, 68), "hsb": (86, 48), "ht": (89, 47), "hu": (138, 79), "hy": (91, 77), "hyw": (88, 69),
    "id": (117, 64), "is": (87, 64), "it": (108, 62), "ja": (18, 15), "jv": (69, 38), "ka": (85, 60),
    "kk": (52, 28), "kmr": (57, 21), "ko": (44, 22), "koi": (34, 20), "kpv": (51, 36), "krl": (73, 40),
    "ky": (58, 25), "la": (73, 58), "lij": (55, 49), "lt": (102, 74), "lv": (84, 62), "lzh": (5, 10),
    "mdf": (49, 22), "mk": (37, 14), "ml": (69, 47), "mr": (32, 17), "mt": (98, 75), "myu": (25, 14),
    "myv": (46, 31), "nds": (80, 59), "nhi": (47, 31), "nl": (79, 62), "no": (77, 54), "olo": (70, 41),
    "orv": (43, 38), "ota": (82, 69), "pad": (26, 13), "pcm": (46, 37), "pl": (55, 42), "pt": (74, 57),
    "qaf": (68, 39), "qfn": (47, 18), "qpm": (61, 40), "qtd": (79, 45), "quc": (26, 10), "ro": (102, 60),
    "ru": (79, 60), "sa": (37, 27), "sah": (25, 10), "say": (32, 25), "si": (44, 10), "sjo": (62, 59),
    "sk": (44, 31), "sl": (79, 64), "sme": (41, 29), "sms": (51, 30), "sr": (120, 62), "sv": (83, 53),
    "swl": (66, 46), "ta": (52, 58), "te": (25, 10), "th": (95, 40), "tl": (34, 21), "tpn": (38, 23),
    "tr": (49, 37), "tt": (93, 44), "ug": (63, 35), "uk": (75, 59), "ur": (108, 59), "vep": (69, 36),
    "vi": (80, 40), "wo": (78, 48), "xav": (42, 25), "xcl": (73, 42), "xnr": (35, 14), "xum": (26, 26),
    "yo": (96, 45), "yrl": (38, 30), "yue": (13, 14), "zh": (29, 19),
}


def get_language_defaults(lang_code: Any = None) -> dict:
    """wtpsplit's ``get_language_defaults``: ``{"target_length", "spread"}`` for ``lang_code``.

    Unknown codes (wtpsplit warns) and ``None`` give :data:`DEFAULT_SENTENCE_STATS`. An unhashable code
    raises ``TypeError``, as the dict lookup in wtpsplit does.
    """
    if lang_code is None or lang_code not in LANGUAGE_STATS:
        return DEFAULT_SENTENCE_STATS.copy()
    target_length, spread = LANGUAGE_STATS[lang_code]
    return {"target_length": target_length, "spread": spread}


def _prior_function(name: str, kwargs: dict) -> Callable[[int], float]:
    """wtpsplit 2.2.2 ``create_prior_function``, verbatim in arithmetic (only the warning is left out)."""
    if name == "uniform":
        max_length = kwargs.get("max_length")

        def prior(length):
            if max_length is not None and length > max_length:
                return 0.0
            return 1.0

        return prior

    elif name == "clipped_polynomial":
        lang_defaults = get_language_defaults(kwargs.get("lang_code"))
        target_length = kwargs.get("target_length", lang_defaults["target_length"])
        spread = kwargs.get("spread", lang_defaults["spread"])
        falloff = 1.0 / (spread**2)
        max_length = kwargs.get("max_length")

        def prior(length):
            if max_length is not None and length > max_length:
                return 0.0
            val = 1.0 - falloff * ((length - target_length) ** 2)
            return max(val, 0.0)

        return prior

    elif name == "gaussian":
        lang_defaults = get_language_defaults(kwargs.get("lang_code"))
        target_length = kwargs.get("target_length", lang_defaults["target_length"])
        spread = kwargs.get("spread", lang_defaults["spread"])
        max_length = kwargs.get("max_length")

        def prior(length):
            if max_length is not None and length > max_length:
                return 0.0
            return np.exp(-0.5 * ((length - target_length) / spread) ** 2)

        return prior

    elif name == "lognormal":
        lang_defaults = get_language_defaults(kwargs.get("lang_code"))
        target_length = kwargs.get("target_length", lang_defaults["target_length"])
        spread = kwargs.get("spread", lang_defaults["spread"])
        max_length = kwargs.get("max_length")

        sigma = spread / target_length
        mu = np.log(target_length) + sigma**2

        def prior(length):
            if length <= 0:
                return 0.0
            if max_length is not None and length > max_length:
                return 0.0
            log_len = np.log(length)
            return np.exp(-0.5 * ((log_len - mu) / sigma) ** 2) / length

        return prior

    raise ValueError(f"Unknown prior: {name}")


def _check_number(key: str, kwargs: dict, allow_none: bool) -> None:
    if key not in kwargs:
        return
    value = kwargs[key]
    if value is None and allow_none:
        return
    # bool is an int to Python and to wtpsplit's arithmetic, so it is accepted as 0/1 like there.
    if not isinstance(value, numbers.Real):
        raise RequestError(f"option 'prior_kwargs': '{key}' must be a number, got {value!r}")


def _bad_kwargs(prior_type: str, kwargs: dict, exc: Exception) -> RequestError:
    hint = ""
    if isinstance(exc, ZeroDivisionError):
        if prior_type == "lognormal" and kwargs.get("target_length", None) == 0:
            hint = "'target_length' must not be 0; "
        else:
            hint = "'spread' must not be 0; "
    return RequestError(
        f"option 'prior_kwargs': {hint}the {prior_type} prior cannot be evaluated with {kwargs!r} "
        f"({type(exc).__name__}: {exc})"
    )


class Prior:
    """A length prior: ``prior(length)`` is wtpsplit's value; :meth:`values` / :meth:`log_values` tabulate it."""

    def __init__(self, prior_type: str, kwargs: dict, fn: Callable[[int], float]):
        self.prior_type = prior_type
        self.kwargs = kwargs
        self._fn = fn
        # (values, log values), index = length (length 0 is never asked for). Swapped as one tuple so
        # that concurrent callers each see a consistent table at least as long as they asked for.
        self._tables = (np.zeros(1, dtype=np.float64), np.full(1, -np.inf, dtype=np.float64))

    def __call__(self, length: int) -> float:
        return self._fn(length)

    def _tables_upto(self, upto: int) -> tuple[np.ndarray, np.ndarray]:
        tables = self._tables
        have = len(tables[0]) - 1
        if upto <= have:
            return tables
        upto = max(upto, 2 * have)  # amortise: tables only ever grow
        values = np.empty(upto - have, dtype=np.float64)
        logs = np.empty(upto - have, dtype=np.float64)
        fn = self._fn
        try:
            with np.errstate(all="ignore"):
                for k, length in enumerate(range(have + 1, upto + 1)):
                    p = fn(length)
                    values[k] = p
                    # wtpsplit's Viterbi skips lengths with prior <= 0 and a NaN prior never wins a
                    # comparison: both are "this length is impossible", i.e. -inf here.
                    logs[k] = np.log(p) if p > 0 else -np.inf
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise _bad_kwargs(self.prior_type, self.kwargs, exc) from None
        tables = (np.concatenate((tables[0], values)), np.concatenate((tables[1], logs)))
        if len(tables[0]) > len(self._tables[0]):
            self._tables = tables
        return tables

    def values(self, upto: int) -> np.ndarray:
        """float64 ``[upto + 1]``: ``out[length] == prior(length)`` for ``1 <= length <= upto`` (``out[0]`` is 0)."""
        return self._tables_upto(upto)[0][: upto + 1]

    def log_values(self, upto: int) -> np.ndarray:
        """``np.log(prior(length))`` where the prior is positive, ``-inf`` where it is 0, negative or NaN."""
        return self._tables_upto(upto)[1][: upto + 1]


def create_prior(prior_type: str, prior_kwargs: dict | None) -> Prior:
    """wtpsplit's ``create_prior_function(prior_type, prior_kwargs)`` as a :class:`Prior`.

    ``prior_kwargs`` is used as given (apply :func:`sat_triton.pipeline.constraints.local_prior_kwargs` first
    to add ``max_length``/``lang_code`` the way ``SaT.split`` does). Raises :class:`RequestError` for an
    unknown ``prior_type`` and for kwargs with which wtpsplit's formula raises.
    """
    kwargs = {} if prior_kwargs is None else prior_kwargs
    if not isinstance(kwargs, dict):
        raise RequestError(f"option 'prior_kwargs' must be a JSON object, got {kwargs!r}")
    if prior_type not in PRIOR_TYPES:
        raise RequestError(
            f"option 'prior_type': Unknown prior_type: {prior_type!r}. Must be one of {list(PRIOR_TYPES)}"
        )
    _check_number("max_length", kwargs, allow_none=True)
    if prior_type != "uniform":
        _check_number("target_length", kwargs, allow_none=False)
        _check_number("spread", kwargs, allow_none=False)
        try:
            hash(kwargs.get("lang_code"))
        except TypeError:
            raise RequestError(
                f"option 'prior_kwargs': 'lang_code' must be a language code string, got {kwargs['lang_code']!r}"
            ) from None
    try:
        with np.errstate(all="ignore"):
            fn = _prior_function(prior_type, kwargs)
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise _bad_kwargs(prior_type, kwargs, exc) from None
    prior = Prior(prior_type, kwargs, fn)
    prior.values(1)  # surface errors wtpsplit would only hit on the first call
    return prior


__all__ = ["PRIOR_TYPES", "DEFAULT_SENTENCE_STATS", "LANGUAGE_STATS", "get_language_defaults", "Prior", "create_prior"]
