"""Backend URLs: ``scheme://[address][?option=value&...]``, parsed in one place.

Options travel in the URL, as in pyserial's ``serial_for_url``; an unknown option or a bad
value is a :class:`UrlError` that shows the accepted form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from control.errors import UrlError


@dataclass(frozen=True)
class Option:
    """One accepted URL option: how to convert its text, its default, a one-line help, and its
    SI unit ("" for a count, a name or a factor), which ``info().option_units`` reports."""

    convert: Callable[[str], object]
    default: object
    help: str
    unit: str = ""


def split(url: str) -> tuple[str, str, dict[str, str]]:
    """Split ``url`` into (scheme, address, raw options).

    Raises:
        UrlError: not a string, no scheme, or an option given twice.
    """
    if not isinstance(url, str) or "://" not in url:
        raise UrlError(f"backend URL {url!r} has no scheme; write it as scheme://address?option=value, e.g. 'twin://?seed=7'")
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    raw: dict[str, str] = {}
    for key, value in pairs:
        if key in raw:
            raise UrlError(f"option {key!r} is given twice in {url!r}; give it once")
        raw[key] = value
    return parts.scheme, parts.netloc + parts.path, raw


def options(url: str, raw: Mapping[str, str], accepted: Mapping[str, Option]) -> dict[str, object]:
    """Convert raw option text by ``accepted``, filling defaults.

    Raises:
        UrlError: an unknown option, or a value its converter rejects; the message lists the
            accepted options with their defaults.
    """
    # An option whose default is derived (None) says in its help what it defaults to.
    form = ", ".join(f"{k}=<{o.help}>" + ("" if o.default is None else f" (default {o.default!r})")
                     for k, o in accepted.items())
    unknown = sorted(set(raw) - set(accepted))
    if unknown:
        raise UrlError(f"unknown option(s) {', '.join(map(repr, unknown))} in {url!r}; accepted: {form}")
    out = {k: o.default for k, o in accepted.items()}
    for key, text in raw.items():
        try:
            out[key] = accepted[key].convert(text)
        except (TypeError, ValueError) as exc:
            raise UrlError(
                f"option {key}={text!r} in {url!r} is invalid ({exc}); expected {key}=<{accepted[key].help}>"
            ) from None
    return out
