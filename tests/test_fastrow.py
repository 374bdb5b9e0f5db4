"""The native fast path of document_row (snapshot/_fastrow.c) against its reference, the Python code.

The fast path may decline any document (the Python code then decides it); whatever it accepts must come out
exactly as the Python code makes it, value for value and type for type.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitemap_keeper.snapshot import rebuild, render, synthetic
from sitemap_keeper.snapshot.document import ANY_HOST, InvalidDocument, Rules
from sitemap_keeper.snapshot.packs import unpack
from sitemap_keeper.snapshot.rebuild import Chunk, parse_chunk
from sitemap_keeper.snapshot.render import DocumentRow, document_row
from sitemap_keeper.snapshot.settings import Settings

RULES = Rules(frozenset({"librer.io", "cdn.librer.io"}))
FAST = render.fast_row
FAST_ROWS = rebuild.fast_rows


@contextmanager
def python_only() -> Iterator[None]:
    """The reference: the Python code alone, as an install without a C compiler runs."""
    render.fast_row = rebuild.fast_rows = None
    try:
        yield
    finally:
        render.fast_row, rebuild.fast_rows = FAST, FAST_ROWS


def reference(obj: Any, rules: Rules) -> DocumentRow | None:
    """What the Python code makes of `obj`; None where it refuses it."""
    with python_only():
        try:
            return document_row(obj, rules)
        except InvalidDocument:
            return None


def test_the_native_fast_path_is_built() -> None:
    assert FAST is not None and FAST_ROWS is not None, (
        "sitemap_keeper.snapshot._fastrow was not built (pip install needs a C compiler): rebuilds run slower"
    )


def same(fast: DocumentRow, expected: DocumentRow | None) -> None:
    assert fast == expected
    assert [type(v) for v in fast] == [type(v) for v in expected]


def parts(*choices: str) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(choices), max_size=12).map("".join)


def mostly(common: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The common shape nine times in ten: a document needs every field right for the fast path to take it."""
    return st.integers(0, 9).flatmap(lambda roll: other if roll == 9 else common)


