"""Hostile input through the real CLI (hypothesis): whatever arrives, nothing crashes, every published file is
XSD-valid, every bad line is a dead letter (reason and raw bytes), every good one is served exactly.

Each example is a rebuild source and a file of events, written as JSON lines and fed to `sitemaps rebuild` and
`sitemaps apply` in one call each. The expected outcome of every line is known by construction: a good
document is built from parts whose percent-encoded URL and normalised lastmod are worked out here,
independently of snapshot/document.py; a bad one is a good one with one field broken (the reason must name
it), or raw bytes that are not a JSON object at all. SITEMAPS_FULL_HARNESS=1 runs many more examples.
"""

from __future__ import annotations

import os
import re
import string
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sitemap_keeper.snapshot.manifest import Manifest
from tests.conftest import fresh_pg_database
from tests.support import Model, cli, read_site

HOST = "librer.io"
BASE = "http://127.0.0.1:8080/sitemaps/"
SECTIONS = ("books", "authors", "x-y_1", "s" * 64)
FULL = os.environ.get("SITEMAPS_FULL_HARNESS") == "1"  # random examples, many more of them
EXAMPLES_ENV = os.environ.get("SITEMAPS_HOSTILE_EXAMPLES")  # or exactly this many (per database)
COUNTS_RE = re.compile(r"applied (\d+), stale (\d+), rejected (\d+)")

# -- what the product must do, worked out independently ----------------------------------------------------

# RFC 3986: unreserved and reserved characters stay as they are, except '[' and ']' (only around an IP
# literal host) and a second '#'; a '%' starts an escape only before two hex digits.
KEEP = set(string.ascii_letters + string.digits + "-._~" + "!$&'()*+,;=" + ":@/?")


def expected_url(url: str) -> str:
    """`url` as it must be published: everything RFC 3986 does not allow where it stands, percent-encoded."""
    scheme, _, rest = url.partition("://")
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    out, hashed = [f"{scheme}://{rest[:cut]}"], False
    for i in range(cut, len(rest)):
        c = rest[i]
        if c == "%":
            out.append(c if re.fullmatch(r"[0-9A-Fa-f]{2}", rest[i + 1 : i + 3]) else "%25")
        elif c == "#":
            out.append("%23" if hashed else c)
            hashed = True
        elif c in KEEP:
            out.append(c)
        else:
            out.append("".join(f"%{b:02X}" for b in c.encode()))
    return "".join(out)


class Line:
    """One input line and what must become of it."""

    def __init__(self, raw: bytes, reason: str | None = None, event: dict[str, Any] | None = None) -> None:
        self.raw = raw
        self.reason = reason  # a bad line: fragments of its dead-letter reason, separated by '|'
        self.event = event  # a good line: what the model applies (normalised loc and lastmod)

    def __repr__(self) -> str:  # hypothesis prints the failing example: keep huge lines readable
        raw = self.raw if len(self.raw) <= 300 else self.raw[:300] + b"...(%d bytes)" % len(self.raw)
        return f"Line({raw!r}, reason={self.reason!r}, good={self.event is not None})"


def good(obj: dict[str, Any], loc: str | None = None, lastmod: str | None = None) -> Line:
    event = {**obj, "key": str(obj["key"])}
    if obj.get("op", "upsert") == "upsert":
        event |= {"loc": loc, "lastmod": lastmod}
    return Line(orjson.dumps(obj), event=event)


# -- strategies ------------------------------------------------------------------------------------------------

