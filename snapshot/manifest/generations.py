"""The generation lifecycle: building -> ready (verified, recorded) -> live -> retired -> pruned; or failed or
abandoned. A generation's files record the shard revisions they were rendered from."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from sitemap_keeper.snapshot.manifest.connection import Database
from sitemap_keeper.snapshot.manifest.records import FileRecord, Generation, asdict
from sitemap_keeper.snapshot.manifest.schema import generation_files, generations


class Generations:
    def __init__(self, db: Database) -> None:
        self.db = db

    def begin(self, gen_id: str, base_id: str | None) -> None:
        with self.db.write() as conn:
            conn.execute(
                generations.insert().values(
                    id=gen_id,
                    state="building",
                    base_id=base_id,
                    created_at=time.time(),
                    url_count=0,
                    file_count=0,
                    rendered=0,
                    copied=0,
                )
            )

    def record(self, gen_id: str, files: Iterable[FileRecord], rendered: int, copied: int) -> None:
        """Store a verified generation's files; it becomes `ready`, eligible for the router."""
        records = list(files)
        with self.db.write() as conn:
            conn.execute(generation_files.delete().where(generation_files.c.generation_id == gen_id))
            if records:
                conn.execute(generation_files.insert(), [{"generation_id": gen_id, **asdict(f)} for f in records])
            conn.execute(
                generations.update()
                .where(generations.c.id == gen_id)
                .values(
                    state="ready",
                    url_count=sum(f.url_count for f in records if f.shard_no is not None),
                    file_count=len(records),
                    rendered=rendered,
                    copied=copied,
                )
            )

    def set_state(self, gen_id: str, state: str) -> None:
        values: dict[str, Any] = {"state": state}
        if state == "live":
            values["published_at"] = time.time()
        with self.db.write() as conn:
            if state == "live":
                conn.execute(
                    generations.update()
                    .where(generations.c.state == "live", generations.c.id != gen_id)
                    .values(state="retired")
                )
            conn.execute(generations.update().where(generations.c.id == gen_id).values(**values))

    def get(self, gen_id: str) -> Generation | None:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(generations).where(generations.c.id == gen_id)).first()
        return Generation(*row) if row else None

    def all(self) -> list[Generation]:
        with self.db.engine.connect() as conn:
            return [Generation(*r) for r in conn.execute(select(generations).order_by(generations.c.id))]

    def files(self, gen_id: str) -> dict[str, FileRecord]:
        query = select(*[c for c in generation_files.c if c.name != "generation_id"]).where(
            generation_files.c.generation_id == gen_id
        )
        with self.db.engine.connect() as conn:
            return {row[0]: FileRecord(*row) for row in conn.execute(query)}

    def latest_id(self) -> str | None:
        with self.db.engine.connect() as conn:
            return conn.execute(select(func.max(generations.c.id))).scalar()
