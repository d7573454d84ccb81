"""Backend URLs: ``scheme://[address][?option=value&...]``, parsed in one place.

Options travel in the URL, as in pyserial's ``serial_for_url``; an unknown option or a bad
value is a :class:`UrlError` that shows the accepted form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

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


def with_options(url: str, **changes: object) -> str:
    """``url`` with some options set (added, or replacing the same name), the others kept in order.

    >>> with_options("twin://?seed=1&grid=64", seed=7, day=2)
    'twin://?seed=7&grid=64&day=2'

    Raises:
        UrlError: ``url`` has no scheme or gives an option twice.
    """
    scheme, address, raw = split(url)  # the same errors as every other URL
    raw.update({key: str(value) for key, value in changes.items()})
    query = urlencode(raw, safe="/:,+")
    return f"{scheme}://{address}" + (f"?{query}" if query else "")


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


def listen_address(url: str) -> tuple[str, int]:
    """The (host, port) a server listens on, from ``socket://HOST:PORT``.

    HOST defaults to 127.0.0.1 (``socket://:7001``); port 0 asks the system for a free one.

    Raises:
        UrlError: another scheme, no port, a port that is not a number in 0..65535, or options;
            the message names the value and the accepted form.
    """
    form = "socket://HOST:PORT (port 0 picks a free one), e.g. socket://127.0.0.1:7001"
    try:
        scheme, address, raw = split(url)
    except UrlError:
        raise UrlError(f"listen URL {url!r} must be {form}") from None
    host, _, port = address.rpartition(":")
    if scheme != "socket" or raw or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise UrlError(f"listen URL {url!r} must be {form}")
    return host or "127.0.0.1", int(port)


def number_in(text: str, low: float, high: float) -> float | None:
    """``text`` as a number in (low, high], or None (not a number, or outside): for option parsers
    that word their own error."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if low < value <= high else None
