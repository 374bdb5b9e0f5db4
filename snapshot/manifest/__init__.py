"""The shard manifest: every document, the shard it lives in, and every generation published from it.

`Manifest` is the one door to it: it opens the database and its transactions, and reaches each concern as an
attribute named after it (`manifest.generations.begin(...)`, `manifest.locks.publish()`). Each concern lives in
a module of its own, readable alone:
- schema: every table;
- connection: engines, PRAGMAs, read and write transactions;
- locks (`.locks`): the publish and rebuild locks across processes and replicas;
- bulk (`.bulk`): loading many rows through the drivers' bulk paths;
- shard_reads (`.reader`): shards and their documents, from rows or packs;
- placement (`.placement`): sections' open shards and shards' counts, as the apply path places documents;
- contents: the site's content as a whole;
- meta_values: the shard revision counter, the last rebuild's revision, the manifest's identity;
- generations (`.generations`): the generation lifecycle and its files;
- dead_letters (`.dead_letters`): refused input;
- document_rows: the documents rows of the apply path, through the driver;
- url_claims: which document holds each URL, and the claims waiting for one;
- news_rows: the news window's articles, shards and files' expiries;
- staging: a rebuild's new manifest, loaded beside the live one and swapped in;
- holds, diffs, submissions, offsets: the tables a feature makes on first use (the operator's hold, what each
  generation changed, IndexNow's outcomes, the event sources' positions), each an attribute of its name;
- records, errors: what the operations return and raise.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Engine, inspect, select
from sqlalchemy.engine import make_url

from sitemap_keeper.snapshot.manifest import contents, meta_values
from sitemap_keeper.snapshot.manifest.bulk import BulkLoader
from sitemap_keeper.snapshot.manifest.connection import Database, connect, sqlite_has_manifest
from sitemap_keeper.snapshot.manifest.dead_letters import DeadLetters
from sitemap_keeper.snapshot.manifest.diffs import Diffs
from sitemap_keeper.snapshot.manifest.errors import NoManifest
from sitemap_keeper.snapshot.manifest.generations import Generations
from sitemap_keeper.snapshot.manifest.holds import Holds
from sitemap_keeper.snapshot.manifest.locks import Locks
from sitemap_keeper.snapshot.manifest.offsets import Offsets
from sitemap_keeper.snapshot.manifest.placement import Placement
from sitemap_keeper.snapshot.manifest.schema import REVISION, add_missing_columns, meta, metadata
from sitemap_keeper.snapshot.manifest.shard_reads import ShardReader
from sitemap_keeper.snapshot.manifest.submissions import Submissions


class Manifest:
    def __init__(self, engine: Engine) -> None:
        self.db = Database(engine)
        self.engine = engine
        self.dialect = self.db.dialect
        self.writer = self.db.writer
        self.locks = Locks(self.db)
        self.bulk = BulkLoader(self.db)
        self.reader = ShardReader(self.db)
        self.generations = Generations(self.db)
        self.dead_letters = DeadLetters(self.db)
        self.holds = Holds(self.db)
        self.diffs = Diffs(self.db)
        self.submissions = Submissions(self.db)
        self.offsets = Offsets(self.db, self.bulk)
        self.placement = Placement(self.bulk)

    @classmethod
    def open(cls, database_url: str) -> Manifest:
        manifest = cls(connect(database_url))
        manifest.create()
        return manifest

    @classmethod
    def open_existing(cls, database_url: str) -> Manifest:
        """The manifest at `database_url` for reading only: nothing is created (not even an SQLite file) or
        changed; NoManifest when there is none there."""
        url = make_url(database_url)
        if (
            url.get_backend_name() == "sqlite"
            and url.database not in (None, "", ":memory:")
            and not sqlite_has_manifest(url.database)
        ):
            raise NoManifest(f"no manifest at {url.render_as_string(hide_password=True)}")
        manifest = cls(connect(database_url))
        manifest.read_only = True
        with manifest.engine.connect() as conn:
            found = inspect(conn).has_table(meta.name)
        if not found:
            manifest.close()
            raise NoManifest(f"no manifest at {url.render_as_string(hide_password=True)}")
        return manifest

    @property
    def read_only(self) -> bool:
        """Opened by `open_existing`: every write transaction is refused."""
        return self.db.read_only

    @read_only.setter
    def read_only(self, value: bool) -> None:
        self.db.read_only = value

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite database: private to this process (no workers, no lock files)."""
        return self.db.in_memory

    @property
    def worker_url(self) -> str | None:
        """The URL worker processes open the manifest with; None for an in-memory database."""
        return None if self.in_memory else self.engine.url.render_as_string(hide_password=False)

    def create(self) -> None:
        with self.write() as conn:
            metadata.create_all(conn)
            add_missing_columns(conn)
            if conn.execute(select(meta.c.value).where(meta.c.name == REVISION)).first() is None:
                conn.execute(meta.insert().values(name=REVISION, value=0))

    def close(self) -> None:
        self.db.close()

    # -- transactions and locks (connection, locks) -----------------------------------------------------------

    def write(self, copy_back: bool = True) -> AbstractContextManager[Connection]:
        return self.db.write(copy_back)

    def read(self) -> AbstractContextManager[Connection]:
        return self.db.read()

    def driver_cursor(self, conn: Connection) -> AbstractContextManager[tuple[Any, str]]:
        """A cursor of the database driver inside `conn`'s transaction, and its parameter mark."""
        return self.db.cursor(conn)

    # -- named values (meta_values) and the content as a whole (contents) ---------------------------------------

    mark_rebuilt = staticmethod(meta_values.mark_rebuilt)
    next_revision = staticmethod(meta_values.next_revision)
    empty = staticmethod(contents.empty)

    def site_id(self, make: Callable[[], int]) -> int:
        return meta_values.site_id(self.db, make)
