"""The local store: `<root>/generations/<id>/<file>`, unchanged files brought forward as hard links."""

from __future__ import annotations

import builtins  # the Store.list method shadows the builtin in annotations
import errno
import os
import shutil
from pathlib import Path

from sitemap_keeper.snapshot.stores.base import STAMP, ObjectInfo, Store, md5_hex


class LocalStore(Store):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.base = self.root / "generations"

    def describe(self) -> str:
        return f"local:{self.base}"

    def path(self, gen_id: str, name: str = "") -> Path:
        if "/" in name or name.startswith("."):
            raise ValueError(f"not a file name: {name!r}")
        return self.base / gen_id / name if name else self.base / gen_id

    def create(self, gen_id: str) -> None:
        self.path(gen_id).mkdir(parents=True, exist_ok=True)

    def put(self, gen_id: str, name: str, data: bytes) -> str:
        _write(self.path(gen_id, name), data)
        return md5_hex(data)

    def copy(self, src_gen: str, dst_gen: str, name: str) -> None:
        src, dst = self.path(src_gen, name), self.path(dst_gen, name)
        try:
            os.link(src, dst)
        except FileExistsError:
            if not os.path.samefile(src, dst):
                dst.unlink()
                os.link(src, dst)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copyfile(src, dst)  # a file system without hard links: a plain copy

    def list(self, gen_id: str) -> dict[str, ObjectInfo]:
        found: dict[str, ObjectInfo] = {}
        try:
            entries = list(os.scandir(self.path(gen_id)))
        except FileNotFoundError:
            return found
        for entry in entries:
            if entry.is_file() and not entry.name.startswith("."):
                found[entry.name] = ObjectInfo(entry.stat().st_size, None)
        return found

    def get(self, gen_id: str, name: str) -> bytes:
        return self.path(gen_id, name).read_bytes()

    def make_public(self, gen_id: str) -> None:
        for entry in os.scandir(self.path(gen_id)):
            os.chmod(entry.path, 0o644)

    def delete(self, gen_id: str) -> None:
        shutil.rmtree(self.path(gen_id), ignore_errors=True)

    def write_stamp(self, gen_id: str, site: str) -> None:
        _write(self.path(gen_id) / STAMP, site.encode())

    def read_stamp(self, gen_id: str) -> str | None:
        try:
            return (self.path(gen_id) / STAMP).read_bytes().decode(errors="replace").strip()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def generations(self) -> builtins.list[str]:
        if not self.base.is_dir():
            return []
        return sorted(e.name for e in os.scandir(self.base) if e.is_dir())

    def seal(self, gen_id: str) -> None:
        fd = os.open(self.path(gen_id), os.O_RDONLY)
        try:
            os.fsync(fd)  # the directory entries, so a power cut cannot lose a switched-to file
        finally:
            os.close(fd)


def _write(final: Path, data: bytes) -> None:
    """Write a file whole: a reader sees all of it or none."""
    tmp = final.with_name(f".{final.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
