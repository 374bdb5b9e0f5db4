"""Telling search engines what changed: after each switch, record the diff and submit it to IndexNow.

The publisher's `on_switch` hook (`Announcer`) hands the work to one background thread, so a publish never
waits for it and publishes are announced in order. IndexNow (indexnow.org) gets the added and changed URLs,
at most 10,000 per POST, one host per POST with that host's keyLocation; 429 and 5xx (and no answer) are
retried with backoff within a time budget, anything else is final. The outcome is recorded per generation
and endpoint. The key is public by design (anyone can read the key file), so it is shown and logged freely.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from sitemap_keeper.snapshot import calls, diff
from sitemap_keeper.snapshot.manifest import Manifest
from sitemap_keeper.snapshot.manifest.records import Submission
from sitemap_keeper.snapshot.stores.base import Store

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://api.indexnow.org/indexnow"
# Where engines fetch the key to check it: on the submitted URLs' own host. {scheme}, {host} (with any
# port) and {key} are filled in per host.
DEFAULT_KEY_LOCATION = "{scheme}://{host}/{key}.txt"
KEY_RE = re.compile(r"[a-zA-Z0-9-]{8,128}")
BATCH_SIZE = 10_000  # the protocol's limit of URLs per POST
ATTEMPTS = 5  # per batch and endpoint, on 429, 5xx or no answer
REQUEST_TIMEOUT = 30.0
RETRYABLE = frozenset({0, 429}) | frozenset(range(500, 600))  # 0: no answer at all


@dataclass(frozen=True)
class IndexNowConfig:
    key: str
    endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    key_location: str = DEFAULT_KEY_LOCATION
    timeout: float = 45.0  # seconds from a generation's first POST on; later batches are given up
    backoff: float = 1.0  # first retry delay when the endpoint sends no Retry-After; doubles each time

    def __post_init__(self) -> None:
        if not KEY_RE.fullmatch(self.key):
            raise ValueError(f"the IndexNow key must be 8 to 128 characters of a-z, A-Z, 0-9 and '-', got {self.key!r}")
        for url in self.endpoints:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                raise ValueError(f"an IndexNow endpoint must be an http(s) URL, got {url!r}")
        if self.timeout <= 0:
            raise ValueError(f"the IndexNow timeout must be positive, got {self.timeout}")
        try:
            sample = urlsplit(self.location("https", "example.com"))
        except (KeyError, IndexError, ValueError):
            sample = None
        if sample is None or sample.scheme not in ("http", "https") or not sample.hostname:
            raise ValueError(
                "the IndexNow key location must be an http(s) URL, which may use {scheme}, "
                f"{{host}} and {{key}}; got {self.key_location!r}"
            )

    @classmethod
    def from_settings(
        cls, key: str | None, endpoints: tuple[str, ...], key_location: str | None, timeout: float
    ) -> IndexNowConfig | None:
        """None (IndexNow off) without a key."""
        if not key:
            return None
        return cls(key, endpoints or (DEFAULT_ENDPOINT,), key_location or DEFAULT_KEY_LOCATION, timeout)

    @property
    def key_file(self) -> dict[str, bytes]:
        """The key file published into every generation (so it is served under the sitemaps base URL)."""
        return {f"{self.key}.txt": self.key.encode()}

    def location(self, scheme: str, host: str) -> str:
        return self.key_location.format(scheme=scheme, host=host, key=self.key)


Post = Callable[[str, bytes, float], tuple[int, str | None]]  # (url, body, timeout) -> (status, Retry-After)


def http_post(url: str, body: bytes, timeout: float) -> tuple[int, str | None]:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return int(resp.status), resp.headers.get("Retry-After")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Retry-After")
    except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, timed out, garbled: no status
        log.debug("IndexNow POST to %s got no answer: %s", url, exc)
        return 0, None


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass
class Outcome:
    """What one endpoint did with one generation's URLs."""

    endpoint: str
    urls: int = 0  # URLs that were to be submitted
    batches: int = 0  # POSTs of distinct batches (retries not counted)
    submitted: int = 0  # URLs in batches answered 200 or 202
    statuses: Counter[int] = field(default_factory=Counter)  # every answer, retries included (0: none)
    gave_up: bool = False
    message: str = ""