PATH = "/?aZ0@!$&'(*+,;=~-._:"
urls = mostly(
    st.builds(
        lambda s, h, p, path: s + h + p + path,
        st.sampled_from(["https://", "http://"]),
        mostly(
            st.sampled_from(["librer.io", "LIBRER.io", "Cdn.Librer.IO"]),
            st.sampled_from(
                [
                    "evil.example",
                    "",
                    "librer.io.",
                    "bücher.de",
                    "[::1]",
                    "user@librer.io",
                    "librer.io:",
                    "xn--bcher-kva.example",
                    "1.2.3.4",
                ]
            ),
        ),
        mostly(st.sampled_from(["", ":8080", ":0", ":65535"]), st.sampled_from([":", ":123456", ":٣", ":8a"])),
        mostly(
            st.builds(lambda p, f: "/" + p + f, parts(*PATH, "%2F", "%7e"), st.sampled_from(["", "#", "#a/?"])),
            parts(
                *PATH, "#", "[", "]", "%zz", "%4", "%", " ", '"', "<", ">", "é", "\t", "\x7f", "\r", "{", "|", "^", "`"
            ),
        ),
    ),
    st.one_of(
        st.sampled_from(
            [
                "https://librer.io/" + "a" * 2030,
                "https://librer.io/" + "a" * 2031,
                "http://a.io",
                "http://ab.io",
                "ftp://librer.io/a",
                "HTTPS://librer.io/a",
                "https:///librer.io",
            ]
        ),
        st.integers(),
        st.none(),
    ),
)
lastmods = mostly(
    st.builds(
        lambda *p: "".join(p),
        st.sampled_from(["2024", "1700", "1970", "2200"]),
        st.sampled_from(["-05", "-12"]),
        st.sampled_from(["-17", "-01", "-28"]),
        st.sampled_from(["T10", "T00", "T23"]),
        st.sampled_from([":00", ":59"]),
        st.sampled_from([":00", ":59"]),
        st.sampled_from(["", ".5", ".12", ".123456"]),
        st.sampled_from(["Z", "+00:00", "-00:00", "-14:00", "+14:00", "+13:59", "-05:30"]),
    ),
    st.one_of(
        st.none(),
        st.integers(),
        st.builds(
            lambda *p: "".join(p),
            st.sampled_from(["2024", "0000", "0001", "1600", "2300", "9999", "20245", "٢٠٢٤"]),
            st.sampled_from(["-05", "-00", "-13", ""]),
            st.sampled_from(["-17", "-29", "-31", ""]),
            st.sampled_from(["T10", "T24", " 10", ""]),
            st.sampled_from([":00", ":60", ""]),
            st.sampled_from([":00", ":60", ""]),
            st.sampled_from(["", ".1234567", "."]),
            st.sampled_from(["Z", "z", "+14:01", "+1:00", "+0530", "", "+24:00"]),
        ),
    ),
)
texts = mostly(
    st.one_of(st.none(), st.text(alphabet="ab &<>\"'", max_size=12)),
    st.one_of(
        st.integers(), st.text(alphabet="ab\r\n\x07é\x7f", max_size=12), st.sampled_from(["t" * 2048, "t" * 2049])
    ),
)
images = mostly(
    st.one_of(
        st.none(),
        st.lists(st.fixed_dictionaries({"loc": urls}, optional={"title": texts, "caption": texts}), max_size=3),
    ),
    st.one_of(st.integers(), st.lists(st.integers(), min_size=1, max_size=2)),
)
alternates = mostly(
    st.one_of(
        st.none(),
        st.lists(
            st.fixed_dictionaries(
                {
                    "hreflang": st.sampled_from(
                        ["de", "de-AT", "x-default", "EN-us", "deu", "zh-Hant-TW", "de-12345678"]
                    ),
                    "href": urls,
                }
            ),
            max_size=3,
        ),
    ),
    st.one_of(
        st.dictionaries(st.just("de"), st.just("x")),
        st.lists(
            st.fixed_dictionaries(
                {
                    "hreflang": st.one_of(
                        st.integers(), st.sampled_from(["e", "engl", "de-", "de-123456789", "x-defaults"])
                    ),
                    "href": urls,
                }
            ),
            min_size=1,
            max_size=2,
        ),
    ),
)
documents = st.fixed_dictionaries(
    {
        "section": mostly(
            st.sampled_from(["books", "a" * 64, "x_y-1"]), st.sampled_from(["Books", "a" * 65, "", "bücher", 3])
        ),
        "key": mostly(
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=6),
            st.one_of(st.text(max_size=6), st.integers(), st.sampled_from(["k" * 512, "k" * 513])),
        ),
        "loc": urls,
    },
    optional={
        "lastmod": lastmods,
        "changefreq": mostly(
            st.sampled_from(["always", "hourly", "daily", "weekly", "monthly", "yearly", "never"]),
            st.sampled_from(["Weekly", "", 3]),
        ),
        "priority": mostly(
            st.one_of(st.floats(0, 1), st.integers(0, 1), st.sampled_from([0.25, 0.35, 0.05, 1e-300, -0.0])),
            st.one_of(st.floats(), st.integers(-1, 2), st.booleans()),
        ),
        "images": images,
        "alternates": alternates,
        "version": mostly(
            st.integers(0, 2**63 - 1), st.one_of(st.integers(-1, 2**64), st.booleans(), st.floats(0, 10))
        ),
        "op": st.sampled_from(["upsert", "delete"]),
        "extra": st.integers(),
    },
)


@given(documents, st.sampled_from([RULES, ANY_HOST, Rules(RULES.allowed_hosts, ignore_extra_fields=True)]))
@settings(max_examples=4000, deadline=None)
def test_what_the_fast_path_accepts_it_renders_as_the_reference_does(obj: dict[str, Any], rules: Rules) -> None:
    assert FAST is not None
    fast = FAST(obj, rules.allowed_hosts, not rules.ignore_extra_fields)
    if fast is not None:
        same(fast, reference(obj, rules))


EDGES = [
    {"loc": "https://LIBRER.io:8443/a?b=1&c='2'#frag"},  # escaped; an upper-case host is still allowed
    {"loc": "http://librer.io/%2Fa%7e", "lastmod": "2024-05-17T10:00:00Z"},  # Z becomes +00:00
    {"lastmod": "2024-02-28T23:59:59.5-14:00", "priority": 0},
    {"lastmod": "1970-01-01T00:00:00.123456+14:00", "priority": 1, "changefreq": "never"},
    {"lastmod": "2255-01-01T00:00:00+00:00", "priority": 0.25},  # rounded as format() rounds
    {"lastmod": "1700-01-01T00:00:00+00:00", "priority": 0.30000000000000004},
    {"images": [{"loc": "https://cdn.other.example/i.jpg", "title": "A <b> & \"c\" 'd'", "caption": "x"}] * 2},
    {
        "alternates": [
            {"hreflang": "x-default", "href": "https://librer.io/"},
            {"hreflang": "zh-Hant-TW", "href": "https://librer.io/zh?q=a&b"},
        ],
        "version": 2**63 - 1,
    },
    {"key": "k" * 512, "section": "a" * 64, "version": 0, "images": [], "alternates": []},
]


