"""Video blocks: what is refused (with its reason, deprecated tags included) and what a valid one becomes: the
<video:video> elements of the document's <url>, valid against Google's video XSD with the core schema, through
the apply path and the rebuild alike. The npm sitemap package reads them back in tests/test_media_readers.py."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.events import parse_event
from sitemap_keeper.snapshot.document import DOCUMENT_FIELDS, InvalidDocument, Rules
from sitemap_keeper.snapshot.render import URLSET_CLOSE, URLSET_OPEN, document_row
from sitemap_keeper.snapshot.settings import Settings
from sitemap_keeper.snapshot.video import FIELDS
from tests.support import NS, validate

HOST = "tube.example"
RULES = Rules(frozenset({HOST}))
LOC = f"https://{HOST}/watch/1"


def video(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "thumbnail_loc": "https://cdn.example/t.jpg",
        "title": "A title",
        "description": "A description",
        "content_loc": "https://cdn.example/v.mp4",
    }
    return {k: v for k, v in {**base, **fields}.items() if v is not None}


BAD = [
    ("yes", "video must be a list of objects"),
    (["x"], "video[0].entry must be an object"),
    ([video(thumbnail_loc=None)], "video[0].thumbnail_loc is required"),
    ([video(content_loc=None)], "video[0].content_loc or player_loc is required"),
    ([video(content_loc=LOC)], "video[0].content_loc must not be the page's own loc"),
    ([video(title="x" * 101)], "video[0].title is 101 characters, at most 100"),
    ([video(description=None)], "video[0].description is required"),
    ([video(description="x" * 2049)], "video[0].description is 2049 characters, at most 2048"),
    ([video(), video(title="a\x00")], "video[1].title contains control characters"),
    ([video(duration=0)], "video[0].duration must be an integer from 1 to 28800"),
    ([video(duration=28801)], "video[0].duration must be an integer from 1 to 28800"),
    ([video(duration=1.5)], "video[0].duration must be an integer"),
    ([video(rating=5.1)], "video[0].rating must be a number from 0.0 to 5.0"),
    ([video(view_count=-1)], "video[0].view_count must be an integer from 0"),
    ([video(expiration_date="tomorrow")], "video[0].expiration_date is not a W3C datetime"),
    ([video(publication_date="2026-02-30")], "video[0].publication_date is not a valid date"),
    ([video(family_friendly="maybe")], "video[0].family_friendly must be true or false"),
    (
        [video(restriction={"relationship": "allow", "countries": ["USA"]})],
        "video[0].restriction.countries must be ISO 3166 two-letter codes",
    ),
    (
        [video(restriction={"relationship": "maybe", "countries": ["US"]})],
        "video[0].restriction.relationship must be allow or deny",
    ),
    ([video(restriction={"countries": ["US"]})], "video[0].restriction must be an object with exactly"),
    (
        [video(platform={"relationship": "allow", "platforms": ["car"]})],
        "video[0].platform.platforms must be among web, mobile, tv",
    ),
    (
        [video(uploader={"name": "U", "info": "https://elsewhere.example/u"})],
        "video[0].uploader.info must be on the same host",
    ),
    ([video(uploader={"info": f"https://{HOST}/u"})], "video[0].name is required"),
    ([video(tags=["t"] * 33)], "video[0].tags has 33 entries, at most 32"),
    ([video(tags=[""])], "video[0].tags[0] must be a non-empty string"),
    ([video(category="Grilling")], "video[0].category is deprecated by Google"),
    ([video(gallery_loc="https://cdn.example/g")], "video[0].gallery_loc is deprecated by Google"),
    ([video(price=[{"currency": "EUR", "value": 1}])], "video[0].price is deprecated by Google"),
    ([video(tvshow={})], "video[0].tvshow is deprecated by Google"),
    ([video(id="x")], "video[0].id is deprecated by Google"),
    ([video(autoplay="ap=1")], "video[0].autoplay is deprecated by Google"),
    ([video(color="red")], "video[0].color is not a video field"),
    ([video(thumbnail_loc="ftp://cdn.example/t.jpg")], "video[0].thumbnail_loc must be an absolute http"),
]


@pytest.mark.parametrize(("videos", "reason"), BAD)
def test_video_refused_with_its_reason(videos: Any, reason: str) -> None:
    doc = {"section": "v", "key": "1", "loc": LOC, "video": videos}
    with pytest.raises(InvalidDocument) as info:
        parse_event(orjson.dumps(doc), RULES)
    assert str(info.value).startswith(reason), str(info.value)


def test_every_field_in_the_xsd_order() -> None:
    full = video(
        player_loc=f"https://{HOST}/player?id=1&x=2",
        duration=28800,
        expiration_date="2027-01-01T00:00Z",
        rating=4.256,
        view_count=0,
        publication_date="2026-01-01",
        family_friendly="YES",
        restriction={"relationship": "deny", "countries": ["us", "CA", "US"]},
        platform={"relationship": "allow", "platforms": ["web", "TV"]},
        requires_subscription=True,
        uploader={"name": "Grill & Co", "info": f"https://{HOST}/u?a=1&b=2"},
        live=False,
        tags=["steak", "<summer>"] + [f"t{i}" for i in range(30)],
    )
    xml = document_row({"section": "v", "key": "1", "loc": LOC, "video": [full, video(title="Second")]}, RULES)[7]
    root = validate("shard", (URLSET_OPEN + xml + URLSET_CLOSE).encode())
    first, second = root.findall("sm:url/video:video", NS)
    assert [child.tag.split("}")[1] for child in first] == [
        "thumbnail_loc",
        "title",
        "description",
        "content_loc",
        "player_loc",
        "duration",
        "expiration_date",
        "rating",
        "view_count",
        "publication_date",
        *["tag"] * 32,
        "family_friendly",
        "restriction",
        "requires_subscription",
        "uploader",
        "platform",
        "live",
    ]
    text = {child.tag.split("}")[1]: (child.text, dict(child.attrib)) for child in first}
    assert text["player_loc"] == (f"https://{HOST}/player?id=1&x=2", {})
    assert text["expiration_date"] == ("2027-01-01T00:00:00+00:00", {})
    assert text["rating"] == ("4.26", {}) and text["family_friendly"] == ("yes", {})
    assert text["restriction"] == ("US CA", {"relationship": "deny"})
    assert text["platform"] == ("web tv", {"relationship": "allow"})
    assert text["uploader"] == ("Grill & Co", {"info": f"https://{HOST}/u?a=1&b=2"})
    assert (text["requires_subscription"][0], text["live"][0]) == ("yes", "no")
    assert second.findtext("video:title", namespaces=NS) == "Second"


def test_the_known_fields_include_news_and_video() -> None:
    assert {"news", "video"} <= DOCUMENT_FIELDS


def test_one_video_change_rewrites_one_shard(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path}/m.db",
        base_url="http://127.0.0.1:8080/sitemaps/",
        allowed_hosts=(HOST,),
        max_urls=10,
        workers=1,
    )
    app = App(settings)
    try:
        docs = [
            {
                "section": "v",
                "key": str(i),
                "loc": f"https://{HOST}/watch/{i}",
                "version": 1,
                "video": [video(title=f"Video {i}")],
            }
            for i in range(50)
        ]
        assert app.applier.apply_raw([("t", orjson.dumps(d)) for d in docs]).applied == 50
        app.publisher.publish()
        changed = dict(docs[17], version=2, video=[video(title="Retitled"), video(title="Added")])
        assert app.applier.apply_raw([("t", orjson.dumps(changed))]).applied == 1
        result = app.publisher.publish()
        assert (result.rendered, result.copied) == (1, 4)
        assert result.generation is not None
        shard = gzip.decompress(app.store.get(result.generation, "sitemap-v-2.xml.gz"))
        assert b"<video:title>Retitled</video:title>" in shard and b"<video:title>Added</video:title>" in shard
    finally:
        app.close()


ODD: list[Any] = [
    None,
    True,
    0,
    -1,
    2**64,
    1.5,
    float("1e308"),
    "",
    "x",
    "yes",
    "allow",
    "https://cdn.example/x",
    [],
    ["x"],
    [None],
    [["x"]],
    {},
    {"x": 1},
    {"relationship": ["allow"], "countries": "US"},
    {"relationship": "allow", "countries": [1]},
    {"name": ["n"]},
    "\ud800",
    "a\x00b",
]


@pytest.mark.parametrize("field", sorted({*FIELDS, "publication", "publication_date", "title", "name", "language"}))
def test_odd_values_are_refused_with_a_reason_never_an_exception(field: str) -> None:
    """Any JSON value in any field of a video or a news block: accepted, or refused with InvalidDocument."""
    for odd in ODD:
        news = {"publication": {"name": "N", "language": "en"}, "publication_date": "2026-12-01", "title": "T"}
        if field in news:
            news[field] = odd
        elif field in ("name", "language"):
            news["publication"] = {**news["publication"], field: odd}
        docs = [
            {"section": "v", "key": "1", "loc": LOC, "news": news},
            {"section": "v", "key": "1", "loc": LOC, "video": [{**video(), field: odd}]},
        ]
        for doc, where in zip(docs, ("news", "video[0]."), strict=True):
            try:
                parse_event(json.dumps(doc), RULES)  # json: 2**64 and lone surrogates too
            except InvalidDocument as exc:  # one line naming the block (or the JSON itself)
                reason = str(exc)
                assert reason.startswith((where, "not valid JSON")) and "\n" not in reason, reason