class Submitter:
    """Collects URLs into per-host batches and POSTs each full batch to every endpoint."""

    def __init__(
        self, config: IndexNowConfig, post: Post = http_post, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.config = config
        self.post = post
        self.sleep = sleep
        self.outcomes = {e: Outcome(e) for e in config.endpoints}
        self.pending: dict[tuple[str, str], list[str]] = {}
        self.deadline: float | None = None  # set by the first POST: reading the diff is not counted

    def add(self, url: str) -> None:
        parts = urlsplit(url)
        batch = self.pending.setdefault((parts.scheme, parts.netloc), [])
        batch.append(url)
        if len(batch) >= BATCH_SIZE:
            self._send(parts.scheme, parts.netloc, self.pending.pop((parts.scheme, parts.netloc)))

    def finish(self) -> list[Outcome]:
        for scheme, netloc in sorted(self.pending):
            self._send(scheme, netloc, self.pending.pop((scheme, netloc)))
        return list(self.outcomes.values())

    def _send(self, scheme: str, netloc: str, urls: list[str]) -> None:
        body = json.dumps(
            {
                "host": urlsplit(f"{scheme}://{netloc}").hostname,
                "key": self.config.key,
                "keyLocation": self.config.location(scheme, netloc),
                "urlList": urls,
            }
        ).encode()
        for out in self.outcomes.values():
            out.urls += len(urls)
            if not out.gave_up:
                out.batches += 1
                self._post(out, body, len(urls))

    def _post(self, out: Outcome, body: bytes, count: int) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.config.timeout
        for attempt in range(1, ATTEMPTS + 1):
            left = self.deadline - time.monotonic()
            if left <= 0:
                self._give_up(out, f"out of time after {self.config.timeout:g}s")
                return
            status, after = self.post(out.endpoint, body, min(REQUEST_TIMEOUT, left))
            out.statuses[status] += 1
            if status in (200, 202):
                calls.record("indexnow", "ok")
                out.submitted += count
                return
            calls.record("indexnow", "retried" if status in RETRYABLE and attempt < ATTEMPTS else "failed")
            if status == 403:  # every later batch would be refused the same way
                self._give_up(out, "403: the key was refused; is keyLocation serving it?")
                return
            if status not in RETRYABLE:  # 400, 422: this batch only (another host's may be fine)
                out.message = f"a batch of {count} URLs was refused with {status}"
                log.warning("IndexNow %s: %s", out.endpoint, out.message)
                return
            delay = retry_after(after)
            delay = self.config.backoff * 2 ** (attempt - 1) if delay is None else delay
            if attempt == ATTEMPTS or time.monotonic() + delay >= self.deadline:
                why = "attempts" if attempt == ATTEMPTS else "time"
                self._give_up(out, f"still {status or 'no answer'} when out of {why}")
                return
            self.sleep(delay)

    @staticmethod
    def _give_up(out: Outcome, why: str) -> None:
        out.gave_up = True
        out.message = f"gave up: {why}"
        log.warning("IndexNow %s %s", out.endpoint, out.message)


# -- recorded outcomes --------------------------------------------------------------------------------------


def record(manifest: Manifest, gen_id: str, outcomes: list[Outcome]) -> None:
    manifest.submissions.record(
        gen_id,
        [
            Submission(o.endpoint, o.urls, o.batches, o.submitted, dict(o.statuses), o.gave_up, o.message)
            for o in outcomes
        ],
    )


def last_outcomes(manifest: Manifest) -> list[dict[str, Any]]:
    """The outcomes of the newest generation that has any, one per endpoint."""
    return manifest.submissions.newest()


# -- the after-switch hook ----------------------------------------------------------------------------------


class Announcer:
    """`Publisher.on_switch`: record what the new generation changed and tell IndexNow, in the background."""

    def __init__(self, manifest: Manifest, store: Store, config: IndexNowConfig | None, workers: int = 1) -> None:
        self.manifest = manifest
        self.store = store
        self.config = config
        self.workers = workers  # processes comparing the changed shards
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sitemaps-announce")

    def __call__(self, new_id: str, old_id: str | None) -> None:
        self.pool.submit(self._run, new_id, old_id)

    def wait(self) -> None:
        """Return once every generation handed over so far is announced (one worker: first in, first out)."""
        self.pool.submit(lambda: None).result()

    def close(self) -> None:
        """Wait for what was handed over (bounded by the IndexNow timeout per generation)."""
        self.pool.shutdown(wait=True)

    def _run(self, new_id: str, old_id: str | None) -> None:
        try:
            self.announce(new_id, old_id)
        except Exception:
            log.exception("telling what generation %s changed failed; it is live all the same", new_id)

    def announce(self, new_id: str, old_id: str | None) -> None:
        endpoints = self.config.endpoints if self.config else ()
        try:
            comparison = diff.compare(self.manifest, self.store, old_id, new_id, self.workers)
            if self.config is None or old_id is None:
                counts = comparison.summary()
                outcomes = [Outcome(e, message="first generation: engines read the sitemaps") for e in endpoints]
            else:
                submitter = Submitter(self.config)
                counts = comparison.zero_counts()
                for change in diff.tally(comparison.changes(), counts):
                    if change.kind != "removed":
                        submitter.add(change.loc)
                outcomes = submitter.finish()
        except diff.DiffUnavailable as exc:
            log.warning("cannot tell what generation %s changed: %s", new_id, exc)
            if endpoints:
                record(self.manifest, new_id, [Outcome(e, gave_up=True, message=str(exc)) for e in endpoints])
            return
        diff.record(self.manifest, new_id, old_id, counts)
        if outcomes:
            record(self.manifest, new_id, outcomes)
            for o in outcomes:
                log.info(
                    "IndexNow %s: %d of %d URLs of generation %s accepted in %d batches %s",
                    o.endpoint,
                    o.submitted,
                    o.urls,
                    new_id,
                    o.batches,
                    dict(o.statuses),
                )
