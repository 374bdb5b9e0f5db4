"""Follow a JSON-lines file like `tail -f`: the service with no servers at all.

The byte offset after the last applied line is stored like a Kafka offset (topic `file:<path>`, partition
0), so a restart resumes exactly after it. A line counts once its newline is written; the file must only
ever grow (a truncated or replaced file is reported, never silently re-read).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO

from sitemap_keeper.incremental.offsets import OffsetStore, Position
from sitemap_keeper.incremental.sources.base import Batch, EventSource


class FileFollower(EventSource):
    def __init__(self, path: Path, store: OffsetStore, interval: float = 0.1) -> None:
        self.path = Path(path).resolve()
        self.store = store
        self.interval = interval
        self.position: Position = (f"file:{self.path}", 0)
        self.stream: BinaryIO | None = None
        self.offset = 0  # the next byte to read
        self.expected: int | None = None  # what the manifest holds
        self.handed: int | None = None  # where the last batch handed out ends: the next batch's start
        self.must_rewind = True

    def rewind(self) -> None:
        self.must_rewind = True  # read the stored offset before the next read (the database may be down now)

    def poll(self, max_records: int, timeout: float) -> Batch | None:
        deadline = time.monotonic() + timeout
        while True:
            batch = self._read(max_records)
            left = deadline - time.monotonic()
            if batch is not None or left <= 0:
                return batch
            time.sleep(min(self.interval, left))

    def _read(self, max_records: int) -> Batch | None:
        if self.must_rewind:
            self.expected = self.store.load(self.position[0]).get(0)
            self.offset = self.expected or 0
            self.handed = self.expected
            self.must_rewind = False
        if self.stream is None:
            try:
                self.stream = open(self.path, "rb")  # noqa: SIM115 - kept open, closed in close()
            except FileNotFoundError:
                return None
        stream = self.stream
        stream.seek(self.offset)
        items: list[tuple[str, bytes]] = []
        end = self.offset
        name = self.path.name
        while len(items) < max_records:
            line = stream.readline()
            if not line.endswith(b"\n"):  # the end, or a line still being written
                break
            raw = line.strip()
            if raw:
                items.append((f"{name}@{end}", raw))
            end += len(line)
        if end == self.offset:
            return None
        # A batch may be handed out before the one before it is committed (the service reads ahead): it starts
        # where that one ends, which is what the manifest holds once that one is committed.
        batch = Batch(items, {self.position: self.handed}, {self.position: end})
        self.offset = self.handed = end
        return batch

    def committed(self, batch: Batch) -> None:
        self.expected = batch.end[self.position]

    def check(self) -> None:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            self.status = (False, f"{self.path} does not exist (yet)")
            return
        if size < self.offset:
            self.status = (False, f"{self.path} is shorter than the stored offset {self.offset}: truncated?")
        else:
            self.status = (True, "ok")

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
