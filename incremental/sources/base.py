"""The event source interface shared by the Kafka consumer and the file follower."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from sitemap_keeper.incremental.offsets import Position


@dataclass(slots=True)
class EventBatch:
    """Raw events, and the positions that frame them: what the manifest must hold before, and after."""

    items: list[tuple[str, bytes]] = field(default_factory=list)  # (source label, raw event)
    start: dict[Position, int | None] = field(default_factory=dict)  # None: nothing stored yet
    end: dict[Position, int] = field(default_factory=dict)
    keys: dict[str, bytes | None] = field(default_factory=dict)  # source label -> message key (Kafka)

    def __len__(self) -> int:
        return len(self.items)


class EventSource(ABC):
    """A stream of events with stored positions: it resumes where the manifest says, never where it thinks.

    Only the main loop calls its methods; other threads (the health server) read `status` and `lag`.
    """

    status: tuple[bool, str] = (False, "starting")  # can events flow, and if not why (for /readyz)
    lag: int | None = None  # events not consumed yet, when known (a followed file does not count them)
    unaccounted: int = 0  # times events were lost that the source could not account for (a file's rotation)
    dead_letter_topic: str | None = None  # where refused events are also sent, if anywhere

    @abstractmethod
    def poll(self, max_records: int, timeout: float) -> EventBatch | None:
        """The next events, at most `max_records`, waiting up to `timeout` seconds for some."""

    @abstractmethod
    def committed(self, batch: EventBatch) -> None:
        """The batch and its end positions are committed to the manifest."""

    @abstractmethod
    def rewind(self) -> None:
        """The last batch was not committed: go back to the positions stored in the manifest."""

    @abstractmethod
    def check(self) -> None:
        """Refresh `status` and `lag`; may block briefly."""

    def idle(self) -> None:  # noqa: B027
        """No events are taken for a while (a rebuild runs): keep the connection alive, hand nothing out."""

    def dead_letter(self, letters: list[tuple[str, str, bytes, bytes | None]]) -> None:  # noqa: B027
        """Also send refused events (label, reason, raw, key) elsewhere; the manifest has them already."""

    def close(self) -> None:  # noqa: B027
        """Release connections and files."""
