"""Value checks that config.yaml and article front matter share, so both refuse the same things.

Each check takes a value as YAML produced it and returns it clean, or raises ``TypeError`` (wrong
kind of value) or ``ValueError`` (right kind, bad value) whose message is the form it expected,
ready for "expected <message>, got <value>". Every check refuses ``None`` with its bare form, so
:func:`expected` can name it for a required key that was left out. Contains no file or line
handling: callers know where a value came from and say so.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import TypeVar
from urllib.parse import SplitResult, quote, urlsplit

from .markup import clean_text
from .slugs import slug

T = TypeVar("T")
Check = Callable[[object], T]

LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")  # RFC 5646, loosely
LANGUAGE_TAG_MAX = 64  # longer than any registered tag with extensions; it is repeated in every entry
URL_FORM = "an absolute http(s) URL such as https://news.example.org"
# What RFC 3986 never allows raw, plus the apostrophe it does allow: each can end an HTML
# attribute, and browsers read a backslash as '/', so "https://a.org\@b.org" would go to b.org.
URL_UNSAFE = frozenset("\"'<>\\{}|^`")
_INVISIBLE = ("Cc", "Cf", "Cs")  # controls, format (zero-width, bidi overrides), surrogates
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # RFC 1123 §2.1
_DNS_NAME_MAX = 253  # RFC 1035 §2.3.4, without the root's trailing dot
_PORT = re.compile(r"[0-9]{1,5}")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def expected(check: Check[object]) -> str:
    """The form a check wants, taken from its refusal of nothing: one wording per check."""
    try:
        check(None)
    except (TypeError, ValueError) as exc:
        return str(exc)
    raise AssertionError(f"{check!r} accepts None; every field check must refuse it")


def did_you_mean(key: object, allowed: Iterable[str]) -> str:
    """A hint for a misspelt key, "; did you mean 'limit'?", or "" when nothing is close."""
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def text(value: object) -> str:
    """Any string, without the characters XML refuses (feedgen would fail on them at render time)."""
    if not isinstance(value, str):
        raise TypeError("a string")
    return clean_text(value).strip()


def non_empty_text(value: object) -> str:
    """A string with something visible left once cleaned; a blank title is no title."""
    if not isinstance(value, str) or not clean_text(value).strip():
        raise TypeError("a non-empty string")
    return clean_text(value).strip()


def boolean(value: object) -> bool:
    """A YAML true or false; the string "yes" is refused rather than guessed at."""
    if not isinstance(value, bool):
        raise TypeError("true or false")
    return value


def whole(low: int, high: int, unit: str = "") -> Check[int]:
    """A check for a whole number within [low, high]; the message names the range (and unit)."""
    form = f"a whole number{f' of {unit}' if unit else ''} from {low} to {high}"

    def check(value: object) -> int:
        # bool is an int subclass, and 300.0 or 1e+29 are floats a typo away from garbage.
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(form)
        if not low <= value <= high:
            raise ValueError(form)
        return value

    return check


def one_of(*choices: str) -> Check[str]:
    """A check for one of a few fixed words, such as full or summary."""
    form = " or ".join(choices) if len(choices) <= 2 else f"one of {', '.join(choices)}"

    def check(value: object) -> str:
        if not isinstance(value, str):
            raise TypeError(form)
        if value not in choices:
            raise ValueError(form)
        return value

    return check


def networks(value: object) -> tuple[str, ...]:
    """A list (or one) of IP addresses or networks, normalized (``10.0.0.0/8``, ``::1/128``)."""
    form = "a list of IP addresses or networks such as 127.0.0.1 or 10.0.0.0/8"
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise TypeError(form)
    try:
        return tuple(dict.fromkeys(str(ipaddress.ip_network(i.strip(), strict=False)) for i in items))
    except ValueError:
        raise ValueError(form) from None


def slug_list(noun: str) -> Check[tuple[str, ...]]:
    """A check for a list of names (or one name) compared by slug, first spelling first."""
    form = f"a list of {noun}"

    def check(value: object) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
            raise TypeError(form)
        return tuple(dict.fromkeys(slug(i) for i in items))

    return check


def language_tag(value: object) -> str:
    """A tag for xml:lang and <language>; a bare no (Norwegian) reaches us as false."""
    form = "a language tag such as de or en-US"
    if isinstance(value, bool):
        raise TypeError(f"{form} (quote 'no')")
    if not isinstance(value, str):
        raise TypeError(form)
    if len(value) > LANGUAGE_TAG_MAX:
        raise ValueError(f"{form} (at most {LANGUAGE_TAG_MAX} characters)")
    if not LANGUAGE_TAG.fullmatch(value):  # fullmatch: "$" would let "de\n" through
        raise ValueError(form)
    return value


def http_url(value: object) -> str:
    """An absolute http(s) URL that is safe to put into any attribute, header or feed as is.

    Refused rather than repaired, because a URL an operator or author got wrong should be fixed
    where it is written. Returned normalised: scheme and host in lower case, a Unicode host as
    IDNA, other non-ASCII percent-encoded, an empty path as "/". A query and fragment are kept;
    a base URL that must not have them checks that itself.
    """
    if not isinstance(value, str):
        raise TypeError(URL_FORM)
    url = value.strip()
    reason = _unsafe_character(url)
    if reason:
        raise ValueError(f"{URL_FORM} ({reason})")
    parts = _split(url)
    return f"{parts.scheme}://{_authority(parts.netloc)}{_path_query_fragment(parts)}"


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed "[" in the host
        raise ValueError(f"{URL_FORM} (an IPv6 host is written [2001:db8::1])") from None
    has_authority = url[len(parts.scheme) :].startswith("://") and parts.netloc
    if parts.scheme not in ("http", "https") or not has_authority:
        raise ValueError(URL_FORM)
    return parts


def _path_query_fragment(parts: SplitResult) -> str:
    rest = parts.path or "/"
    rest += f"?{parts.query}" if parts.query else ""
    rest += f"#{parts.fragment}" if parts.fragment else ""
    if _BAD_PERCENT.search(rest):
        raise ValueError(f"{URL_FORM} (a '%' must start an escape such as %20)")
    return "".join(char if char.isascii() else quote(char) for char in rest)


def _unsafe_character(url: str) -> str:
    for char in url:
        if char.isspace() or char in URL_UNSAFE:
            return f"{char!r} cannot appear in a URL; write it as {quote(char)}"
        if unicodedata.category(char) in _INVISIBLE:
            return f"the invisible character U+{ord(char):04X} cannot appear in a URL"
    return ""


def _authority(netloc: str) -> str:
    if "@" in netloc:
        raise ValueError(f"{URL_FORM} (no user name or password before '@')")
    host, port = _split_port(netloc)
    return _host(host) + (f":{port}" if port else "")


def _split_port(netloc: str) -> tuple[str, int | None]:
    if netloc.startswith("["):  # an IPv6 literal holds colons of its own
        end = netloc.find("]") + 1
        host, port = netloc[:end], netloc[end:]
    else:
        host, colon, port = netloc.partition(":")
        port = colon + port
    if not port:
        return host, None
    port = port.removeprefix(":")
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"{URL_FORM} (a port is a number from 1 to 65535)")
    return host, int(port)


def _host(host: str) -> str:
    if host.startswith("["):
        return f"[{_ipv6(host[1:-1])}]"
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(f"{URL_FORM} ({host!r} is not an IPv4 address)") from None
    return _dns_name(host)


def _ipv6(address: str) -> str:
    try:
        if "%" in address:  # a zone such as %eth0 means nothing to anyone else
            raise ValueError(address)
        return ipaddress.IPv6Address(address).compressed
    except ValueError:
        raise ValueError(f"{URL_FORM} ({address!r} is not an IPv6 address)") from None


def _dns_name(host: str) -> str:
    name = host.lower()
    if not name.isascii():
        try:
            name = host.encode("idna").decode("ascii")  # IDNA 2003 (RFC 3490), as browsers accept
        except UnicodeError:
            raise ValueError(f"{URL_FORM} ({host!r} is not a valid host name)") from None
    labels = name.split(".")
    valid = all(_DNS_LABEL.fullmatch(label) for label in labels)
    # RFC 3696 §2: a top-level domain is never all digits, so "1.2.3" is neither name nor address.
    if not valid or len(name) > _DNS_NAME_MAX or labels[-1].isdigit():
        raise ValueError(f"{URL_FORM} ({host!r} is not a valid host name)")
    return name
