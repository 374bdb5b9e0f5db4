"""The document: one URL of the site, with what a sitemap can say about it.

Validation lives here because both the rebuild source and the change events carry documents, and a bad one
must be refused with a reason a person can act on (it goes to the dead-letter table, never silently away).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson

from sitemap_keeper.snapshot.hosts import ascii_host

CHANGEFREQS = frozenset({"always", "hourly", "daily", "weekly", "monthly", "yearly", "never"})
SECTION_RE = re.compile(r"[a-z0-9_-]{1,64}")
HREFLANG_RE = re.compile(r"(?:[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*|x-default)")
# Characters XML 1.0 cannot carry, plus DEL and the C1 controls: never let them reach a sitemap.
BAD_CHARS_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# A URL may not carry white space or controls at all (an IRI's other characters get percent-encoded).
URL_BAD_RE = re.compile("[\x00-\x20\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"
URL_UNSAFE_RE = re.compile(r"[^A-Za-z0-9:/?#\[\]@!$&'()*+,;=%~\-._]|%(?![0-9A-Fa-f]{2})")
BARE_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# RFC 3986 (and libxml2's xs:anyURI) allow '[' and ']' only around an IP literal host, and one '#'.
STRAY_RE = re.compile(r"[\[\]]|#.*#", re.S)
AUTHORITY_RE = re.compile(r"[^:/?#]*://[^/?#]*")
URL_RE = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[^/?#:@\[\]]+)(?::\d{1,5})?(?:[/?#].*)?", re.S)
# The common case in one match: a plain host and only RFC 3986 characters, so none of the checks below can fail
# but the length and the host. `%` still needs its two hex digits (checked apart: cheaper than an alternation).
CLEAN_URL_RE = re.compile(
    r"https?://([A-Za-z0-9.-]+)(?::\d{1,5})?(?:[/?][A-Za-z0-9:/?@!$&'()*+,;=%~\-._]*)?"
    r"(?:#[A-Za-z0-9:/?@!$&'()*+,;=%~\-._]*)?"
)  # no '[' or ']', one '#' (see STRAY_RE)
# A full datetime whose every field is in range whatever the month (days up to 28): no calendar check needed.
CANONICAL_LASTMOD_RE = re.compile(
    r"(?!0000)\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
    r"(?:Z|[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00))",
    re.ASCII,  # the schema's years and zones; ASCII digits only
)
W3C_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?", re.ASCII
)

# The native format's fields, in one place each: a field is added here (and checked below), and nowhere else is
# there a list of them to keep in step (the C fast path leaves an object with any key it does not read to this
# code). Any other field is refused, naming it, unless the rules allow extra fields (`--extra-fields ignore`).
# `news` is read by snapshot/news.py, `video` by snapshot/video.py.
DOCUMENT_FIELDS = frozenset(
    {
        "op",
        "section",
        "key",
        "loc",
        "lastmod",
        "changefreq",
        "priority",
        "images",
        "alternates",
        "version",
        "news",
        "video",
    }
)  # "op": events, and rebuild lines
IMAGE_FIELDS = frozenset({"loc", "title", "caption"})
ALTERNATE_FIELDS = frozenset({"hreflang", "href"})

MAX_LOC = 2048
MIN_LOC = 12  # the sitemaps.org schema's minLength for <loc>
MAX_KEY = 512
MAX_TEXT = 2048
MAX_IMAGES = 1000  # Google's limit per <url>
MAX_ALTERNATES = 200
MAX_DOCUMENT_BYTES = 1024 * 1024  # an event, or a rebuild source's line


class InvalidDocument(ValueError):
    """A document or event that cannot be accepted; the message says which field and why."""


@dataclass(slots=True)
class Image:
    loc: str
    title: str | None = None
    caption: str | None = None


@dataclass(slots=True)
class Alternate:
    hreflang: str
    href: str


@dataclass(slots=True)
class Document:
    section: str
    key: str
    loc: str
    lastmod: str | None = None  # normalised W3C datetime, valid for the sitemaps.org schema
    changefreq: str | None = None
    priority: float | None = None
    images: tuple[Image, ...] = ()
    alternates: tuple[Alternate, ...] = ()
    version: int | None = None

    @property
    def lastmod_ts(self) -> float | None:
        return lastmod_timestamp(self.lastmod)


@dataclass(frozen=True, slots=True)
class Rules:
    """What the site accepts: the hosts its URLs may be on (empty means any host), whether fields it does not
    know are dropped (a source that carries more) instead of refusing the document, and the largest `<url>`
    fragment in bytes (None: any; `Limits.fitted` sets what one shard can hold)."""

    allowed_hosts: frozenset[str] = frozenset()
    ignore_extra_fields: bool = False
    max_size: int | None = None


ANY_HOST = Rules()


_SECTIONS_SEEN: set[str] = set()  # a site has a handful of sections: skip the regex for the ones seen


def check_fields(obj: dict[str, Any], known: frozenset[str], rules: Rules, where: str = "") -> None:
    """Refuse a field nobody reads (a misspelt `lastMod`, a block this version does not publish), naming it."""
    if rules.ignore_extra_fields or obj.keys() <= known:
        return
    unknown = sorted(obj.keys() - known, key=str)
    more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    raise InvalidDocument(f"{where}unknown field {_show(unknown[0])}{more}")


def check_section(value: Any) -> str:
    if type(value) is str and value in _SECTIONS_SEEN:
        return value
    if not isinstance(value, str) or not SECTION_RE.fullmatch(value):
        raise InvalidDocument(f"section must match [a-z0-9_-]{{1,64}}, got {_show(value)}")
    if len(_SECTIONS_SEEN) < 1024:
        _SECTIONS_SEEN.add(value)
    return value


def check_key(value: Any) -> str:
    if type(value) is str and 0 < len(value) <= MAX_KEY and value.isascii() and value.isprintable():
        return value  # printable ASCII: no control characters possible
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise InvalidDocument(f"key must be a non-empty string, got {_show(value)}")
    if len(value) > MAX_KEY:
        raise InvalidDocument(f"key is {len(value)} characters, at most {MAX_KEY} allowed")
    if BAD_CHARS_RE.search(value):
        raise InvalidDocument("key contains control characters")
    return value


def check_version(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise InvalidDocument(f"version must be a non-negative integer, got {_show(value)}")
    return value


def check_url(value: Any, rules: Rules, field: str) -> str:
    if type(value) is str and MIN_LOC <= len(value) <= MAX_LOC:
        m = CLEAN_URL_RE.fullmatch(value)
        if (
            m
            and (not rules.allowed_hosts or m.group(1).lower() in rules.allowed_hosts)
            and ("%" not in value or not BARE_PERCENT_RE.search(value))
        ):
            return value
    return _check_url(value, rules, field)


def _check_url(value: Any, rules: Rules, field: str) -> str:
    """check_url for every case: the fast path above only ever accepts what this accepts unchanged."""
    if not isinstance(value, str):
        raise InvalidDocument(f"{field} must be a string, got {_show(value)}")
    bad = URL_BAD_RE.search(value)
    if bad:
        what = "white space" if bad.group().isspace() else "control characters"
        raise InvalidDocument(f"{field} contains {what}: {_show(value)}")
    if "%" in value or not value.isascii():
        value = _ascii_authority(value, field)
    if URL_UNSAFE_RE.search(value):
        # Search engines want RFC 3986 URIs: percent-encode an IRI's (or a sloppy URL's) other characters.
        value = quote(BARE_PERCENT_RE.sub("%25", value), safe=URL_SAFE)
    if STRAY_RE.search(value):
        value = _escape_stray(value)
    if len(value) > MAX_LOC:
        raise InvalidDocument(f"{field} is {len(value)} characters, at most {MAX_LOC} allowed")
    if len(value) < MIN_LOC:
        raise InvalidDocument(f"{field} is shorter than {MIN_LOC} characters: {_show(value)}")
    m = URL_RE.fullmatch(value)
    if not m:
        raise InvalidDocument(f"{field} must be an absolute http(s) URL without credentials, got {_show(value)}")
    host = m.group(1).lower()
    if rules.allowed_hosts and host not in rules.allowed_hosts:
        raise InvalidDocument(
            f"{field} host {host!r} is not an allowed host ({', '.join(sorted(rules.allowed_hosts))})"
        )
    return str(value)


def _ascii_authority(url: str, field: str) -> str:
    """`url` with an internationalised or percent-encoded host in its IDNA form (`hosts.ascii_host`), before
    the rest is percent-encoded: `https://bücher.example/` is `https://xn--bcher-kva.example/`, never
    `https://b%C3%BCcher.example/`. Any other URL as it is."""
    m = AUTHORITY_RE.match(url)
    if m is None:
        return url
    start = url.index("://") + 3
    host, colon, port = url[start : m.end()].partition(":")
    if host.startswith("[") or "@" in host or (host.isascii() and "%" not in host):
        return url  # an IP literal, credentials (refused below), or a host in ASCII already
    try:
        return url[:start] + ascii_host(host) + colon + port + url[m.end() :]
    except ValueError as exc:
        raise InvalidDocument(f"{field} {exc}") from None


def _escape_stray(url: str) -> str:
    """Percent-encode '[' and ']' past the authority and every '#' after the first (see STRAY_RE)."""
    m = AUTHORITY_RE.match(url)
    end = m.end() if m else 0
    rest, hash_, fragment = url[end:].partition("#")
    return url[:end] + (rest + hash_ + fragment.replace("#", "%23")).replace("[", "%5B").replace("]", "%5D")


def check_text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if type(value) is str and len(value) <= MAX_TEXT and value.isascii() and value.isprintable():
        return value
    if not isinstance(value, str):
        raise InvalidDocument(f"{field} must be a string, got {_show(value)}")
    if len(value) > MAX_TEXT:
        raise InvalidDocument(f"{field} is {len(value)} characters, at most {MAX_TEXT} allowed")
    if BAD_CHARS_RE.search(value):
        raise InvalidDocument(f"{field} contains control characters")
    return value


def normalise_lastmod(value: Any) -> str | None:
    """Accept any W3C datetime; return a form the sitemaps.org schema accepts (xsd:date or xsd:dateTime).

    `2024` and `2024-05` become the first day of that period; a time without a zone is taken as UTC.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidDocument(f"lastmod must be a W3C datetime string, got {_show(value)}")
    if CANONICAL_LASTMOD_RE.fullmatch(value):  # the common case, valid by its shape alone
        return value[:-1] + "+00:00" if value[-1] == "Z" else value
    m = W3C_RE.fullmatch(value)
    if not m:
        raise InvalidDocument(f"lastmod is not a W3C datetime: {_show(value)}")
    year, month, day, hour, minute, second, frac, tz = m.groups()
    try:
        if hour is None:
            datetime(int(year), int(month or 1), int(day or 1))
            return f"{year}-{month or '01'}-{day or '01'}"
        datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except ValueError as exc:
        raise InvalidDocument(f"lastmod is not a valid date: {_show(value)} ({exc})") from None
    if tz is None or tz == "Z":
        tz = "+00:00"
    elif int(tz[4:6]) > 59 or int(tz[1:3]) * 60 + int(tz[4:6]) > 14 * 60:  # the schema allows -14:00 to +14:00
        raise InvalidDocument(f"lastmod has an invalid time zone: {_show(value)}")
    return f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}{(frac or '')[:7]}{tz}"


