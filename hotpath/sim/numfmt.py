"""Decimal strings from integers: the simulator never formats a float.

Every price, size and amount is held as an integer count of ``10**-scale`` units and
formatted here, exactly as Bybit prints it: fixed decimals for book and ticker prices
("30247.20"), trailing zeros stripped for kline values ("16677", "16649.5").
"""

from __future__ import annotations

from collections.abc import Callable

_POW10: list[int] = [10**i for i in range(40)]


def fixed(units: int, scale: int) -> str:
    """``units * 10**-scale`` with exactly ``scale`` decimals: fixed(3024720, 2) == "30247.20"."""
    if scale == 0:
        return str(units)
    digits = str(abs(units)).rjust(scale + 1, "0")
    sign = "-" if units < 0 else ""
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


def stripped(units: int, scale: int) -> str:
    """Like :func:`fixed` but without trailing zeros: stripped(1667700, 2) == "16677"."""
    text = fixed(units, scale)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def rescale(units: int, scale: int, new_scale: int) -> int:
    """Convert between scales, rounding half away from zero when precision is lost."""
    if new_scale >= scale:
        return units * _POW10[new_scale - scale]
    div = _POW10[scale - new_scale]
    q, r = divmod(abs(units), div)
    if 2 * r >= div:
        q += 1
    return q if units >= 0 else -q


def ratio(numerator: int, denominator: int, scale: int) -> int:
    """``numerator / denominator`` as units of ``10**-scale``, rounded half away from zero."""
    if denominator == 0:
        return 0
    sign = -1 if (numerator < 0) != (denominator < 0) else 1
    q, r = divmod(abs(numerator) * _POW10[scale], abs(denominator))
    if 2 * r >= abs(denominator):
        q += 1
    return sign * q


def parse(text: str) -> tuple[int, int]:
    """Inverse of :func:`fixed`: "30247.20" -> (3024720, 2). Used by tests and replay."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("-")
    whole, _, frac = body.partition(".")
    return sign * int((whole or "0") + frac), len(frac)


def formatter(scale: int, multiplier: int = 1, zero: str | None = None) -> Callable[[int], str]:
    """``fixed(value * multiplier, scale)`` for a value >= 0 (a price, a size), in one
    call; ``zero`` (e.g. "0" for a deleted level) replaces the text of 0.

    No memo: with hundreds of symbols a cache lookup is mostly a cold-memory miss that
    costs more than these few string operations, and book sizes rarely repeat, so a
    cache of them only grows.
    """
    width = scale + 1

    def text(value: int) -> str:
        if not value and zero is not None:
            return zero
        if not scale:
            return str(value * multiplier)
        digits = str(value * multiplier).rjust(width, "0")
        return f"{digits[:-scale]}.{digits[-scale:]}"

    return text
