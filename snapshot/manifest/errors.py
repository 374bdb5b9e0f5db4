"""What the manifest refuses, and why."""

from __future__ import annotations


class PublishLockHeld(RuntimeError):
    """Another process is publishing or pruning right now."""


class RebuildRunning(RuntimeError):
    """A rebuild is loading this manifest: events are applied once it has swapped its tables in (or failed)."""


class NoManifest(RuntimeError):
    """A command that only reads was pointed at a database (or a path) that holds no manifest."""


class ReadOnly(RuntimeError):
    """A write to a manifest opened for reading only (`Manifest.open_existing`)."""


class ManifestDamaged(RuntimeError):
    """The manifest contradicts itself (it was changed by hand, or a store lost data)."""
