"""The mapping file: which rows of which tables are the site's documents, and how a row becomes a document.

One mapping serves both paths: `sitemaps rebuild --mapping` turns it into one query per section, and the
Debezium decoder (incremental/debezium.py) applies it to the row images of change events. So the filter
(`where`) has a language that means the same in SQL and on a row image:

    column = literal       column != literal  (or <>)      column is null       column is not null
    column                 (the same as `column = true`)    not column           (the same as `column = false`)

joined by `and`; a literal is a 'quoted string' ('' for a quote), an integer, true or false. As in SQL, a
comparison with a NULL is not true: `status != 'draft'` leaves out a row whose status is NULL. Anything else
(or, <, in, functions, parentheses) is refused when the mapping is loaded.

    sections:
      books:
        table: public.books              # schema.table (MySQL: database.table)
        key: id                          # or a list of columns
        loc: "https://librer.io/books/{slug}"   # {column} is percent-encoded as a path segment; {column:raw} is not
        lastmod: updated_at              # optional, like changefreq, priority, images and alternates
        where: "published and deleted_at is null"
        types: {updated_at: micro_timestamp}    # for Debezium messages without the schema envelope
"""

from __future__ import annotations

import datetime as dt
import re
import string
import uuid
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import yaml
from sqlalchemy import ColumnClause, ColumnElement, Select, and_, column, false, literal, select, table, true

from sitemap_keeper.snapshot.document import SECTION_RE, InvalidDocument

IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
TOKEN_RE = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+)(?![\w.])|(?P<op>!=|<>|=)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_$]*))"
)
SEGMENT_SAFE_RE = re.compile(r"[A-Za-z0-9_.~-]+")  # what quote(value, safe="") leaves as it is
SUPPORTED = (
    "supported: column = literal, column != literal, column is [not] null, column, not column, "
    "joined by and; literals 'text', integers, true, false"
)
# Debezium's temporal semantic types, by the names a mapping may declare them under (`types:`).
TEMPORAL_TYPES = {
    "timestamp": "io.debezium.time.Timestamp",
    "micro_timestamp": "io.debezium.time.MicroTimestamp",
    "nano_timestamp": "io.debezium.time.NanoTimestamp",
    "zoned_timestamp": "io.debezium.time.ZonedTimestamp",
    "date": "io.debezium.time.Date",
}
OPTIONAL_FIELDS = ("lastmod", "changefreq", "priority", "images", "alternates")
SECTION_KEYS = frozenset({"table", "key", "loc", "where", "types", *OPTIONAL_FIELDS})
Literal = str | int | bool | None


class MappingError(ValueError):
    """The mapping file cannot be used; the message names the file, the place and the problem, on one line."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One `column <op> literal` of a filter; `op` is one of =, !=, is null, is not null."""

    column: str
    op: str
    value: Literal = None

    def holds(self, row: MappingABC[str, Any]) -> bool:
        """The condition on a row image, as SQL decides it (a comparison with NULL is not true)."""
        if self.column not in row:
            raise InvalidDocument(f"the row has no column {self.column} (used by the mapping's where)")
        v = row[self.column]
        if self.op == "is null":
            return v is None
        if self.op == "is not null":
            return v is not None
        if v is None:
            return False
        return bool(v == self.value) == (self.op == "=")

    def sql(self) -> ColumnElement[bool]:
        col: ColumnClause[Any] = column(self.column)
        if self.op == "is null":
            return col.is_(None)
        if self.op == "is not null":
            return col.is_not(None)
        value = (true() if self.value else false()) if isinstance(self.value, bool) else literal(self.value)
        return col == value if self.op == "=" else col != value


@dataclass(frozen=True, slots=True)
class Placeholder:
    column: str
    raw: bool  # inserted as is (a path of several segments, say), not percent-encoded as one segment


