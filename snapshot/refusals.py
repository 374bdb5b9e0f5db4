"""Why a rebuild, publish or prune stops on purpose: for the site's sake, not a failure to retry. Raised by
snapshot/rebuild.py, snapshot/publish.py and snapshot/prune.py; the CLI and the service tell them apart from
failures."""

from __future__ import annotations


class EmptyManifest(RuntimeError):
    """A publish or a rebuild would leave the site without a single URL."""


class Refused(RuntimeError):
    """A publish refused for the live site's sake: an operator's decision, not a failure to retry."""


class ForeignLive(Refused):
    """The router serves a generation this manifest never published: an incremental publish is refused."""


class SiteShrank(Refused):
    """The new generation would hold far fewer URLs than the live one."""


class Held(Refused):
    """An operator holds the site where it is (snapshot/hold.py): nothing is switched until it is released."""
