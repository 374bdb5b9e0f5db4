"""Video sitemaps: a document's `video` list, validated to what Google reads (its video sitemap documentation and
the sitemap-video/1.1 XSD); snapshot/render.py writes the `<video:video>` elements into the document's `<url>`.

Tags Google has deprecated (category, gallery_loc, price, tvshow, id, content_segment_loc, and player_loc's
allow_embed and autoplay) are refused with a reason saying so: the document goes to the dead letters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sitemap_keeper.snapshot.document import (
    ANY_HOST,
    InvalidDocument,
    bounded_list,
    check_text,
    check_url,
    normalise_lastmod,
)

VIDEO_NS = "http://www.google.com/schemas/sitemap-video/1.1"
MAX_VIDEOS = 100  # per <url>: a bound for the fragment's size, far above any real page
MAX_TITLE = 100  # the XSD's maxLength
MAX_DESCRIPTION = 2048
MAX_UPLOADER = 255
MAX_TAGS = 32
MAX_DURATION = 28_800  # seconds (8 hours)
FIELDS = frozenset(
    {
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
        "family_friendly",
        "restriction",
        "platform",
        "requires_subscription",
        "uploader",
        "live",
        "tags",
    }
)
DEPRECATED = frozenset(
    {"category", "gallery_loc", "price", "tvshow", "id", "content_segment_loc", "allow_embed", "autoplay"}
)
RELATIONSHIPS = frozenset({"allow", "deny"})
PLATFORMS = ("web", "mobile", "tv")
COUNTRY_RE = re.compile(r"[A-Z]{2}")  # ISO 3166-1 alpha-2
FRACTION_RE = re.compile(r"\.\d+(?=[+-]\d\d:\d\d$)")


@dataclass(frozen=True, slots=True)
class Listed:
    """A restriction (countries) or platform list and whether it allows or denies them."""

    relationship: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Video:
    thumbnail_loc: str
    title: str
    description: str
    content_loc: str | None = None
    player_loc: str | None = None
    duration: int | None = None
    expiration_date: str | None = None
    rating: str | None = None  # as written: a decimal from 0 to 5, at most two places
    view_count: int | None = None
    publication_date: str | None = None
    family_friendly: str | None = None  # yes / no
    restriction: Listed | None = None
    platform: Listed | None = None
    requires_subscription: str | None = None
    uploader: str | None = None
    uploader_info: str | None = None
    live: str | None = None
    tags: tuple[str, ...] = ()


def parse_videos(value: Any, loc: str) -> tuple[Video, ...]:
    """The videos of a document whose `loc` is checked, or InvalidDocument naming the entry and the field."""
    bounded_list(value, "video", MAX_VIDEOS, " of objects")
    videos = []
    for i, item in enumerate(value):
        try:
            videos.append(_video(item, loc))
        except InvalidDocument as exc:
            raise InvalidDocument(f"video[{i}].{exc}") from None
    return tuple(videos)


def _video(item: Any, loc: str) -> Video:
    if not isinstance(item, dict):
        raise InvalidDocument("entry must be an object")
    for field in item:
        if field in DEPRECATED:
            raise InvalidDocument(f"{field} is deprecated by Google and no longer read: remove it")
        if field not in FIELDS:
            raise InvalidDocument(f"{field} is not a video field; known: {', '.join(sorted(FIELDS))}"[:300])
    content, player = _url(item, "content_loc"), _url(item, "player_loc")
    if content is None and player is None:
        raise InvalidDocument("content_loc or player_loc is required (at least one)")
    for field, url in (("content_loc", content), ("player_loc", player)):
        if url == loc:
            raise InvalidDocument(f"{field} must not be the page's own loc")
    uploader, info = _uploader(item.get("uploader"), loc)
    thumbnail = _url(item, "thumbnail_loc")
    if thumbnail is None:
        raise InvalidDocument("thumbnail_loc is required")
    return Video(
        thumbnail,
        _text(item, "title", MAX_TITLE, required=True) or "",
        _text(item, "description", MAX_DESCRIPTION, required=True) or "",
        content,
        player,
        _integer(item, "duration", 1, MAX_DURATION),
        _date(item, "expiration_date"),
        _rating(item.get("rating")),
        _integer(item, "view_count", 0, 2**63 - 1),
        _date(item, "publication_date"),
        _yes_no(item, "family_friendly"),
        _listed(item.get("restriction"), "restriction", "countries"),
        _listed(item.get("platform"), "platform", "platforms"),
        _yes_no(item, "requires_subscription"),
        uploader,
        info,
        _yes_no(item, "live"),
        _tags(item.get("tags")),
    )


def _url(item: dict[str, Any], field: str) -> str | None:
    value = item.get(field)
    return None if value is None else check_url(value, ANY_HOST, field)  # videos and thumbnails live on CDNs


def _text(item: dict[str, Any], field: str, limit: int, required: bool = False) -> str | None:
    value = check_text(item.get(field), field)
    if value is None or not value.strip():
        if required:
            raise InvalidDocument(f"{field} is required (a non-empty string)")
        return None
    if len(value) > limit:
        raise InvalidDocument(f"{field} is {len(value)} characters, at most {limit} allowed")
    return value


def _integer(item: dict[str, Any], field: str, low: int, high: int) -> int | None:
    value = item.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidDocument(f"{field} must be an integer from {low} to {high}, got {value!r}"[:200])
    return value


def _date(item: dict[str, Any], field: str) -> str | None:
    try:
        value = normalise_lastmod(item.get(field))
    except InvalidDocument as exc:
        raise InvalidDocument(str(exc).replace("lastmod", field, 1)) from None
    return None if value is None else FRACTION_RE.sub("", value)  # whole seconds, as for news


def _rating(value: Any) -> str | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= 5
    ):
        raise InvalidDocument(f"rating must be a number from 0.0 to 5.0, got {value!r}"[:200])
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _yes_no(item: dict[str, Any], field: str) -> str | None:
    value = item.get(field)
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value.lower() in ("yes", "no"):
        return value.lower()
    raise InvalidDocument(f'{field} must be true or false (or "yes", "no"), got {value!r}'[:200])


def _listed(value: Any, field: str, key: str) -> Listed | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"relationship", key}:
        raise InvalidDocument(f"{field} must be an object with exactly a relationship and {key}")
    relationship, values = value["relationship"], value[key]
    if not isinstance(relationship, str) or relationship not in RELATIONSHIPS:
        raise InvalidDocument(f"{field}.relationship must be allow or deny, got {relationship!r}"[:200])
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise InvalidDocument(f"{field}.{key} must be a non-empty list of strings")
    if key == "countries":
        out = [v.upper() for v in values]
        bad = [v for v in out if not COUNTRY_RE.fullmatch(v)]
        if bad:
            raise InvalidDocument(f"{field}.countries must be ISO 3166 two-letter codes, got {bad[0]!r}"[:200])
    else:
        out = [v.lower() for v in values]
        bad = [v for v in out if v not in PLATFORMS]
        if bad:
            raise InvalidDocument(f"{field}.platforms must be among web, mobile, tv, got {bad[0]!r}"[:200])
    return Listed(relationship, tuple(dict.fromkeys(out)))  # each once, in the order given


def _uploader(value: Any, loc: str) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict) or not set(value) <= {"name", "info"}:
        raise InvalidDocument("uploader must be an object with a name and an optional info URL")
    name = _text(value, "name", MAX_UPLOADER, required=True)
    info = value.get("info")
    if info is None:
        return name, None
    info = check_url(info, ANY_HOST, "uploader.info")
    if (urlsplit(info).hostname or "") != (urlsplit(loc).hostname or ""):
        raise InvalidDocument("uploader.info must be on the same host as the page's loc (Google's rule)")
    return name, info


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    bounded_list(value, "tags", MAX_TAGS, " of strings")
    tags = []
    for i, tag in enumerate(value):
        text = check_text(tag, f"tags[{i}]")
        if text is None or not text.strip():
            raise InvalidDocument(f"tags[{i}] must be a non-empty string")
        tags.append(text)
    return tuple(tags)