# Characters a URL may carry before encoding (no white space, no controls, no non-characters).
URL_FORBIDDEN = "".join(map(chr, range(0x21))) + "".join(map(chr, range(0x7F, 0xA0))) + "\ufffe\uffff"
# Characters a text may carry (XML 1.0 minus the C1 controls the product refuses too).
TEXT_FORBIDDEN = (
    "".join(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r")
    + "".join(map(chr, range(0x7F, 0xA0)))
    + "\ufffe\uffff"
)
NASTY = [
    "&",
    "<",
    ">",
    '"',
    "'",
    "]]>",
    "&amp;",
    "&lt",
    "&copy=",
    "\u202e",
    "\u05d0\u05d1",
    "\u0627\u0644",
    "e\u0301\u0336",
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",
    "\U0001f1eb\U0001f1f7",
    "\U0002070e",
    "\U000e0041",
    "\U0010fffd",
    "\u2028",
    "\u00a0",
    "\u3000",
    "\ufeff",
    "\u0085",
]
url_chars = st.one_of(
    st.characters(codec="utf-8", exclude_characters=URL_FORBIDDEN),
    st.sampled_from([*"%[]#?&<>\"'/:@!$()*+,;=~\\^`{|}", "%41", "%zz", "%e9"]),
    st.sampled_from([s for s in NASTY if not set(s) & set(URL_FORBIDDEN)]),
)
url_part = st.lists(url_chars, max_size=12).map("".join)
texts = st.one_of(
    st.none(),
    st.lists(
        st.one_of(
            st.characters(codec="utf-8", exclude_characters=TEXT_FORBIDDEN),
            st.sampled_from([s for s in NASTY if not set(s) & set(TEXT_FORBIDDEN)]),
        ),
        max_size=10,
    ).map("".join),
)
TIMEZONES = [
    ("", "+00:00"),
    ("Z", "+00:00"),
    ("+00:00", "+00:00"),
    ("-14:00", "-14:00"),
    ("+14:00", "+14:00"),
    ("+05:30", "+05:30"),
    ("-03:45", "-03:45"),
]


@st.composite
def lastmods(draw: st.DrawFn) -> tuple[str | None, str | None]:
    """(as sent, as it must be published): every W3C datetime form, any year from 0001 to 9999."""
    form = draw(st.sampled_from(["none", "year", "month", "date", "minutes", "seconds", "fraction"]))
    d = draw(st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59)))
    tz, tz_out = draw(st.sampled_from(TIMEZONES))
    day = f"{d.year:04d}-{d.month:02d}-{d.day:02d}"
    if form == "none":
        return None, None
    if form == "year":
        return f"{d.year:04d}", f"{d.year:04d}-01-01"
    if form == "month":
        return day[:7], day[:7] + "-01"
    if form == "date":
        return day, day
    hm = f"{day}T{d.hour:02d}:{d.minute:02d}"
    if form == "minutes":
        return hm + tz, f"{hm}:00{tz_out}"
    hms = f"{hm}:{d.second:02d}"
    if form == "seconds":
        return hms + tz, hms + tz_out
    digits = draw(st.text("0123456789", min_size=1, max_size=9))
    return f"{hms}.{digits}{tz}", f"{hms}.{digits[:6]}{tz_out}"


@st.composite
def urls(
    draw: st.DrawFn, prefix: str = "", hosts: tuple[str, ...] = (HOST, HOST.upper(), f"{HOST}:8443"), pad_odds: int = 20
) -> str:
    """A raw URL on an allowed host; sometimes padded to within a few characters of 2,048 once encoded."""
    url = f"https://{draw(st.sampled_from(hosts))}/{prefix}{draw(url_part)}"
    if draw(st.booleans()):
        url += "?" + draw(url_part)
    if draw(st.booleans()):
        url += "#" + draw(url_part)
    if draw(st.integers(1, pad_odds)) == 1:
        unit = draw(st.sampled_from(["x", "\u00e9", "\U0001f600"]))
        width = len(expected_url(f"https://{HOST}/{unit}")) - len(f"https://{HOST}/")
        room = (2048 - len(expected_url(url + "/"))) // width
        url += "/" + unit * max(0, room + draw(st.integers(-1, 1)))
    return url


class Doc(NamedTuple):
    obj: dict[str, Any]
    loc: str  # as it must be published
    lastmod: str | None  # as it must be published
    reason: str | None  # why it must be refused: some URL is over 2,048 characters once encoded

    def line(self, **extra: Any) -> Line:
        obj = {**self.obj, **extra}
        return good(obj, self.loc, self.lastmod) if self.reason is None else Line(orjson.dumps(obj), self.reason)


def too_long(doc: dict[str, Any]) -> str | None:
    """The first URL of `doc` over 2,048 characters once encoded, in the order the product checks them."""
    urls = [("loc", doc["loc"])] + [(f"images[{i}].loc", m["loc"]) for i, m in enumerate(doc.get("images", []))]
    urls += [(f"alternates[{i}].href", a["href"]) for i, a in enumerate(doc.get("alternates", []))]
    return next((f"{name} is|at most 2048" for name, url in urls if len(expected_url(url)) > 2048), None)


