"""A few HTML helpers for the pages a person reads (snapshot/pages.py): every text goes through `esc`.

A function here takes text and returns markup; markup is only ever built from escaped text and the fixed
strings below, so a title like `<script>` in a sitemap is shown as text. No script is ever sent: the pages'
Content-Security-Policy (HEADERS) forbids any, and styles are the one inline sheet in STYLE.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1a1a1a; background: #fff; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; } h3 { font-size: 1em; }
table { border-collapse: collapse; margin: .4em 0; }
th, td { border: 1px solid #c8c8c8; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #e8eef6; } tbody tr:nth-child(even) { background: #f6f6f6; }
td { overflow-wrap: anywhere; max-width: 40em; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #666; } .nowrap { white-space: nowrap; } nav a, nav span { margin-right: 1em; }
ul.plain { margin: 0; padding-left: 1.1em; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def document(title: str, body: str) -> bytes:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    ).encode()


def link(href: str, text: str) -> str:
    """A link to one of our own paths (starting with one `/`) or an http(s) URL; anything else is text only."""
    own = href.startswith("/") and not href.startswith("//")
    if not own and urlsplit(href).scheme.lower() not in ("http", "https"):
        return esc(text)
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: frozenset[int] = frozenset(),
    css_id: str | None = None,
) -> str:
    """Headers are text; each cell is markup already (built with `esc`); `numeric` columns align right."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>\n"
        for row in rows
    )
    ident = f' id="{esc(css_id)}"' if css_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>"


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{seconds:.0f} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min" if s < 172_800 else f"{s // 86400} days"


def scalar(key: str, value: object) -> str:
    """A JSON scalar as text; by the key's convention `*_at`/`*_since` is a Unix time, `*_seconds` a duration."""
    if value is None:
        return '<span class="muted">—</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and (key.endswith("_at") or key.endswith("_since")):
        return esc(when(float(value)))
    if isinstance(value, int | float) and key.endswith("_seconds"):
        return esc(duration(float(value)))
    return esc(value)


def any_value(key: str, value: Any) -> str:
    """Any JSON value as markup: an object as a name/value table, a list of objects as a table, a list as
    a list. What `sitemaps status --json` gains later is shown this way without more code."""
    if isinstance(value, Mapping):
        if not value:
            return '<span class="muted">(none)</span>'
        return table(("name", "value"), ((esc(k), any_value(str(k), v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        if not value:
            return '<span class="muted">(none)</span>'
        if all(isinstance(v, Mapping) for v in value):
            columns = list(dict.fromkeys(k for v in value for k in v))
            return table(columns, ([any_value(c, v.get(c)) for c in columns] for v in value))
        return '<ul class="plain">' + "".join(f"<li>{any_value(key, v)}</li>" for v in value) + "</ul>"
    return scalar(key, value)


def title_case(key: str) -> str:
    return key.replace("_", " ").capitalize()
