"""Follow a JSON-lines file like `tail -F`: the service with no servers at all.

The byte offset after the last applied line is stored like a Kafka offset (topic `file:<path>`, partition
0), and with it, in the same transaction, the identity of the file it is an offset into (topic
`file-identity:<path>`: device, inode, and the length and CRC-32 of its first bytes, up to HEAD). A restart
applies the offset only to that file, wherever it is now; a line counts once its newline is written.

Rotation, as logrotate does it:
- create mode (the file renamed, a new one made at the path): the old file is read to its end, then the new
  one from byte 0. Stopped meanwhile, a restart finds the old file by its identity in the same directory
  (`events.jsonl.1`) and finishes it first;
- copytruncate (the file copied, then truncated in place): seen as the file shorter than the offset, or its
  first bytes changed. What the copy holds past the offset is read from the copy, then the file from byte 0.

What cannot be accounted for (the old file gone before it was read to its end, a last line never finished,
a truncation without a copy to read) is reported: a warning in the log, the `sitemaps_source_unaccounted`
metric, and `/readyz` answering 503 with the reason for the rest of the run.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sitemap_keeper.incremental.offsets import OffsetStore, Position
from sitemap_keeper.incremental.sources.base import EventBatch, EventSource

log = logging.getLogger(__name__)

HEAD = 1024  # bytes at a file's start that its identity checksums
READ_BYTES = 1 << 20  # bytes per block the file is read in
ID_MASK = (1 << 63) - 1  # device and inode numbers as the offsets table's signed 64-bit column holds them


@dataclass(frozen=True, slots=True)
class Identity:
    """Which file an offset is into: device and inode, and the CRC-32 of its first `head_len` bytes (the
    bytes before the offset, up to HEAD: a file truncated and written again has other first bytes)."""

    device: int
    inode: int
    head_len: int
    head_crc: int

    @classmethod
    def of(cls, stream: BinaryIO, upto: int) -> Identity:
        head = os.pread(stream.fileno(), min(HEAD, upto), 0)
        return cls(*_key(os.fstat(stream.fileno())), len(head), zlib.crc32(head))

    def same_head(self, stream: BinaryIO) -> bool:
        head = os.pread(stream.fileno(), self.head_len, 0)
        return len(head) == self.head_len and zlib.crc32(head) == self.head_crc

    def same_file(self, stream: BinaryIO) -> bool:
        return _key(os.fstat(stream.fileno())) == (self.device, self.inode) and self.same_head(stream)

    def values(self) -> tuple[int, int, int, int]:
        return self.device, self.inode, self.head_len, self.head_crc


class FileFollower(EventSource):
    def __init__(self, path: Path, store: OffsetStore, interval: float = 0.1) -> None:
        self.path = Path(path).resolve()
        self.store = store
        self.interval = interval
        self.position: Position = (f"file:{self.path}", 0)
        self.identity_topic = f"file-identity:{self.path}"
        self.stream: BinaryIO | None = None  # the file being read: the one at the path, or the one rotated away
        self.offset = 0  # the next byte of `stream` to read
        self.expected: int | None = None  # what the manifest holds
        # Where the last batch handed out ends (the next batch's start): offset and identity, as stored.
        self.handed: int | None = None
        self.handed_identity: dict[Position, int | None] = self._identity_positions(None)
        self.read_identity = Identity(0, 0, 0, 0)  # of `stream` up to `offset`: how a truncation is seen
        self.must_rewind = True
        self.unaccounted = 0
        self.problem: str | None = None  # the last unaccounted loss, for /readyz

    def rewind(self) -> None:
        self.must_rewind = True  # read the stored offset before the next read (the database may be down now)

    def poll(self, max_records: int, timeout: float) -> EventBatch | None:
        deadline = time.monotonic() + timeout
        while True:
            batch = self._read(max_records)
            left = deadline - time.monotonic()
            if batch is not None or left <= 0:
                return batch
            time.sleep(min(self.interval, left))

    # -- reading --------------------------------------------------------------------------------------------

    def _read(self, max_records: int) -> EventBatch | None:
        if self.must_rewind:
            self._resume()
        if self.stream is None:
            self._switch(self._open_path(), 0)
            if self.stream is None:
                return None
        self._truncated(self.stream)
        batch = self._lines(self.stream, max_records)
        if batch is None and self._rotated(self.stream) and self.stream is not None:
            batch = self._lines(self.stream, max_records)
        return batch

    def _lines(self, stream: BinaryIO, max_records: int) -> EventBatch | None:
        """Up to `max_records` events from the offset on: the complete lines' (a last one without its newline is
        still being written), each stripped; blank ones are skipped (and read past).

        Read a block at a time and split: each line is copied once (large messages, such as Debezium's with
        the schema envelope, make this a good part of the applying process's work).
        """
        stream.seek(self.offset)
        items: list[tuple[str, bytes]] = []
        end = self.offset
        name = self.path.name
        unfinished: list[bytes] = []  # the line read in part: its pieces, from the blocks read before
        while len(items) < max_records:
            block = stream.read(READ_BYTES)
            if not block:
                break
            lines = block.split(b"\n")
            unfinished.append(lines[0])
            if len(lines) == 1:
                continue
            lines[0] = b"".join(unfinished) if len(unfinished) > 1 else lines[0]
            last = lines.pop()
            unfinished = [last] if last else []
            for line in lines:
                if len(items) == max_records:
                    break
                raw = line.strip()
                if raw:
                    items.append((f"{name}@{end}", raw))
                end += len(line) + 1
        if end == self.offset:
            return None
        # A batch may be handed out before the one before it is committed (the service reads ahead): it starts
        # where that one ends, which is what the manifest holds once that one is committed.
        self.read_identity = Identity.of(stream, end)
        identity = self._identity_positions(self.read_identity)
        batch = EventBatch(
            items,
            {self.position: self.handed, **self.handed_identity},
            {self.position: end, **{p: v for p, v in identity.items() if v is not None}},
        )
        self.offset = self.handed = end
        self.handed_identity = identity
        return batch

    def _rotated(self, stream: BinaryIO) -> bool:
        """At the end of `stream`: whether the path names another file now (a rotation; or `stream` is a copy
        or an old file being finished), which is then read from byte 0."""
        current = os.fstat(stream.fileno())
        at_path = _inode(self.path)
        if at_path is None or at_path == _key(current):
            return False  # the same file, or renamed away with no new one made yet: the old one may still grow
        if current.st_size > self.offset:
            if b"\n" in os.pread(stream.fileno(), current.st_size - self.offset, self.offset):
                return False  # lines written to the old file meanwhile: they are read first
            self._report(
                f"{self.path} was rotated with {current.st_size - self.offset} bytes at the end of "
                "its old file that are no complete line: they are not applied"
            )
        log.info("%s: the old file is read to its end, reading the new one from byte 0", self.path)
        self._switch(self._open_path(), 0)
        return True

    def _truncated(self, stream: BinaryIO) -> None:
        """Before reading: if `stream` was truncated in place (copytruncate), or truncated and written again (its
        first bytes differ), read the rest of the old content from a copy beside it first, if there is one."""
        if os.fstat(stream.fileno()).st_size >= self.offset and self.read_identity.same_head(stream):
            return
        copy = self._find(self.read_identity, self.offset, same_inode=False)
        if copy is not None:
            log.info(
                "%s was truncated (copytruncate): reading its copy %s from byte %d, then it from byte 0",
                self.path,
                copy.name,
                self.offset,
            )
            self._switch(copy, self.offset)
            return
        self._report(
            f"{self.path} was truncated (read up to byte {self.offset}) with no copy beside it: lines "
            "written after the last read and before the truncation, if any, are not applied; reading "
            "it from byte 0"
        )
        self._switch(stream, 0)

    def _switch(self, stream: BinaryIO | None, offset: int) -> None:
        if self.stream is not None and self.stream is not stream:
            self.stream.close()
        self.stream = stream
        self.offset = offset
        if stream is not None:
            self.read_identity = Identity.of(stream, offset)

    # -- restart --------------------------------------------------------------------------------------------

    def _resume(self) -> None:
        """Back to the stored offset, in the file it was stored for (found by its identity)."""
        self.must_rewind = False
        stored = self.store.load(self.position[0]).get(0)
        ids = self.store.load(self.identity_topic)
        identity = Identity(*(ids[p] for p in range(4))) if len(ids) == 4 else None
        self.expected = self.handed = stored
        self.handed_identity = self._identity_positions(identity)
        self._switch(self._open_path(), 0)
        if stored is None:
            return
        if identity is None:  # stored before identities were: the offset is trusted if the file is long enough
            if self.stream is not None and os.fstat(self.stream.fileno()).st_size >= stored:
                self._switch(self.stream, stored)
            else:
                self._report(f"{self.path} is shorter than the stored offset {stored}: reading it from byte 0")
            return
        if self.stream is not None and identity.same_file(self.stream):
            self._switch(self.stream, stored)
            return
        found = self._find(identity, stored, same_inode=True)
        if found is not None:
            log.info(
                "%s was rotated while stopped: finishing its old file %s from byte %d first",
                self.path,
                found.name,
                stored,
            )
            self._switch(found, stored)
            return
        self._report(
            f"the file the stored offset {stored} of {self.path} is into (device {identity.device}, "
            f"inode {identity.inode}) is gone: whatever it held past that offset is not applied; "
            f"reading {self.path} from byte 0"
        )

    def _find(self, identity: Identity, size: int, same_inode: bool) -> BinaryIO | None:
        """A file beside the path with `identity`'s first bytes and at least `size` bytes: the same inode (a
        rotated file), or any other than the path's (a copy); the newest if several."""
        found: list[tuple[float, Path]] = []
        at_path = _inode(self.path)
        for entry in os.scandir(self.path.parent):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not entry.is_file(follow_symlinks=False) or st.st_size < size:
                continue
            if same_inode and _key(st) != (identity.device, identity.inode):
                continue
            if not same_inode and _key(st) == at_path:
                continue
            found.append((st.st_mtime, Path(entry.path)))
        for _mtime, path in sorted(found, reverse=True):
            try:
                stream = open(path, "rb")  # noqa: SIM115 - kept open as the stream, closed in close()
            except OSError:
                continue
            if identity.same_head(stream):
                return stream
            stream.close()
        return None

    # -- helpers --------------------------------------------------------------------------------------------

    def _open_path(self) -> BinaryIO | None:
        try:
            return open(self.path, "rb")  # kept open as the stream, closed in close()
        except FileNotFoundError:
            return None

    def _identity_positions(self, identity: Identity | None) -> dict[Position, int | None]:
        values = identity.values() if identity is not None else (None,) * 4
        return {(self.identity_topic, p): v for p, v in enumerate(values)}

    def _report(self, message: str) -> None:
        log.warning("%s", message)
        self.unaccounted += 1
        self.problem = message

    def committed(self, batch: EventBatch) -> None:
        self.expected = batch.end[self.position]

    def check(self) -> None:
        """Readiness only: a followed file's lag is not counted in events, so it stays unknown (None)."""
        if not self.path.exists():
            self.status = (False, f"{self.path} does not exist (yet)")
            return
        if self.problem is not None:
            self.status = (False, f"events not accounted for: {self.problem}")
        else:
            self.status = (True, "ok")

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        return _key(os.stat(path))
    except FileNotFoundError:
        return None


def _key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev & ID_MASK, st.st_ino & ID_MASK