@st.composite
def documents(draw: st.DrawFn, key: str | int) -> Doc:
    """A document, valid but for URLs that may come out too long. Two documents never share a URL."""
    section = draw(st.sampled_from(SECTIONS))
    loc = draw(urls(f"{section}/{key}/", pad_odds=5))
    sent, lastmod = draw(lastmods())
    obj: dict[str, Any] = {"section": section, "key": key, "loc": loc}
    if sent is not None:
        obj["lastmod"] = sent
    for name, value in (
        ("changefreq", draw(st.none() | st.sampled_from(["always", "daily", "never"]))),
        ("priority", draw(st.none() | st.sampled_from([0, 0.0, 0.04, 0.5, 0.96, 1, 1.0]))),
        ("version", draw(st.none() | st.integers(0, 2**63 - 1))),
    ):
        if value is not None:
            obj[name] = value
    many = draw(st.integers(0, 8))
    if many == 0:  # the limits exactly: 1,000 images, 200 alternates, texts of 2,048 characters
        title = draw(st.sampled_from(["&", "\U0001f600", ">"])) * 2048
        obj["images"] = [
            {"loc": f"https://cdn.{HOST}/{i}.jpg", "title": title if i < 3 else "]]>"} for i in range(1000)
        ]
        obj["images"][3]["loc"] = "https://[::1]/x[1].jpg#a#b"  # an IP literal host keeps its brackets
        obj["alternates"] = [{"hreflang": "de", "href": f"https://{HOST}/de/{i}"} for i in range(200)]
    else:
        obj["images"] = [
            {
                k: v
                for k, v in (
                    ("loc", draw(urls(hosts=(f"cdn.{HOST}", "img.example.org")))),
                    ("title", draw(texts)),
                    ("caption", draw(texts)),
                )
                if v is not None
            }
            for _ in range(draw(st.integers(0, 3)))
        ]
        obj["alternates"] = [
            {"hreflang": draw(st.sampled_from(["de", "x-default", "zh-Hant-TW", "es-419", "EN"])), "href": draw(urls())}
            for _ in range(draw(st.integers(0, 2)))
        ]
    return Doc(obj, expected_url(loc), lastmod, too_long(obj))


def valid_documents(key: str | int) -> st.SearchStrategy[Doc]:
    return documents(key).filter(lambda d: d.reason is None)