@dataclass(frozen=True, slots=True)
class SectionMapping:
    section: str
    schema: str
    table: str
    key: tuple[str, ...]
    loc: tuple[str | Placeholder, ...]  # the template: literal text and placeholders in turn
    where: tuple[Condition, ...]
    types: dict[str, str]  # column -> Debezium semantic type name, declared for messages without a schema
    lastmod: str | None = None
    changefreq: str | None = None
    priority: str | None = None
    images: str | None = None
    alternates: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    def columns(self) -> list[str]:
        """Every column the section reads, once each, in a stable order."""
        names = [
            *self.key,
            *(p.column for p in self.loc if isinstance(p, Placeholder)),
            *(c for c in (getattr(self, f) for f in OPTIONAL_FIELDS) if c),
            *(c.column for c in self.where),
        ]
        return list(dict.fromkeys(names))

    def query(self) -> Select[Any]:
        """The section's documents: SELECT its columns FROM its table WHERE its filter (values bound)."""
        source = table(self.table, *(column(c) for c in self.columns()), schema=self.schema)
        query = select(*source.c)
        return query.where(and_(*(c.sql() for c in self.where))) if self.where else query

    def matches(self, row: MappingABC[str, Any]) -> bool:
        return all(c.holds(row) for c in self.where)

    def has_key(self, row: MappingABC[str, Any] | None) -> bool:
        return row is not None and all(row.get(c) is not None for c in self.key)

    def key_of(self, row: MappingABC[str, Any]) -> str:
        """The document key: the key column's value; several columns' values percent-encoded, joined by /."""
        if len(self.key) == 1:
            value = row.get(self.key[0])
            if type(value) is str:
                return value
            return str(value) if type(value) is int else _text(row, self.key[0], "key")
        return "/".join(quote(_text(row, c, "key"), safe="") for c in self.key)

    def document(self, row: MappingABC[str, Any], version: int | None = None) -> dict[str, Any]:
        """The document fields of a row that passes the filter (validated later, as any document is)."""
        doc: dict[str, Any] = {"section": self.section, "key": self.key_of(row), "loc": self.loc_of(row)}
        if self.lastmod:
            doc["lastmod"] = lastmod_text(row.get(self.lastmod), self.lastmod)
        if self.changefreq:
            doc["changefreq"] = row.get(self.changefreq)
        if self.priority:
            value = row.get(self.priority)
            doc["priority"] = float(value) if isinstance(value, Decimal) else value
        if self.images:
            doc["images"] = _images(_json(row.get(self.images)))
        if self.alternates:
            doc["alternates"] = _alternates(_json(row.get(self.alternates)))
        if version is not None:
            doc["version"] = version
        return doc

    def loc_of(self, row: MappingABC[str, Any]) -> str:
        out = []
        for part in self.loc:
            if isinstance(part, str):
                out.append(part)
                continue
            value = row.get(part.column)
            if type(value) is int:
                out.append(str(value))  # digits and a sign: nothing to encode
                continue
            value = _text(row, part.column, "loc")
            out.append(value if part.raw or SEGMENT_SAFE_RE.fullmatch(value) else quote(value, safe=""))
        return "".join(out)


@dataclass(frozen=True, slots=True)
class Mapping:
    sections: tuple[SectionMapping, ...]

    def for_table(self, qualified: str) -> tuple[SectionMapping, ...]:
        """The sections a table feeds (`schema.table`); none for a table the mapping does not read."""
        return tuple(s for s in self.sections if s.qualified == qualified)

    @property
    def tables(self) -> dict[str, tuple[SectionMapping, ...]]:
        return {s.qualified: self.for_table(s.qualified) for s in self.sections}


def _text(row: MappingABC[str, Any], name: str, what: str) -> str:
    """A key or loc column's value as text: strings, integers and UUIDs; else InvalidDocument."""
    if name not in row or row[name] is None:
        raise InvalidDocument(f"{what} column {name} is missing or null")
    value = row[name]
    if isinstance(value, str):
        return value
    if (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, uuid.UUID):
        return str(value)
    raise InvalidDocument(f"{what} column {name} has a value of the wrong type: {type(value).__name__}")


