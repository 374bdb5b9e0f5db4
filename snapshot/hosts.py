"""Host names in their ASCII form, the one sitemaps publish and settings are compared in.

An internationalised name (`bücher.example`, or percent-encoded as RFC 3986 allows, `b%C3%BCcher.example`)
becomes its IDNA A-label form (`xn--bcher-kva.example`, UTS #46 mapping as browsers do); a name already in
ASCII is only lowercased, as it always was. So an allowed host given either way, and a document URL written
either way, meet on the same name.
"""

from __future__ import annotations

from urllib.parse import unquote

import idna


def ascii_host(host: str) -> str:
    """`host` in ASCII and lower case; ValueError saying why when it is not a valid internationalised name."""
    if host.isascii() and "%" not in host:
        return host.lower()
    try:
        name = unquote(host, errors="strict")
        return name.lower() if name.isascii() else idna.encode(name, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"host {host!r} is not a valid internationalised domain name ({exc})") from None
