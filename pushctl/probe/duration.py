"""Human durations on the command line: `500ms`, `10s`, `1.5m`, `2h`, or a bare number of seconds.

parse_duration("10s")    # 10.0
parse_duration("500ms")  # 0.5
format_duration(90.0)    # '1m30s'
"""

from __future__ import annotations

import math
import re

from pushctl.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_BARE = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration(text: str, *, what: str = "duration", allow_zero: bool = False) -> float:
    """Seconds in `text`; parts may be chained (`1m30s`). Raises UsageError (exit 2) when invalid."""
    s = text.strip().lower().replace(" ", "")
    if _BARE.fullmatch(s):
        seconds = float(s)
    else:
        pos, seconds = 0, 0.0
        for match in _PART.finditer(s):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(s) or not s:
            raise UsageError(f"invalid {what} {text!r}", hint="use a number with a unit: 500ms, 10s, 1m, 1m30s, 2h")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise UsageError(f"invalid {what} {text!r}: must be {'>= 0' if allow_zero else '> 0'}")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse, for display: `0.5` -> '500ms', `90` -> '1m30s'."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s" if rest else f"{minutes}m"