def instant(lastmod: str | None) -> datetime:
    """A normalised lastmod as an exact instant (a date is its midnight UTC); None as the earliest of all."""
    if lastmod is None:
        return datetime.min.replace(tzinfo=UTC)
    moment = datetime.fromisoformat(lastmod)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def lastmod_timestamp(lastmod: str | None) -> float | None:
    """Seconds since the epoch of a normalised lastmod, to find the newest one in a shard."""
    if lastmod is None:
        return None
    if len(lastmod) == 10:
        return datetime.fromisoformat(lastmod).replace(tzinfo=UTC).timestamp()
    return datetime.fromisoformat(lastmod).timestamp()


def load_json(raw: bytes | str) -> Any:
    """Decode one JSON text, or raise InvalidDocument saying why (deep nesting included)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidDocument(f"not valid JSON: {exc}") from None


Fields = tuple[
    str, str, str, str | None, str | None, float | None, tuple[Image, ...], tuple[Alternate, ...], int | None
]
"""A valid document's fields, in Document's order."""


def parse_document(obj: Any, rules: Rules) -> Document:
    """Build a Document from a decoded JSON object, or raise InvalidDocument naming the problem."""
    return Document(*document_fields(obj, rules))


def document_fields(obj: Any, rules: Rules) -> Fields:
    """The validated fields of a decoded JSON object (parse_document without building the Document: the rebuild
    and the apply path turn millions of objects straight into rows), or raise InvalidDocument."""
    if not isinstance(obj, dict):
        raise InvalidDocument(f"a document must be a JSON object, got {type(obj).__name__}")
    check_fields(obj, DOCUMENT_FIELDS, rules)
    get = obj.get
    section = check_section(get("section"))
    key = check_key(get("key"))
    loc = check_url(get("loc"), rules, "loc")
    lastmod = normalise_lastmod(get("lastmod"))
    changefreq = get("changefreq")
    if changefreq is not None and (not isinstance(changefreq, str) or changefreq not in CHANGEFREQS):
        raise InvalidDocument(f"changefreq must be one of {', '.join(sorted(CHANGEFREQS))}, got {_show(changefreq)}")
    priority = get("priority")
    if priority is not None:
        if (
            isinstance(priority, bool)
            or not isinstance(priority, (int, float))
            or not math.isfinite(priority)
            or not 0.0 <= priority <= 1.0
        ):
            raise InvalidDocument(f"priority must be a number from 0.0 to 1.0, got {_show(priority)}")
        priority = float(priority)
    images = get("images")
    alternates = get("alternates")
    return (
        section,
        key,
        loc,
        lastmod,
        changefreq,
        priority,
        _images(images, rules) if images is not None else (),
        _alternates(alternates, rules) if alternates is not None else (),
        check_version(get("version")),
    )


def bounded_list(value: Any, name: str, most: int, of: str = "") -> list[Any]:
    """`value` as a list of at most `most` entries, or InvalidDocument naming `name` (`of`: what it must hold)."""
    if not isinstance(value, list):
        raise InvalidDocument(f"{name} must be a list{of}")
    if len(value) > most:
        raise InvalidDocument(f"{name} has {len(value)} entries, at most {most} allowed")
    return value


def _images(value: Any, rules: Rules) -> tuple[Image, ...]:
    if value is None:
        return ()
    bounded_list(value, "images", MAX_IMAGES)
    images = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidDocument(f"images[{i}] must be an object")
        check_fields(item, IMAGE_FIELDS, rules, f"images[{i}]: ")
        try:
            images.append(
                Image(
                    loc=check_url(item.get("loc"), ANY_HOST, "loc"),  # images may live on a CDN host
                    title=check_text(item.get("title"), "title"),
                    caption=check_text(item.get("caption"), "caption"),
                )
            )
        except InvalidDocument as exc:  # name the entry only now: formatting it for every image costs
            raise InvalidDocument(f"images[{i}].{exc}") from None
    return tuple(images)


def _alternates(value: Any, rules: Rules) -> tuple[Alternate, ...]:
    if value is None:
        return ()
    bounded_list(value, "alternates", MAX_ALTERNATES)
    alternates = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidDocument(f"alternates[{i}] must be an object")
        check_fields(item, ALTERNATE_FIELDS, rules, f"alternates[{i}]: ")
        hreflang = item.get("hreflang")
        if not isinstance(hreflang, str) or not HREFLANG_RE.fullmatch(hreflang):
            raise InvalidDocument(f"alternates[{i}].hreflang is not a language tag: {_show(hreflang)}")
        try:
            alternates.append(Alternate(hreflang, check_url(item.get("href"), rules, "href")))
        except InvalidDocument as exc:
            raise InvalidDocument(f"alternates[{i}].{exc}") from None
    return tuple(alternates)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