@pytest.mark.parametrize("changes", EDGES)
def test_the_fast_path_takes_the_common_shape_to_its_edges(changes: dict[str, Any]) -> None:
    obj = {"section": "books", "key": "1", "loc": "https://librer.io/books/1", **changes}
    assert FAST is not None
    fast = FAST(obj, RULES.allowed_hosts)
    assert fast is not None, obj
    same(fast, reference(obj, RULES))


DECLINED = [  # left to the Python code: repairs (IRIs, dates), and every refusal with its reason
    {"loc": "https://librer.io/bücher"},
    {"loc": "https://librer.io/a b"},
    {"loc": "https://evil.example/a"},
    {"lastmod": "2024-05-17"},
    {"lastmod": "2024-05-29T10:00:00Z"},  # valid, but needs the calendar
    {"lastmod": "2300-01-01T00:00:00+00:00"},  # its timestamp is past a double's exact microseconds
    {"key": 17},
    {"key": "bücher"},
    {"priority": True},
    {"priority": -0.0},  # written "-0.0", as format() writes it
    {"version": True},
    {"version": -1},
    {"images": [{"loc": "https://librer.io/i.jpg", "title": "é"}]},
    {"alternates": [{"hreflang": "deutsch", "href": "https://librer.io/de"}]},
    # Fields nobody reads: the Python code refuses them, naming the field.
    {"lastMod": "2024-05-17T10:00:00+00:00"},
    {"video": {"title": "t"}, "news": {}},
    {"images": [{"loc": "https://librer.io/i.jpg", "titel": "x"}]},
    {"alternates": [{"hreflang": "de", "href": "https://librer.io/de", "rel": "alternate"}]},
]


@pytest.mark.parametrize("changes", DECLINED)
def test_the_fast_path_leaves_the_rest_to_the_python_code(changes: dict[str, Any]) -> None:
    obj = {"section": "books", "key": "1", "loc": "https://librer.io/books/1", **changes}
    assert FAST is not None
    assert FAST(obj, RULES.allowed_hosts) is None
    with python_only():
        try:
            expected: DocumentRow | InvalidDocument = document_row(obj, RULES)
        except InvalidDocument as exc:
            expected = exc
    try:
        got: DocumentRow | InvalidDocument = document_row(obj, RULES)
    except InvalidDocument as exc:
        got = exc
    assert str(got) == str(expected)  # the same row, or the same reason


def test_the_synthetic_catalog_and_its_changes_take_the_fast_path() -> None:
    """The benchmarks' documents are the common shape: the fast path must take every one of them."""
    rules = Rules(frozenset({synthetic.HOST}))
    events = [orjson.loads(raw) for raw in synthetic.changes(2_000, 1_000)]
    for obj in [*synthetic.catalog(1_000), *(e for e in events if e.get("op") != "delete")]:
        assert FAST is not None
        fast = FAST(obj, rules.allowed_hosts)
        assert fast is not None, obj
        same(fast, reference(obj, rules))


def parsed(chunk: Chunk, rules: Rules) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, bytes]]]:
    """parse_chunk's runs (their packs unpacked) and rejects."""
    out = parse_chunk(rules, chunk)
    return [(r.section, r.keys, r.versions, r.sizes, unpack(r.pack)) for r in out.runs], out.rejects


LINES = [orjson.dumps(d) for d in synthetic.catalog(40)] + [
    b"",
    b"   ",
    b"\t" + orjson.dumps(synthetic.document(50)) + b" \r",
    b"{not json",
    b"[1, 2]",
    b"17",
    orjson.dumps({**synthetic.document(51), "op": "delete"}),
    orjson.dumps({**synthetic.document(52), "op": "upsert"}),
    orjson.dumps({**synthetic.document(53), "op": 1}),
    orjson.dumps({**synthetic.document(54), "loc": "https://x.io/a"}),
    orjson.dumps({**synthetic.document(55), "loc": "https://librer.io/bücher"}),  # repaired by the Python code
    orjson.dumps(synthetic.document(3, version=7)),  # a key again: order decides which copy wins
    orjson.dumps({**synthetic.document(56), "lastMod": "2024"}),  # refused by Python, naming the field
]


