"""Per-request options: Triton request parameters named and defaulted as in ``SaT.split``.

Triton 2.51 forwards an ensemble request's parameters to every composing model, so each step
parses the same parameters with :func:`parse_options` and uses what it needs. Values may arrive
as JSON numbers/booleans or as strings (HTTP clients often send strings); both are accepted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from .errors import RequestError

# wtpsplit caps a chunk at 510 tokens so that <s> and </s> fit in XLM-R's 512 positions.
MAX_BLOCK_TOKENS = 510

WEIGHTINGS = ("uniform", "hat")
PRIOR_TYPES = ("uniform", "gaussian", "clipped_polynomial", "lognormal")
ALGORITHMS = ("viterbi", "greedy")

# Options of SaT.split that only steer wtpsplit's in-process batching. The server batches by
# itself, so they are accepted (code ported from wtpsplit keeps working) and have no effect.
CLIENT_SIDE_ONLY = ("batch_size", "outer_batch_size", "pad_last_batch", "verbose")

# Keys Triton or its clients may add to a request's parameters on their own.
TRITON_RESERVED = ("sequence_id", "sequence_start", "sequence_end", "priority", "timeout",
                   "binary_data_output", "headers")


@dataclass(frozen=True)
class Options:
    threshold: float | None = None  # None: the model's default (see default_threshold)
    stride: int = 64
    block_size: int = 512
    weighting: str = "uniform"
    remove_whitespace_before_inference: bool = False
    paragraph_threshold: float = 0.5
    strip_whitespace: bool = False
    do_paragraph_segmentation: bool = False
    split_on_input_newlines: bool = True
    min_length: int = 1
    max_length: int | None = None
    prior_type: str = "uniform"
    prior_kwargs: dict | None = field(default=None, hash=False, compare=False)
    algorithm: str = "viterbi"

    @property
    def length_constrained(self) -> bool:
        return self.max_length is not None or self.min_length > 1


OPTION_NAMES = tuple(f.name for f in fields(Options))


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise RequestError(f"option '{name}' must be a boolean (true or false), got {value!r}")


def _as_int(name: str, value: Any, minimum: int) -> int:
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            number = None
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int):
        raise RequestError(f"option '{name}' must be an integer, got {value!r}")
    if number < minimum:
        raise RequestError(f"option '{name}' must be >= {minimum}, got {number}")
    return number


def _as_probability(name: str, value: Any) -> float:
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        raise RequestError(f"option '{name}' must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= number <= 1.0:
        raise RequestError(f"option '{name}' must be between 0 and 1, got {number}")
    return float(number)


def _as_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise RequestError(f"option '{name}' must be one of {', '.join(choices)}; got {value!r}")
    return value


def _as_json_object(name: str, value: Any) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RequestError(f"option '{name}' must be a JSON object, got {value!r}: {exc.msg}") from None
    if not isinstance(value, dict):
        raise RequestError(f"option '{name}' must be a JSON object, got {value!r}")
    return value


def parse_options(parameters: str | Mapping[str, Any] | None) -> Options:
    """Options from a request's parameters (the JSON string ``request.parameters()`` returns, or a dict).

    Raises :class:`RequestError` naming the option for an unknown name or a bad value.
    """
    if parameters is None or parameters == "":
        params: Mapping[str, Any] = {}
    elif isinstance(parameters, str):
        params = json.loads(parameters)
    else:
        params = parameters
    values: dict[str, Any] = {}
    for name, value in params.items():
        if name in TRITON_RESERVED or name in CLIENT_SIDE_ONLY or name.startswith("triton_"):
            continue
        if name == "treat_newline_as_space":  # deprecated in wtpsplit, still honoured there
            values["split_on_input_newlines"] = not _as_bool(name, value)
        elif name == "threshold":
            values[name] = None if value is None else _as_probability(name, value)
        elif name == "paragraph_threshold":
            values[name] = _as_probability(name, value)
        elif name in ("stride", "block_size", "min_length"):
            values[name] = _as_int(name, value, minimum=1)
        elif name == "max_length":
            values[name] = None if value in (None, "", "none", "None") else _as_int(name, value, minimum=1)
        elif name in ("remove_whitespace_before_inference", "strip_whitespace",
                      "do_paragraph_segmentation", "split_on_input_newlines"):
            values[name] = _as_bool(name, value)
        elif name == "weighting":
            values[name] = _as_choice(name, value, WEIGHTINGS)
        elif name == "prior_type":
            values[name] = _as_choice(name, value, PRIOR_TYPES)
        elif name == "algorithm":
            values[name] = _as_choice(name, value, ALGORITHMS)
        elif name == "prior_kwargs":
            values[name] = None if value in (None, "") else _as_json_object(name, value)
        else:
            known = ", ".join(OPTION_NAMES + CLIENT_SIDE_ONLY)
            raise RequestError(f"unknown option '{name}'; known options: {known}")
    options = Options(**values)
    if options.max_length is not None and options.min_length > options.max_length:
        raise RequestError(
            f"option 'min_length' ({options.min_length}) cannot be greater than 'max_length' ({options.max_length})"
        )
    return options


def default_threshold(model_name_or_path: str, use_lora: bool = False) -> float:
    """The threshold ``SaT.split`` uses when none is given, by wtpsplit 2.2.2's rule on the model name."""
    if use_lora:
        return 0.5
    if "sm" in model_name_or_path:
        return 0.25
    if "no-limited-lookahead" in model_name_or_path:
        return 0.01
    return 0.025