def lastmod_text(value: Any, name: str) -> str | None:
    """A lastmod column's value as W3C text: a datetime in UTC (one without a zone is UTC), a date, or text."""
    if value is None:
        return None
    if isinstance(value, str):  # SQL's `2024-06-01 08:30:00` (SQLite keeps timestamps as text) as W3C's
        return value[:10] + "T" + value[11:] if len(value) > 10 and value[10] == " " else value
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    hint = " (declare its type in the mapping's types:)" if isinstance(value, int) else ""
    raise InvalidDocument(f"lastmod column {name} has a value of the wrong type: {type(value).__name__}{hint}")


def _json(value: Any) -> Any:
    if isinstance(value, str | bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidDocument(f"not valid JSON in a JSON column: {exc}") from None
    return value


def _images(value: Any) -> Any:
    """An array of URLs, or the document format's list of {loc, title, caption}."""
    if isinstance(value, list):
        return [{"loc": v} if isinstance(v, str) else v for v in value]
    return value


def _alternates(value: Any) -> Any:
    """An object {hreflang: href}, or the document format's list of {hreflang, href}."""
    if isinstance(value, dict):
        return [{"hreflang": k, "href": v} for k, v in value.items()]
    return value


# -- loading ------------------------------------------------------------------------------------------------


def load_mapping(path: str | Path) -> Mapping:
    """Read and check a mapping file, or raise MappingError with one line naming the file and the problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"mapping {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        return parse_mapping(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"mapping {path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    except MappingError as exc:
        raise MappingError(f"mapping {path}: {exc}") from None


def parse_mapping(text: str) -> Mapping:
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("sections"), dict) or not doc["sections"]:
        raise MappingError("it must have a `sections:` map of section name to its table")
    unknown = set(doc) - {"sections"}
    if unknown:
        raise MappingError(f"unknown top-level setting {sorted(unknown)[0]!r}")
    return Mapping(tuple(_section(name, spec) for name, spec in doc["sections"].items()))


def _section(name: Any, spec: Any) -> SectionMapping:
    if not isinstance(name, str) or not SECTION_RE.fullmatch(name):
        raise MappingError(f"section name {name!r} must match [a-z0-9_-]{{1,64}}")
    where = f"sections.{name}"
    if not isinstance(spec, dict):
        raise MappingError(f"{where} must be a map (table, key, loc, ...)")
    unknown = set(spec) - SECTION_KEYS
    if unknown:
        raise MappingError(
            f"{where}: unknown setting {sorted(unknown)[0]!r} (known: {', '.join(sorted(SECTION_KEYS))})"
        )
    for required in ("table", "key", "loc"):
        if required not in spec:
            raise MappingError(f"{where}: `{required}` is required")
    schema, _dot, tbl = str(spec["table"]).partition(".")
    if not (_dot and IDENT_RE.fullmatch(schema) and IDENT_RE.fullmatch(tbl)):
        raise MappingError(f"{where}.table must be schema.table, got {spec['table']!r}")
    keys = spec["key"] if isinstance(spec["key"], list) else [spec["key"]]
    return SectionMapping(
        section=name,
        schema=schema,
        table=tbl,
        key=tuple(_ident(k, f"{where}.key") for k in keys),
        loc=parse_template(spec["loc"], f"{where}.loc"),
        where=parse_where(spec.get("where"), f"{where}.where"),
        types=_types(spec.get("types"), f"{where}.types"),
        **{f: _ident(spec[f], f"{where}.{f}") for f in OPTIONAL_FIELDS if spec.get(f) is not None},
    )


def _ident(value: Any, where: str) -> str:
    if not isinstance(value, str) or not IDENT_RE.fullmatch(value):
        raise MappingError(f"{where}: {value!r} is not a column name")
    return value


def _types(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MappingError(f"{where} must be a map of column to type")
    out = {}
    for col, kind in value.items():
        if kind not in TEMPORAL_TYPES:
            raise MappingError(f"{where}.{col}: unknown type {kind!r} (known: {', '.join(TEMPORAL_TYPES)})")
        out[_ident(col, where)] = TEMPORAL_TYPES[kind]
    return out


def parse_template(value: Any, where: str) -> tuple[str | Placeholder, ...]:
    """`https://host/path/{column}/{other:raw}` into its literal parts and placeholders."""
    if not isinstance(value, str) or not re.match(r"https?://[^/{}]+", value):
        raise MappingError(f"{where} must be an http(s) URL template with a literal host, got {value!r}")
    parts: list[str | Placeholder] = []
    try:
        pieces = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise MappingError(f"{where}: {exc} in {value!r}") from None
    for text, field, spec, conversion in pieces:
        if text:
            parts.append(text)
        if field is None:
            continue
        if conversion or spec not in ("", "raw"):
            raise MappingError(
                f"{where}: {{{field}{':' + spec if spec else ''}}}: only {{column}} and {{column:raw}} are supported"
            )
        parts.append(Placeholder(_ident(field, where), spec == "raw"))
    if not any(isinstance(p, Placeholder) for p in parts):
        raise MappingError(f"{where}: the template names no column, so every row would have the same URL")
    return tuple(parts)


def parse_where(value: Any, where: str) -> tuple[Condition, ...]:
    """A filter: a string of conditions joined by `and`, or a list of such strings (all must hold)."""
    if value is None:
        return ()
    texts = value if isinstance(value, list) else [value]
    out: list[Condition] = []
    for text in texts:
        if not isinstance(text, str):
            raise MappingError(f"{where}: {text!r} is not a condition ({SUPPORTED})")
        out.extend(_conditions(text, where))
    return tuple(out)


def _tokens(text: str, where: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        m = TOKEN_RE.match(text, pos)
        if not m:
            raise MappingError(f"{where}: cannot read {text[pos:].strip()!r} ({SUPPORTED})")
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _conditions(text: str, where: str) -> list[Condition]:
    tokens = _tokens(text, where)
    groups: list[list[tuple[str, str]]] = [[]]
    for tok in tokens:
        if tok[0] == "word" and tok[1].lower() == "and":
            groups.append([])
        else:
            groups[-1].append(tok)
    return [_condition(g, text, where) for g in groups]


def _condition(tokens: list[tuple[str, str]], text: str, where: str) -> Condition:
    shape = [k if k != "word" else v.lower() for k, v in tokens]
    words = [v for _k, v in tokens]
    if len(tokens) == 2 and shape[0] == "not" and tokens[1][0] == "word":
        return Condition(_col(words[1], where), "=", False)
    if len(tokens) == 1 and tokens[0][0] == "word" and shape[0] not in ("and", "or", "not", "null"):
        return Condition(_col(words[0], where), "=", True)
    if len(tokens) == 3 and tokens[0][0] == "word" and shape[1:] == ["is", "null"]:
        return Condition(_col(words[0], where), "is null")
    if len(tokens) == 4 and tokens[0][0] == "word" and shape[1:] == ["is", "not", "null"]:
        return Condition(_col(words[0], where), "is not null")
    if len(tokens) == 3 and tokens[0][0] == "word" and tokens[1][0] == "op":
        op = "=" if words[1] == "=" else "!="
        return Condition(_col(words[0], where), op, _literal(tokens[2], where))
    raise MappingError(f"{where}: {' '.join(words) or '(empty)'!r} in {text!r} is not supported ({SUPPORTED})")


def _col(name: str, where: str) -> str:
    if name.lower() in ("and", "or", "not", "is", "null", "true", "false", "in", "like"):
        raise MappingError(f"{where}: {name!r} where a column name was expected ({SUPPORTED})")
    return _ident(name, where)


def _literal(token: tuple[str, str], where: str) -> Literal:
    kind, value = token
    if kind == "str":
        return value[1:-1].replace("''", "'")
    if kind == "num":
        return int(value)
    if kind == "word" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise MappingError(
        f"{where}: {value!r} is not a literal ('text', an integer, true or false; for NULL say `is null`)"
    )