@given(st.lists(st.sampled_from(LINES), max_size=60))
@settings(max_examples=300, deadline=None)
def test_a_chunk_parses_the_same_with_the_c_loop_as_without(lines: list[bytes]) -> None:
    """Runs of common lines go through the C loop, the rest through Python: same runs in the same order, same
    rejects with the same line numbers and reasons."""
    chunk = Chunk("source.jsonl", 7, b"\n".join(lines))
    rows = Chunk("query", 1, [orjson.loads(line) for line in lines if line.strip() and line != b"{not json"])
    rules = Rules(frozenset({synthetic.HOST}))
    for source in (chunk, rows):
        native = parsed(source, rules)
        with python_only():
            assert native == parsed(source, rules)


@pytest.mark.parametrize("margin", [-1, 0, 1])
def test_a_fragment_over_max_size_is_left_to_the_python_code_which_refuses_it(margin: int) -> None:
    """Rules.max_size (what one shard can hold): the C paths decline a bigger fragment, the Python code refuses
    it with its reason; at or under it, both give the same row."""
    obj = synthetic.document(7)
    size = reference(obj, RULES_SYNTHETIC)[6]  # type: ignore[index]
    rules = Rules(RULES_SYNTHETIC.allowed_hosts, max_size=size + margin)
    assert FAST is not None and FAST_ROWS is not None
    fast = FAST(obj, rules.allowed_hosts, True, rules.max_size)
    expected = reference(obj, rules)
    if margin < 0:
        assert fast is None and expected is None
        with pytest.raises(InvalidDocument, match="more than one shard can hold"):
            document_row(obj, rules)
    else:
        assert fast is not None
        same(fast, expected)
    lines = [orjson.dumps(synthetic.document(n)) for n in (5, 6)] + [orjson.dumps(obj)]
    native = parsed(Chunk("source.jsonl", 1, b"\n".join(lines)), rules)
    with python_only():
        assert native == parsed(Chunk("source.jsonl", 1, b"\n".join(lines)), rules)
    assert len(native[1]) == (1 if margin < 0 else 0)


RULES_SYNTHETIC = Rules(frozenset({synthetic.HOST}))


@pytest.mark.parametrize(
    "loc",
    [
        "https://bücher.example/a",
        "https://xn--bcher-kva.example/a",
        "https://XN--BCHER-KVA.example/a",
        "https://b%C3%BCcher.example/a",
        "https://bücher.example/ü",
        "https://b%FFcher.example/a",
        "https://librer.io/a",
    ],
)
@pytest.mark.parametrize("allowed", ["bücher.example", "xn--bcher-kva.example"])
def test_idn_hosts_give_the_same_row_or_reason_on_both_paths(loc: str, allowed: str) -> None:
    rules = Settings(allowed_hosts=(allowed,)).rules
    obj = {
        "section": "books",
        "key": "1",
        "loc": loc,
        "images": [{"loc": loc}],
        "alternates": [{"hreflang": "de", "href": loc}],
    }
    with python_only():
        try:
            expected: DocumentRow | str = document_row(obj, rules)
        except InvalidDocument as exc:
            expected = str(exc)
    try:
        got: DocumentRow | str = document_row(obj, rules)
    except InvalidDocument as exc:
        got = str(exc)
    assert got == expected
    if "bcher" in loc and "%FF" not in loc:
        assert isinstance(got, tuple) and got[3].startswith("https://xn--bcher-kva.example/"), got


def test_a_line_over_1_mib_is_left_to_the_python_code_which_refuses_it() -> None:
    big = orjson.dumps({**synthetic.document(9), "pad": "x" * (1024 * 1024)})
    chunk = Chunk("source.jsonl", 1, b"\n".join([orjson.dumps(synthetic.document(8)), big]))
    native = parsed(chunk, RULES_SYNTHETIC)
    with python_only():
        assert native == parsed(chunk, RULES_SYNTHETIC)
    assert [(source, "at most 1048576 allowed" in reason) for source, reason, _raw in native[1]] == [
        ("source.jsonl:2", True)
    ]
