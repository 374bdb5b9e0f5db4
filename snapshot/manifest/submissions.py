"""What each IndexNow endpoint did with each generation's URLs; made on first use."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import func, select

from sitemap_keeper.snapshot.manifest.connection import Database
from sitemap_keeper.snapshot.manifest.records import Submission
from sitemap_keeper.snapshot.manifest.schema import submissions


class Submissions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, gen_id: str, outcomes: list[Submission]) -> None:
        """Replace what is recorded for `gen_id`, finished now."""
        self.db.ensure(submissions)
        now = time.time()
        with self.db.write() as conn:
            conn.execute(submissions.delete().where(submissions.c.generation_id == gen_id))
            conn.execute(
                submissions.insert(),
                [
                    {
                        "generation_id": gen_id,
                        "endpoint": o.endpoint,
                        "finished_at": now,
                        "urls": o.urls,
                        "batches": o.batches,
                        "submitted": o.submitted,
                        "gave_up": o.gave_up,
                        "message": o.message,
                        "statuses": json.dumps({str(k): v for k, v in sorted(o.statuses.items())}),
                    }
                    for o in outcomes
                ],
            )

    def newest(self) -> list[dict[str, Any]]:
        """Every column of the outcomes of the newest generation that has any, one per endpoint."""
        if not self.db.has(submissions):  # a reader creates nothing
            return []
        with self.db.engine.connect() as conn:
            newest = conn.execute(select(func.max(submissions.c.generation_id))).scalar()
            rows = (
                conn.execute(
                    select(submissions).where(submissions.c.generation_id == newest).order_by(submissions.c.endpoint)
                )
                .mappings()
                .all()
            )
        return [{**row, "statuses": json.loads(row["statuses"])} for row in rows]