BAD_DATES = [
    ("yesterday", "not a W3C datetime"),
    ("2024-13-01", "not a valid date"),
    ("2023-02-29", "not a valid date"),
    ("2024-05-17T24:00:00Z", "not a valid date"),
    ("2024-05-17T10:00:60Z", "not a valid date"),
    ("0000-01-01T00:00:00Z", "not a valid date"),
    ("0000", "not a valid date"),
    ("2024-05-17T10:00:00+15:00", "invalid time zone"),
    ("2024-05-17T10:00:00+14:30", "invalid time zone"),
    ("2024-05-17T10:00:00-14:01", "invalid time zone"),
    ("\u0662\u0660\u0662\u0664-\u0660\u0661-\u0660\u0661", "not a W3C datetime"),
    ("2024-05-17T10:00:00+0530", "not a W3C datetime"),
    ("2024-05-17 10:00:00", "not a W3C datetime"),
    ("2024-5-7", "not a W3C datetime"),
    ("", "not a W3C datetime"),
    ("2024-05-17Z", "not a W3C datetime"),
    ("10000-01-01", "not a W3C datetime"),
    ("2024-05-17T10:00:00.Z", "not a W3C datetime"),
    (20240517, "lastmod must be a W3C datetime string"),
    ([2024], "lastmod must be a W3C datetime"),
]
BAD_URLS = [
    (12345, "must be a string"),
    (None, "must be a string"),
    (["https://librer.io/x"], "must be a string"),
    ("https://evil.example/abcdef", "not an allowed host"),
    ("https://librer.io.evil.example/x", "host"),
    ("https://evil.example@librer.io/x", "without credentials"),
    ("ftp://librer.io/abcdef", "http(s)"),
    ("javascript:alert(1)//librer.io", "http(s)"),
    ("//librer.io/abcdefgh", "http(s)"),
    ("https://librer.io:123456/x", "http(s)"),
    ("https://lib", "shorter than 12"),
    ("https://librer.io/a b", "white space"),
    ("https://librer.io/a\tb", "white space"),
    ("https://librer.io/a\u0085b", "white space"),
    ("https://librer.io/a\x00b", "control characters"),
    ("https://librer.io/a\x7fb", "control characters"),
    ("https://librer.io/\ufffe", "control characters"),
    ("https://librer.io/" + "a" * 2031, "at most 2048"),
    ("https://librer.io/" + "\u00e9" * 700, "at most 2048"),
]
BAD_TEXTS = [
    (5, "must be a string"),
    (["t"], "must be a string"),
    ("t" * 2049, "at most 2048"),
    ("a\x01b", "control characters"),
    ("\ufffe", "control characters"),
    ("a\x9fb", "control characters"),
]
IMAGE = {"loc": f"https://cdn.{HOST}/i.jpg"}
ALTERNATE = {"hreflang": "de", "href": f"https://{HOST}/de/x"}
# (path of the field, the bad value, a fragment of the reason); a path into images/alternates gets one entry.
MUTATIONS: list[tuple[tuple[str | int, ...], Any, str]] = [
    *[(("section",), v, "section must match") for v in ("Books", "s" * 65, "b\u00f6oks", "", 7, None, ["books"])],
    *[(("key",), v, "key must be a non-empty string") for v in ("", True, 1.5, ["1"], None, {"k": 1})],
    (("key",), "k" * 513, "at most 512"),
    (("key",), "a\x00b", "key contains control"),
    (("key",), "a\u0085b", "key contains control"),
    *[(("loc",), v, r) for v, r in BAD_URLS],
    *[(("lastmod",), v, r) for v, r in BAD_DATES],
    *[(("changefreq",), v, "changefreq must be one of") for v in ("sometimes", "Daily", 1, [], {}, ["daily"])],
    *[(("priority",), v, "priority must be a number") for v in (1.5, -0.1, "0.5", True, [], {"p": 1})],
    *[(("version",), v, "version must be a non-negative integer") for v in (-1, True, 1.0, "3", 2**63, [1])],
    *[(("images",), v, "images must be a list") for v in ("x.jpg", {"loc": "x"}, 5, True)],
    (("images",), [1], "images[0] must be an object"),
    (("images",), [IMAGE, "x"], "images[1] must be an object"),
    (("images",), [IMAGE] * 1001, "images has 1001 entries"),
    *[(("images", 0, "loc"), v, f"images[0].loc|{r}") for v, r in BAD_URLS if "host" not in r],
    *[(("images", 0, f), v, f"images[0].{f}|{r}") for f in ("title", "caption") for v, r in BAD_TEXTS],
    *[(("alternates",), v, "alternates must be a list") for v in ("de", {"de": "x"}, 1)],
    (("alternates",), [[]], "alternates[0] must be an object"),
    (("alternates",), [ALTERNATE] * 201, "alternates has 201 entries"),
    *[
        (("alternates", 0, "hreflang"), v, "alternates[0].hreflang is not a language tag")
        for v in ("de-", "", 5, None, "d e", "deutsch-", "\u0434\u0435")
    ],
    (("alternates", 0, "href"), "https://evil.example/x", "alternates[0].href host"),
    (("alternates", 0, "href"), None, "alternates[0].href must be a string"),
]
DOC = b'{"section":"books","key":"raw","loc":"https://librer.io/raw",'
# Raw lines that are not a JSON object: (bytes, reason fragment).
GARBAGE: list[tuple[bytes, str]] = [
    (b"not json", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b"[" * 10_000 + b"]" * 10_000, "depth"),
    (DOC + b'"images":' + b"[" * 10_000 + b"]" * 10_000 + b"}", "depth"),
    (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "depth"),
    (b"[1,2]", "must be a JSON object"),
    (b'"str"', "must be a JSON object"),
    (b"42", "must be a JSON object"),
    (b"null", "must be a JSON object"),
    (b"true", "must be a JSON object"),
    (b"{}", "section must match"),
    (b"\xef\xbb\xbf" + DOC + b'"x":1}', "not valid JSON"),
    (DOC + b'"x":"\xff"}', "not valid JSON"),
    (DOC + b'"x":"\xc3\x28"}', "not valid JSON"),
    (DOC + b'"x":"\xed\xa0\x80"}', "not valid JSON"),
    (DOC + b'"x":"\xc0\xaf"}', "not valid JSON"),
    (DOC + b'"x":"\xf4\x90\x80\x80"}', "not valid JSON"),
    (DOC + b'"x":"\\ud800"}', "not valid JSON"),
    (DOC + b'"priority":NaN}', "not valid JSON"),
    (DOC + b'"priority":1e400}', "not valid JSON"),
    (DOC + b'"x":1}\x00', "not valid JSON"),
    (DOC + b'"x":1} {}', "not valid JSON"),
    (b"\x00\x01\x02", "not valid JSON"),
]
BIG_PAD = 1024 * 1024  # a line of more than 1 MiB: refused in a rebuild source as in events


