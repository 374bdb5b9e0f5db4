"""Validating and rendering single documents: each refusal names its reason; output is always XSD-valid."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitemap_keeper.snapshot import document
from sitemap_keeper.snapshot.document import InvalidDocument, Rules, normalise_lastmod, parse_document
from sitemap_keeper.snapshot.render import IndexEntry, gzip_pieces, index_xml, shard_pieces, url_fragment
from tests.support import NS as ns
from tests.support import validate

RULES = Rules(frozenset({"librer.io"}))


def base(**changes: object) -> dict[str, object]:
    return {"section": "books", "key": "1", "loc": "https://librer.io/books/1", **changes}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"loc": "ftp://librer.io/books/1"}, "absolute http(s) URL"),
        ({"loc": "/books/1"}, "shorter than 12"),
        ({"loc": "https://evil.example/books/1"}, "'evil.example' is not an allowed host"),
        ({"loc": "https://user:pw@librer.io/b"}, "without credentials"),
        ({"loc": "https://librer.io/a b"}, "white space"),
        ({"loc": "https://librer.io/a\x07b"}, "control characters"),
        ({"loc": "https://librer.io/" + "a" * 2100}, "at most 2048"),
        ({"loc": 17}, "loc must be a string"),
        ({"section": "Books"}, "section must match"),
        ({"section": "a" * 65}, "section must match"),
        ({"key": ""}, "key must be a non-empty string"),
        ({"key": "k" * 513}, "at most 512"),
        ({"lastmod": "yesterday"}, "not a W3C datetime"),
        ({"lastmod": "2024-02-30"}, "not a valid date"),
        ({"lastmod": "2024-05-17T25:00:00Z"}, "not a valid date"),
        ({"lastmod": "2024-05-17T10:00:00+15:00"}, "invalid time zone"),
        ({"changefreq": "sometimes"}, "changefreq must be one of"),
        ({"priority": 1.5}, "priority must be a number from 0.0 to 1.0"),
        ({"priority": True}, "priority must be a number"),
        ({"version": -1}, "version must be a non-negative integer"),
        ({"images": [{"loc": "https://cdn.example/i.jpg", "title": "x" * 3000}]}, "images[0].title is 3000"),
        ({"images": [{"loc": "https://cdn.example/i.jpg"}] * 1001}, "at most 1000 allowed"),
        ({"images": [{"loc": "https://cdn.example/i.jpg", "caption": "a\x00b"}]}, "images[0].caption contains control"),
        ({"alternates": [{"hreflang": "not a tag", "href": "https://librer.io/x"}]}, "hreflang is not a language tag"),
        ({"alternates": [{"hreflang": "de", "href": "https://evil.example/x"}]}, "alternates[0].href host"),
    ],
)
def test_refusals_name_the_problem(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidDocument) as err:
        parse_document(base(**changes), RULES)
    assert reason in str(err.value)


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("2024", "2024-01-01"),
        ("2024-05", "2024-05-01"),
        ("2024-05-17", "2024-05-17"),
        ("2024-05-17T10:00Z", "2024-05-17T10:00:00+00:00"),
        ("2024-05-17T10:00:05+02:00", "2024-05-17T10:00:05+02:00"),
        ("2024-05-17T10:00:05.25-03:30", "2024-05-17T10:00:05.25-03:30"),
        ("2024-05-17T10:00:05", "2024-05-17T10:00:05+00:00"),
        ("2024-05-31T23:59:59Z", "2024-05-31T23:59:59+00:00"),
    ],
)
def test_lastmod_is_normalised_to_what_the_schema_accepts(given_: str, expected: str) -> None:
    assert normalise_lastmod(given_) == expected


def test_iri_and_unsafe_characters_are_percent_encoded() -> None:
    d = parse_document(base(loc="https://librer.io/bücher/<1>?q=a|b"), RULES)
    assert d.loc == "https://librer.io/b%C3%BCcher/%3C1%3E?q=a%7Cb"
    assert parse_document(base(loc="https://librer.io/100%/x%41"), RULES).loc == "https://librer.io/100%25/x%41"


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(title=texts, caption=texts, path=texts, lastmod=st.sampled_from(["2024", "2024-05-17T10:00+01:00", None]))
def test_any_accepted_document_renders_schema_valid_xml(
    title: str, caption: str, path: str, lastmod: str | None
) -> None:
    obj = base(
        loc=f"https://librer.io/{path}",
        lastmod=lastmod,
        priority=0.3,
        changefreq="daily",
        images=[{"loc": f"https://cdn.librer.io/{path}.jpg", "title": title, "caption": caption}],
        alternates=[{"hreflang": "en-GB", "href": f"https://librer.io/en/{path}"}],
    )
    try:
        d = parse_document(obj, RULES)
    except InvalidDocument as exc:
        assert "control characters" in str(exc) or "white space" in str(exc) or "characters" in str(exc)
        return
    root = validate("shard", gzip.decompress(gzip_pieces(shard_pieces([url_fragment(d)]))))
    assert root.findtext("sm:url/sm:loc", namespaces=ns) == d.loc
    assert root.findtext("sm:url/image:image/image:title", namespaces=ns) == title
    assert root.findtext("sm:url/image:image/image:caption", namespaces=ns) == caption


def test_index_is_schema_valid() -> None:
    xml = index_xml(
        [
            IndexEntry("https://librer.io/sitemaps/sitemap-books-1.xml.gz", "2024-05-17"),
            IndexEntry("https://librer.io/sitemaps/sitemap-books-2.xml.gz?a=1&b=2", None),
        ]
    )
    validate("index", xml)


url_chars = st.sampled_from([*"aZ09.-_~:/?#[]@!$&'()*+,;=%% \t\x00\x7féü€", "%41", "%zz", "%4"])


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(
    scheme=st.sampled_from(["https://", "http://", "ftp://", "https:/", ""]),
    host=st.sampled_from(
        ["librer.io", "LIBRER.IO", "evil.example", "[::1]", "user@librer.io", "librer.io:8443", "librer.io:", ""]
    ),
    start=st.sampled_from(["/", "?", "#", ""]),
    rest=st.lists(url_chars, max_size=40).map("".join),
)
def test_url_fast_path_agrees_with_the_full_check(scheme: str, host: str, start: str, rest: str) -> None:
    """check_url's fast path may only accept what the complete check accepts, and unchanged."""
    url = scheme + host + start + rest
    try:
        expected: str | None = document._check_url(url, RULES, "loc")
    except InvalidDocument as exc:
        expected, reason = None, str(exc)
    try:
        assert document.check_url(url, RULES, "loc") == expected
    except InvalidDocument as exc:
        assert expected is None and str(exc) == reason
