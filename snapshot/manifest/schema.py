"""The manifest's schema: every table, in one place.

One SQLAlchemy schema serves SQLite (the embedded default) and PostgreSQL (production). A shard's `revision`
changes whenever its content does; a generation records, per file, the revision it was rendered from. A shard
is dirty exactly when its revision differs from the live generation's file: no dirty flag to keep in step,
and a rollback or an operator's manual switch needs no bookkeeping.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)

metadata = MetaData()  # the tables every manifest has, made by `Manifest.create`


def _name(length: int) -> String:
    """A section or key column: compared byte by byte on PostgreSQL too (COLLATE "C"), as on SQLite and by
    Python's sorted(). A shard then lists its documents in the same order whether read from its rows or from
    its packs, whatever the database's locale, and its indexes sort without the locale's rules."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


meta = Table(
    "sitemaps_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
sections = Table(
    "sections",
    metadata,
    Column("name", _name(64), primary_key=True),
    Column("open_shard", Integer, nullable=False),
)
shards = Table(
    "shards",
    metadata,
    Column("section", _name(64), primary_key=True),
    Column("shard_no", Integer, primary_key=True),
    Column("url_count", Integer, nullable=False),
    Column("byte_count", BigInteger, nullable=False),
    Column("revision", BigInteger, nullable=False),
)
# A row whose size is 0 is a tombstone: it remembers a deleted document's version (so a late, older upsert
# is refused) and its shard (so the document gets its shard back if it returns). A live row whose xml is NULL
# is packed: a rebuild loaded it, and its content is in shard_packs (snapshot/packs.py). No primary key but a
# unique index, so a rebuild can bulk-load first and build its indexes after. On PostgreSQL its pages are filled
# to DOCUMENTS_FILLFACTOR percent (the rebuild's load too): an event's new row version then fits in its page,
# a HOT update that leaves both indexes alone (docs/performance.md, "Apply over a 4M catalog").
# `loc_hash` is the live document's URL hash (snapshot/owners.py), the rebuild's rows included: an event that keeps
# a document's URL then needs no `loc_owners` read, as a live document holds its URL. NULL on a tombstone, and on
# the rows of a manifest made before the column (`Manifest.create` adds it): those ask `loc_owners`.
DOCUMENTS_FILLFACTOR = 70
documents = Table(
    "documents",
    metadata,
    Column("section", _name(64), nullable=False),
    Column("key", _name(512), nullable=False),
    Column("shard_no", Integer),
    Column("version", BigInteger),
    Column("loc", String(2048)),
    Column("lastmod", String(40)),
    Column("lastmod_ts", Float),
    Column("size", Integer, nullable=False),
    Column("xml", Text),
    Column("loc_hash", BigInteger),
    postgresql_with={"fillfactor": DOCUMENTS_FILLFACTOR},
)
DOCUMENT_COLUMNS = tuple(c.name for c in documents.c)
# Columns added to a table after manifests were made without them: nullable, added by `add_missing_columns`.
ADDED_COLUMNS = ((documents, documents.c.loc_hash),)


def add_missing_columns(conn: Connection) -> None:
    """Give a manifest made before a column in ADDED_COLUMNS that column (empty: NULL in every row)."""
    look = inspect(conn)
    for table, column in ADDED_COLUMNS:
        if look.has_table(table.name) and column.name not in {c["name"] for c in look.get_columns(table.name)}:
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")


Index("ux_documents_key", documents.c.section, documents.c.key, unique=True)
Index("ix_documents_shard", documents.c.section, documents.c.shard_no, documents.c.key)

# A URL belongs to one document (snapshot/owners.py): loc_hash (a stable 64-bit hash of the loc) -> the document
# that claimed it. A row is a hint, checked when another document claims the URL: the holder must still be live
# and at that loc, else the URL was freed (deleted, URL changed) and the claimant takes it. `ord` orders a rebuild's
# claims as its source does. A unique index, no primary key: a rebuild loads first and indexes after.
loc_owners = Table(
    "loc_owners",
    metadata,
    Column("loc_hash", BigInteger, nullable=False),
    Column("section", _name(64), nullable=False),
    Column("key", _name(512), nullable=False),
    Column("ord", BigInteger),
)
Index("ux_loc_owners", loc_owners.c.loc_hash, unique=True)

# A document refused a URL another one holds waits for it (snapshot/owners.py): the refused event, kept until the
# URL is freed (then applied), a newer event of its key replaces it, or a rebuild. `seq`: oldest waiting first;
# `letters`: the ids of the dead letters it stands for, withdrawn once it is applied.
loc_waiting = Table(
    "loc_waiting",
    metadata,
    Column("loc_hash", BigInteger, primary_key=True),
    Column("section", _name(64), primary_key=True),
    Column("key", _name(512), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("version", BigInteger),
    Column("loc", String(2048), nullable=False),
    Column("source", String(200), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Column("letters", Text, nullable=False),
)
Index("ix_loc_waiting_key", loc_waiting.c.section, loc_waiting.c.key)

shard_packs = Table(
    "shard_packs",
    metadata,
    Column("section", _name(64), primary_key=True),
    Column("shard_no", Integer, primary_key=True),
    Column("seq", Integer, primary_key=True),  # the section's packs in source order
    # The shard's documents are entries [entry_from, entry_to) of the pack: a pack can span two shards.
    Column("entry_from", Integer, nullable=False),
    Column("entry_to", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

generations = Table(
    "generations",
    metadata,
    Column("id", String(40), primary_key=True),
    # building -> ready (verified, recorded) -> live -> retired -> pruned; or failed/abandoned.
    Column("state", String(16), nullable=False),
    Column("base_id", String(40)),
    Column("created_at", Float, nullable=False),
    Column("published_at", Float),
    Column("url_count", BigInteger, nullable=False, default=0),
    Column("file_count", Integer, nullable=False, default=0),
    Column("rendered", Integer, nullable=False, default=0),
    Column("copied", Integer, nullable=False, default=0),
)
generation_files = Table(
    "generation_files",
    metadata,
    Column("generation_id", String(40), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("md5", String(32), nullable=False),
    Column("url_count", Integer, nullable=False),
    Column("lastmod", String(40)),
    Column("lastmod_ts", Float),
    Column("section", String(64)),
    Column("shard_no", Integer),
    Column("revision", BigInteger),
)
# The news window (snapshot/news.py): every document's article, its news shard, and when each news file of a
# generation goes stale because its oldest article leaves the window.
news_articles = Table(
    "news_articles",
    metadata,
    Column("section", _name(64), primary_key=True),
    Column("key", _name(512), primary_key=True),
    Column("shard_no", Integer, nullable=False),
    Column("loc", String(2048), nullable=False),
    Column("published", String(40), nullable=False),
    Column("published_ts", Float, nullable=False),
    Column("xml", Text, nullable=False),
)
Index("ix_news_articles_published", news_articles.c.published_ts)


def news_articles_staging(md: MetaData) -> Table:
    """A rebuild's articles as it loads them: no key (a source may repeat one), `seq` in source order."""
    return Table(
        "news_articles_staging",
        md,
        Column("section", news_articles.c.section.type, nullable=False),  # compared byte by byte, as there
        Column("key", news_articles.c.key.type, nullable=False),
        Column("shard_no", Integer, nullable=False),
        Column("loc", String(2048), nullable=False),
        Column("published", String(40), nullable=False),
        Column("published_ts", Float, nullable=False),
        Column("xml", Text, nullable=False),
        Column("seq", Integer, nullable=False),
    )


news_shards = Table(
    "news_shards",
    metadata,
    Column("section", _name(64), primary_key=True),
    Column("shard_no", Integer, primary_key=True),
    Column("article_count", Integer, nullable=False),
    Column("revision", BigInteger, nullable=False),
)
news_files = Table(
    "news_files",
    metadata,
    Column("generation_id", String(40), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("expires_at", Float, nullable=False),
)
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", Float, nullable=False),
    Column("source", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", LargeBinary, nullable=False),
)

STAGING_SUFFIX = "_staging"
REVISION = "revision"
# The revision the last rebuild gave every shard. A shard still at it is exactly what its packs hold (no event
# has touched it since), so it renders from them alone: no read of its documents rows, no index needed.
PACKED_REVISION = "packed_revision"
SITE_ID = "site_id"  # the manifest's identity (snapshot/ownership.py)

# Tables made on first write by the feature that keeps them, each in a MetaData of its own: a manifest made before
# the feature has none, and a reader (`Manifest.open_existing`) creates nothing (`Manifest.has_tables`).

# The operator's hold (snapshot/hold.py): at most one row, HOLD_ID.
holds = Table(
    "sitemaps_hold",
    MetaData(),
    Column("id", Integer, primary_key=True),  # always HOLD_ID: at most one hold
    Column("generation_id", String(40)),  # live when the hold was set (the rollback's target)
    Column("held_since", Float, nullable=False),
    Column("held_by", String(200), nullable=False),
    Column("reason", Text),
)
HOLD_ID = 1

# What each generation changed against the one it was published on, per section (snapshot/diff.py).
generation_diffs = Table(
    "generation_diffs",
    MetaData(),
    Column("generation_id", String(40), primary_key=True),
    Column("section", String(64), primary_key=True),
    Column("base_id", String(40)),
    Column("added", BigInteger, nullable=False),
    Column("removed", BigInteger, nullable=False),
    Column("changed", BigInteger, nullable=False),
)

# What each IndexNow endpoint did with a generation's URLs (snapshot/indexnow.py).
submissions = Table(
    "indexnow_submissions",
    MetaData(),
    Column("generation_id", String(40), primary_key=True),
    Column("endpoint", String(500), primary_key=True),
    Column("finished_at", Float, nullable=False),
    Column("urls", BigInteger, nullable=False),
    Column("batches", Integer, nullable=False),
    Column("submitted", BigInteger, nullable=False),
    Column("statuses", Text, nullable=False),  # JSON {"200": 3, "429": 1}
    Column("gave_up", Boolean, nullable=False),
    Column("message", Text, nullable=False),
)

# Consumed positions of the event sources (incremental/offsets.py): (topic, partition) -> next offset.
offsets = Table(
    "sitemaps_offsets",
    MetaData(),
    Column("topic", String(1024), primary_key=True),
    Column("partition_no", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)