def set_path(obj: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    target: Any = obj
    for step in path[:-1]:
        if isinstance(step, str) and not target.get(step):
            target[step] = [dict(IMAGE if step == "images" else ALTERNATE)]
        target = target[step]
    target[path[-1]] = value


def broken(obj: dict[str, Any], mutation: tuple[tuple[str | int, ...], Any, str]) -> Line:
    path, value, reason = mutation
    copy = orjson.loads(orjson.dumps(obj))  # deep copy: the mutation must not leak into another line
    set_path(copy, path, value)
    return Line(orjson.dumps(copy), reason=reason)


@st.composite
def source_lines(draw: st.DrawFn) -> list[Line]:
    """A rebuild source: documents with distinct keys, some broken, some not JSON objects at all."""
    lines = []
    for i in range(draw(st.integers(1, 12))):
        key = draw(st.sampled_from(["", "\u202e", "\U0001f600", "&<"])) + f"r{i}"
        doc = draw(valid_documents(key) if i == 0 else documents(key))  # one valid at least: see below
        kind = draw(st.integers(0, 9))
        if kind < 6 or i == 0:
            lines.append(doc.line())
        elif kind < 8:
            lines.append(broken(draw(valid_documents(key)).obj, draw(st.sampled_from(MUTATIONS))))
        elif kind == 8:
            lines.append(Line(*draw(st.sampled_from(GARBAGE))))
        else:
            op = draw(st.sampled_from(["delete", "explode", None, ["upsert"]]))
            lines.append(Line(orjson.dumps({**doc.obj, "op": op}), reason="a rebuild source holds documents"))
    if draw(st.integers(0, 4)) == 0:  # a huge line: refused for its size, as an event is (padded with white
        huge = draw(documents(key="huge")).line()  # space: an unknown field would be refused for itself)
        lines.append(Line(huge.raw[:-1] + b" " * BIG_PAD + b"}", reason="at most 1048576 allowed"))
    return lines


@st.composite
def event_lines(draw: st.DrawFn, keys: list[str]) -> list[Line]:
    """Events on the source's documents and new ones: upserts, deletes, stale versions, broken ones."""
    lines = []
    pool = st.sampled_from([*keys, "new1", "new2", 17])
    for _ in range(draw(st.integers(1, 15))):
        kind = draw(st.integers(0, 11))
        key = draw(pool)
        if kind < 5:
            doc = draw(documents(key))
            version = draw(st.none() | st.integers(0, 5))
            doc.obj.pop("version", None)
            lines.append(doc.line(op="upsert") if version is None else doc.line(op="upsert", version=version))
        elif kind < 7:
            obj = {"op": "delete", "section": draw(st.sampled_from(SECTIONS)), "key": key}
            version = draw(st.none() | st.integers(0, 5))
            lines.append(good(obj if version is None else {**obj, "version": version}))
        elif kind < 9:
            lines.append(broken({"op": "upsert", **draw(valid_documents(key)).obj}, draw(st.sampled_from(MUTATIONS))))
        elif kind == 9:
            obj = {"op": "delete", "section": "books", "key": key}
            path, value, reason = draw(
                st.sampled_from([m for m in MUTATIONS if m[0][0] in ("section", "key", "version")])
            )
            lines.append(Line(orjson.dumps({**obj, str(path[0]): value}), reason=reason))
        elif kind == 10:
            lines.append(Line(*draw(st.sampled_from(GARBAGE))))
        else:
            obj = draw(documents(key)).obj
            op = draw(st.sampled_from(["explode", None, ["upsert"], 1, "UPSERT"]))
            big = {"pad": "x" * BIG_PAD} if draw(st.booleans()) else {}
            lines.append(Line(orjson.dumps({**obj, "op": op, **big}), reason="op must be 'upsert' or 'delete'"))
    # Over 1 MiB, an event is refused for its size before anything else.
    return [Line(line.raw, reason="event is") if len(line.raw) > BIG_PAD else line for line in lines]


@st.composite
def scripts(draw: st.DrawFn) -> tuple[list[Line], list[Line]]:
    source = draw(source_lines())
    keys = [str(line.event["key"]) for line in source if line.event is not None]
    return source, draw(event_lines(keys))


# -- running it through the CLI ------------------------------------------------------------------------------------


def counts(out: str) -> tuple[int, int, int]:
    m = COUNTS_RE.search(out)
    assert m, out
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def write(path: Path, lines: list[Line]) -> Path:
    path.write_bytes(b"".join(line.raw + b"\n" for line in lines))
    return path


def run(database_url: str, tmp: Path, source: list[Line], events: list[Line]) -> None:
    """Rebuild from `source`, apply `events`, publish; check dead letters, counts and the served site."""
    env = {
        "SITEMAPS_DATA_DIR": str(tmp / "data"),
        "SITEMAPS_DATABASE_URL": database_url,
        "SITEMAPS_BASE_URL": BASE,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_MAX_URLS": "5",
        "SITEMAPS_WORKERS": "1",
        "SITEMAPS_LOG_LEVEL": "WARNING",
    }
    model = Model()
    current = tmp / "data" / "current"
    bad: list[tuple[str, Line]] = []

    def served() -> dict[str, str | None]:
        return read_site(lambda name: (current / name).read_bytes(), BASE).urls  # validates every file

    def feed(name: str, lines: list[Line], *args: str) -> tuple[int, int, int]:
        out = cli(*args, str(write(tmp / name, lines)), env=env).stdout
        bad.extend((f"{name}:{n}", line) for n, line in enumerate(lines, 1) if line.event is None)
        check_dead_letters(database_url, bad)
        return counts(out)

    got = feed("catalog.jsonl", source, "rebuild", "--source")
    good_lines = [line for line in source if line.event is not None]
    for line in good_lines:
        assert line.event is not None and model.event(line.event)
    assert got == (len(good_lines), 0, len(source) - len(good_lines))
    assert served() == model.expected()

    got = feed("events.jsonl", events, "apply")
    applied = [model.event(line.event) for line in events if line.event is not None]
    assert got == (sum(applied), len(applied) - sum(applied), len(events) - len(applied))
    published = cli("publish", env=env, check=False)
    assert "Traceback" not in published.stderr, published.stderr
    if model.expected():
        assert published.returncode == 0, published.stderr
        assert served() == model.expected()
    else:  # everything deleted: an empty generation is refused, by design
        assert published.returncode == 1 and "no documents" in published.stderr


def check_dead_letters(database_url: str, bad: list[tuple[str, Line]]) -> None:
    """Every bad line, and only those, in the dead-letter table: its source, its reason, its raw bytes."""
    manifest = Manifest.open(database_url)
    try:
        letters = manifest.dead_letters.all()
    finally:
        manifest.close()
    assert [(d.source, d.raw) for d in letters] == [(s, line.raw) for s, line in bad], (
        [(d.source, d.reason) for d in letters],
        [(s, line.reason) for s, line in bad],
    )
    for d, (_, line) in zip(letters, bad, strict=True):
        assert line.reason is not None and all(part in d.reason for part in line.reason.split("|")), (
            d.reason,
            line.reason,
            line.raw[:200],
        )


# No shrinking: every example is a few CLI runs, and the failing one is printed as it was.
EXAMPLES = settings(
    max_examples=int(EXAMPLES_ENV or (500 if FULL else 8)),
    deadline=None,
    derandomize=not FULL,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
LONG = pytest.mark.timeout(0 if FULL or EXAMPLES_ENV else 300)


@LONG
@EXAMPLES
@given(scripts())
def test_hostile_input_sqlite(script: tuple[list[Line], list[Line]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{tmp}/m.db", Path(tmp), *script)


@LONG
@settings(EXAMPLES, max_examples=int(EXAMPLES_ENV or (100 if FULL else 2)))
@given(scripts())
def test_hostile_input_postgresql(script: tuple[list[Line], list[Line]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for url in fresh_pg_database():
            run(url, Path(tmp), *script)


def every_mutation() -> tuple[list[Line], list[Line]]:
    """Every mutation and garbage line once, as source lines and as events, around a few good documents."""
    base: dict[str, Any] = {
        "section": "books",
        "key": "k",
        "loc": f"https://{HOST}/b/k",
        "lastmod": "2024-05-17T10:00:00Z",
        "images": [IMAGE],
        "alternates": [ALTERNATE],
    }
    # In one shard: the newest instant is the one whose text sorts lowest (the index must say that one).
    zoned = ["2024-01-01T20:00:00+00:00", "2024-01-01T10:00:00-14:00", "2024-01-01", "2024-01-01T23:59:59.999Z"]
    source = [
        good(
            {**base, "key": f"g{i}", "loc": f"https://{HOST}/b/{i}", "lastmod": lastmod},
            f"https://{HOST}/b/{i}",
            lastmod.replace("Z", "+00:00"),
        )
        for i, lastmod in enumerate(zoned)
    ]
    edge = [
        f"https://{HOST}/a[b]?q[]=1#f#g[",
        f"https://{HOST}/%zz%41%",
        f"https://{HOST}/a]b#",
        f"https://{HOST}/\u00e9\u202e\U0001f600?x=<&y=\"'#]]>",
    ]  # to be percent-encoded where RFC 3986 says
    for i, url in enumerate(edge):
        source.append(
            good(
                {**base, "key": f"e{i}", "loc": url, "images": [{"loc": "https://[::1]/i[1]#a#b"}]},
                expected_url(url),
                "2024-05-17T10:00:00+00:00",
            )
        )
    for i, m in enumerate(MUTATIONS):
        source.append(broken({**base, "key": f"m{i}"}, m))
    source += [Line(raw, reason=r) for raw, r in GARBAGE]
    events = [broken({"op": "upsert", **base, "key": f"m{i}"}, m) for i, m in enumerate(MUTATIONS)]
    events += [Line(raw, reason=r) for raw, r in GARBAGE]
    events.append(Line(orjson.dumps({**base, "pad": "x" * BIG_PAD}), reason="event is"))
    events.append(good({"op": "delete", "section": "books", "key": "g0"}))
    return source, events


def test_every_kind_of_bad_input_once(tmp_path: Path) -> None:
    run(f"sqlite:///{tmp_path}/m.db", tmp_path, *every_mutation())


def test_dead_letters_command_shows_invalid_utf8(tmp_path: Path) -> None:
    env = {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_BASE_URL": BASE,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_LOG_LEVEL": "WARNING",
    }
    src = write(tmp_path / "e.jsonl", [Line(DOC + b'"x":"\xff\xfe"}'), Line(b"\xc3\x28 \xe2\x80\xae")])
    assert counts(cli("apply", str(src), env=env).stdout) == (0, 0, 2)
    out = cli("dead-letters", env=env).stdout
    assert "\\xff\\xfe" in out and "\\xc3( \u202e" in out, out
    raws = [orjson.loads(line)["raw"] for line in cli("dead-letters", "--json", env=env).stdout.splitlines()]
    assert raws == [(DOC + b'"x":"\xff\xfe"}').decode(errors="backslashreplace"), "\\xc3( \u202e"]


def test_rebuild_without_one_valid_document_changes_nothing(tmp_path: Path) -> None:
    """A source with nothing valid in it (the wrong file, a truncated dump) must not empty the manifest: the
    next publish would otherwise drop every URL of the site."""
    env = {
        "SITEMAPS_DATA_DIR": str(tmp_path / "data"),
        "SITEMAPS_BASE_URL": BASE,
        "SITEMAPS_ALLOWED_HOSTS": HOST,
        "SITEMAPS_LOG_LEVEL": "WARNING",
    }
    model = Model()
    docs = [{"section": "books", "key": str(i), "loc": f"https://{HOST}/b/{i}"} for i in range(3)]
    cli("rebuild", "--source", str(write(tmp_path / "good.jsonl", [good(d, d["loc"]) for d in docs])), env=env)
    for d in docs:
        model.event(d)
    garbage = [Line(raw, reason=r) for raw, r in GARBAGE]
    proc = cli("rebuild", "--source", str(write(tmp_path / "bad.jsonl", garbage)), env=env, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"applied 0, stale 0, rejected {len(garbage)}" in proc.stderr and "left as it was" in proc.stderr
    check_dead_letters(
        f"sqlite:///{tmp_path / 'data' / 'manifest.db'}",
        [(f"bad.jsonl:{n}", line) for n, line in enumerate(garbage, 1)],
    )
    new = {"section": "books", "key": "new", "loc": f"https://{HOST}/b/new"}
    cli("apply", str(write(tmp_path / "e.jsonl", [good(new, new["loc"])])), env=env)
    model.event(new)
    cli("publish", env=env)
    assert read_site(lambda name: (tmp_path / "data" / "current" / name).read_bytes(), BASE).urls == model.expected()
