"""The change-feed service's settings (`sitemaps run`, `sitemaps replay`): Kafka, the event format, the timers,
the probes and leader election, on top of the one-shot commands' (snapshot/settings.py). The option groups KAFKA
and SERVICE of incremental/cli/options.py take their defaults from here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from sitemap_keeper.snapshot.prune import KEEP
from sitemap_keeper.snapshot.settings import SECRET, Settings


@dataclass(frozen=True)
class ServiceSettings(Settings):
    kafka_bootstrap_servers: str | None = None
    kafka_topic: str = "documents"
    kafka_group: str = "sitemaps"
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    kafka_sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False, metadata=SECRET)
    kafka_ssl_cafile: str | None = None
    kafka_dead_letter_topic: str | None = None
    kafka_session_timeout: float = 10.0
    # Topics to consume instead of kafka_topic: comma-separated names, or a regular expression (docs/cdc.md)
    kafka_topics: str | None = None
    event_format: str = "native"  # or "debezium": change events of the tables the mapping reads
    mapping: Path | None = None  # the mapping file (snapshot/mapping.py)
    publish_interval: float = 300.0
    publish_threshold: int = 1000  # dirty shards that trigger a publish before the interval is up
    prune_interval: float = 3600.0
    keep: int = KEEP  # generations the prune timer keeps, the live one included
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    leader_election: str = "postgres"  # postgres (the manifest's advisory lock), lease (Kubernetes), none
    lease_name: str = "sitemaps-publisher"
    lease_namespace: str = "default"

    @classmethod
    def of(cls, settings: Settings) -> ServiceSettings:
        """`settings` as the service's, its own settings at their defaults (a one-shot command's App)."""
        if isinstance(settings, ServiceSettings):
            return settings
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)})


def default(name: str) -> object:
    """The default of the setting `name`: the one place it is written (an option's default refers to it)."""
    found = FIELDS[name]
    assert found.default is not dataclasses.MISSING, name
    return found.default


FIELDS = {f.name: f for f in dataclasses.fields(ServiceSettings)}
