"""The shard manifest: every document, the shard it lives in, and every generation published from it.

`Manifest` is the one door to it; each concern lives in a module of its own, readable alone:
- schema: every table;
- connection: engines, PRAGMAs, read and write transactions;
- locks: the publish and rebuild locks across processes and replicas;
- bulk: loading many rows through the drivers' bulk paths;
- shard_reads: shards and their documents, from rows or packs;
- placement: sections' open shards and shards' counts, as the apply path places documents;
- contents: the site's content as a whole;
- meta_values: the shard revision counter, the last rebuild's revision, the manifest's identity;
- generations: the generation lifecycle and its files;
- dead_letters: refused input;
- document_rows: the documents rows of the apply path, through the driver;
- url_claims: which document holds each URL, and the claims waiting for one;
- news_rows: the news window's articles, shards and files' expiries;
- staging: a rebuild's new manifest, loaded beside the live one and swapped in;
- holds, diffs, submissions, offsets: the tables a feature makes on first use (the operator's hold, what each
  generation changed, IndexNow's outcomes, the event sources' positions), each reached as an attribute;
- records, errors: what the operations return and raise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Engine, Table, inspect, select
from sqlalchemy.engine import make_url

from sitemap_keeper.snapshot.manifest import contents, meta_values
from sitemap_keeper.snapshot.manifest import dead_letters as dead_letter_rows
from sitemap_keeper.snapshot.manifest.bulk import BulkLoader, DocumentRun
from sitemap_keeper.snapshot.manifest.connection import Database, connect, sqlite_has_manifest
from sitemap_keeper.snapshot.manifest.dead_letters import DeadLetters
from sitemap_keeper.snapshot.manifest.diffs import Diffs
from sitemap_keeper.snapshot.manifest.errors import NoManifest
from sitemap_keeper.snapshot.manifest.generations import Generations
from sitemap_keeper.snapshot.manifest.holds import Holds
from sitemap_keeper.snapshot.manifest.locks import Locks
from sitemap_keeper.snapshot.manifest.offsets import Offsets
from sitemap_keeper.snapshot.manifest.placement import Placement
from sitemap_keeper.snapshot.manifest.records import DeadLetter, FileRecord, Generation, Shard
from sitemap_keeper.snapshot.manifest.schema import REVISION, add_missing_columns, meta, metadata
from sitemap_keeper.snapshot.manifest.shard_reads import ShardReader
from sitemap_keeper.snapshot.manifest.submissions import Submissions


class Manifest:
    def __init__(self, engine: Engine) -> None:
        self.db = Database(engine)
        self.engine = engine
        self.dialect = self.db.dialect
        self.writer = self.db.writer
        self._locks = Locks(self.db)
        self._bulk = BulkLoader(self.db)
        self._reader = ShardReader(self.db)
        self._generations = Generations(self.db)
        self._dead_letters = DeadLetters(self.db)
        self.holds = Holds(self.db)
        self.diffs = Diffs(self.db)
        self.submissions = Submissions(self.db)
        self.offsets = Offsets(self.db, self._bulk)
        self.placement = Placement(self._bulk)

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

    def publish_lock(self, patience: float = 0.0) -> AbstractContextManager[None]:
        return self._locks.publish(patience)

    def rebuild_lock(self) -> AbstractContextManager[None]:
        return self._locks.rebuild()

    def rebuild_running(self, conn: Connection | None = None) -> bool:
        return self._locks.rebuild_running(conn)

    # -- named values (meta_values) and the content as a whole (contents) ---------------------------------------

    mark_rebuilt = staticmethod(meta_values.mark_rebuilt)
    next_revision = staticmethod(meta_values.next_revision)
    empty = staticmethod(contents.empty)

    def site_id(self, make: Callable[[], int]) -> int:
        return meta_values.site_id(self.db, make)

    # -- bulk writes (bulk) -----------------------------------------------------------------------------------

    def bulk_insert(self, conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self._bulk.insert(conn, table, columns, rows)

    def load_documents(self, conn: Connection, table: str, runs: Iterable[DocumentRun]) -> None:
        self._bulk.load_documents(conn, table, runs)

    def upsert(self, conn: Connection, table: Table, keys: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self._bulk.upsert(conn, table, keys, rows)

    def through_table(
        self, conn: Connection, table: str, create: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], sql: str
    ) -> int:
        return self._bulk.through_table(conn, table, create, columns, rows, sql)

    # -- reads (shard_reads) ----------------------------------------------------------------------------------

    def shards(self, conn: Connection | None = None) -> list[Shard]:
        return self._reader.shards(conn)

    shard_revision = staticmethod(ShardReader.revision)

    def shard_rows(
        self, conn: Connection, section: str, shard_no: int
    ) -> tuple[list[str], list[str | None], list[float | None]]:
        return self._reader.shard_rows(conn, section, shard_no)

    def rows_as_rebuilt(
        self, cur: Any, mark: str, section: str, shard_no: int
    ) -> tuple[list[str], list[str | None], list[float | None]] | None:
        return self._reader.as_rebuilt(cur, mark, section, shard_no)

    def live_loc(self, conn: Connection, section: str, key: str) -> str | None:
        return self._reader.live_loc(conn, section, key)

    def url_count(self) -> int:
        return self._reader.url_count()

    def section_counts(self) -> dict[str, tuple[int, int]]:
        return self._reader.section_counts()

    def documents(self) -> Iterator[tuple[str, str, str, str | None]]:
        return self._reader.documents()

    # -- generations ------------------------------------------------------------------------------------------

    def begin_generation(self, gen_id: str, base_id: str | None) -> None:
        self._generations.begin(gen_id, base_id)

    def record_generation(self, gen_id: str, files: Iterable[FileRecord], rendered: int, copied: int) -> None:
        self._generations.record(gen_id, files, rendered, copied)

    def set_state(self, gen_id: str, state: str) -> None:
        self._generations.set_state(gen_id, state)

    def generation(self, gen_id: str) -> Generation | None:
        return self._generations.get(gen_id)

    def generations(self) -> list[Generation]:
        return self._generations.all()

    def files(self, gen_id: str) -> dict[str, FileRecord]:
        return self._generations.files(gen_id)

    def latest_generation_id(self) -> str | None:
        return self._generations.latest_id()

    # -- dead letters -----------------------------------------------------------------------------------------

    add_dead_letters = staticmethod(dead_letter_rows.add)

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        return self._dead_letters.all(limit)

    def dead_letter_count(self) -> int:
        return self._dead_letters.count()

    def newest_dead_letter_id(self) -> int:
        return self._dead_letters.newest_id()

    def dead_letters_after(self, letter_id: int) -> list[DeadLetter]:
        return self._dead_letters.after(letter_id)

    def newest_dead_letters(self, limit: int) -> list[DeadLetter]:
        return self._dead_letters.newest(limit)
