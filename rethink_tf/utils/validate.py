"""Up-front checks of configurable arguments: each bad value is a `ConfigError` naming its gin binding.

Every gin configurable checks the type and range of its arguments first thing, before any TensorFlow
work, so a value wrong in kind (`build_backbone.depth = "fifty"`, `build_backbone.base_width = "16"`) stops the
run at start-up with a message such as

    build_backbone.depth = 'fifty': expected one of (50, 101, 152)

instead of being ignored or failing deep inside Keras. Integers are strict: a bool, a float or a string
is not an int (gin parses `16` as an int and `"16"` as a string, so the fix is always in the binding).

Errors a user fixes by changing input (a gin binding, a data file, a flag) derive from `InputError`; the
command-line apps print them as one line without a traceback (`rethink_tf.utils.cli`).
"""

from __future__ import annotations

import math
import numbers
import os

# Leading bytes of the encoded formats tf.io.decode_image understands (JPEG, PNG, GIF, BMP): what the
# SavedModel's byte signatures and the Python API accept.
ENCODED_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")


class InputError(ValueError):
    """Bad user input (a gin binding, a data file, a flag); the message names it."""


class ConfigError(InputError):
    """A gin file or binding is invalid; the message names it."""


def fail(binding: str, value, expected: str):
    raise ConfigError(f"{binding} = {value!r}: expected {expected}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _range_text(minimum, maximum, exclusive_minimum=False, exclusive_maximum=False):
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if exclusive_minimum else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"{'<' if exclusive_maximum else '<='} {maximum}")
    return " and ".join(parts)


def _in_range(value, minimum, maximum, exclusive_minimum, exclusive_maximum):
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        return False
    if maximum is not None and (value >= maximum if exclusive_maximum else value > maximum):
        return False
    return True


def integer(binding, value, *, minimum=None, maximum=None, allow_none=False):
    """An int (not bool/float/str) in [minimum, maximum]; returns it as a python int (or None)."""
    if value is None and allow_none:
        return None
    if not _is_int(value) or not _in_range(value, minimum, maximum, False, False):
        bounds = _range_text(minimum, maximum)
        fail(binding, value, f"an integer{' ' + bounds if bounds else ''}{' or None' if allow_none else ''}")
    return int(value)


def number(binding, value, *, minimum=None, maximum=None, exclusive_minimum=False, exclusive_maximum=False,
           allow_none=False):
    """A finite real number (int or float, not bool/str) in the range; returns it as a float (or None)."""
    if value is None and allow_none:
        return None
    if not _is_real(value) or not _in_range(value, minimum, maximum, exclusive_minimum, exclusive_maximum):
        bounds = _range_text(minimum, maximum, exclusive_minimum, exclusive_maximum)
        fail(binding, value, f"a finite number{' ' + bounds if bounds else ''}"
                             f"{' or None' if allow_none else ''}")
    return float(value)


def boolean(binding, value):
    if not isinstance(value, bool):
        fail(binding, value, "True or False")
    return value


def one_of(binding, value, choices):
    if isinstance(value, bool) or value not in choices:
        fail(binding, value, f"one of {tuple(choices)}")
    return value


def string(binding, value, *, allow_none=False, nonempty=True):
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or (nonempty and not value):
        fail(binding, value, f"a{' non-empty' if nonempty else ''} string{' or None' if allow_none else ''}")
    return value


def path(binding, value, *, allow_none=False):
    """A str or os.PathLike (a gin string, or a pathlib.Path from Python)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        fail(binding, value, f"a path string{' or None' if allow_none else ''}")
    return value


def integers(binding, value, *, length=None, minimum=None, increasing=False, allow_none=False):
    """A list/tuple of ints (each >= minimum), of `length` if given, strictly increasing if asked."""
    if value is None and allow_none:
        return None
    what = (f"a {'strictly increasing ' if increasing else ''}sequence of "
            f"{length if length is not None else 'any number of'} integers"
            f"{' ' + _range_text(minimum, None) if minimum is not None else ''}{' or None' if allow_none else ''}")
    if (not isinstance(value, (list, tuple)) or (length is not None and len(value) != length)
            or not all(_is_int(v) and (minimum is None or v >= minimum) for v in value)
            or (increasing and any(b <= a for a, b in zip(value, value[1:])))):
        fail(binding, value, what)
    return tuple(int(v) for v in value)


def reals(binding, value, *, length=None, minimum=None, exclusive_minimum=False, allow_none=False,
             nonempty=True):
    """A list/tuple of finite numbers (each in range), of `length` if given."""
    if value is None and allow_none:
        return None
    bounds = _range_text(minimum, None, exclusive_minimum)
    what = (f"a{' non-empty' if nonempty and length is None else ''} sequence of "
            f"{length if length is not None else ''}{' ' if length is not None else ''}finite numbers"
            f"{' ' + bounds if bounds else ''}{' or None' if allow_none else ''}")
    if (not isinstance(value, (list, tuple)) or (length is not None and len(value) != length)
            or (nonempty and not value)
            or not all(_is_real(v) and _in_range(v, minimum, None, exclusive_minimum, False) for v in value)):
        fail(binding, value, what)
    return tuple(float(v) for v in value)
