"""Settings options, each also an environment variable SITEMAPS_<NAME>, in named groups.

A command declares the groups whose settings its code reads, and its --help lists only those:

    @click.command("robots")
    @with_app(MANIFEST, SITE, ROUTER)
    def command(app: App) -> None: ...

A bare `@with_app` attaches every group (SHARED). To add a setting (a `Settings` field of the same name),
append it to the one group it belongs to; every command declaring that group gets it. An option only one
command uses is a plain `option(...)` on that command instead. The groups are documented in README.md
("Configuration"); tests/test_cli_help.py checks each command's help against what its code reads.

A command's --help describes its own options in full and names its settings only, one line per group; they
are described once, by `sitemaps settings [GROUP]` (incremental/cli/settings.py).
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, overload

import click

from sitemap_keeper.incremental.app import App
from sitemap_keeper.incremental.settings import ServiceSettings, default
from sitemap_keeper.snapshot.manifest.errors import NoManifest

F = TypeVar("F", bound=Callable[..., Any])


def _hosts(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...]:
    return tuple(h.strip() for h in (value or "").split(",") if h.strip())


class Setting(click.Option):
    """A settings option: it parses as any option, and a command's --help names it under its group instead of
    describing it (`_help`)."""

    def __init__(self, *args: Any, group: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        return None


class Group(NamedTuple):
    """Settings options that go together: (option, settings field, click keyword arguments) each. An option's
    default is its field's (`ServiceSettings`, written there once): the keyword arguments never give one."""

    name: str
    options: list[tuple[str, str, dict[str, Any]]]


MANIFEST = Group(
    "manifest",
    [
        (
            "--data-dir",
            "data_dir",
            {"type": click.Path(path_type=Path), "help": "Where the embedded manifest and the local store live."},
        ),
        (
            "--database-url",
            "database_url",
            {"help": "SQLAlchemy URL of the manifest (default: SQLite in the data dir)."},
        ),
    ],
)
SITE = Group(
    "site",
    [
        ("--base-url", "base_url", {"help": "Public URL the sitemap files are served under."}),
        (
            "--allowed-hosts",
            "allowed_hosts",
            {
                "callback": _hosts,
                "help": "Comma-separated hosts document URLs may be on (default: the base URL's host).",
            },
        ),
    ],
)
LIMITS = Group(
    "limits",
    [
        ("--max-urls", "max_urls", {"type": int, "help": "URLs per shard, at most 50,000."}),
        ("--max-bytes", "max_bytes", {"type": int, "help": "Uncompressed bytes per shard, at most 50 MiB."}),
        ("--max-index-entries", "max_index_entries", {"type": int, "help": "Entries per index file, at most 50,000."}),
        (
            "--max-shrink",
            "max_shrink",
            {
                "type": click.FloatRange(0, 1),
                "help": "Refuse a rebuild or publish that would remove more than this fraction of the site's URLs "
                "(a truncated source, a replay of a topic that lost events); 1 allows any.",
            },
        ),
        ("--workers", "workers", {"type": int, "help": "Processes for rendering and parsing."}),
    ],
)
STORE = Group(
    "store",
    [
        ("--storage", "storage", {"type": click.Choice(["local", "s3"]), "help": "Where generations are stored."}),
        ("--s3-endpoint", "s3_endpoint", {"help": "S3/MinIO endpoint, host:port."}),
        ("--s3-access-key", "s3_access_key", {"help": "S3 access key id."}),
        ("--s3-secret-key", "s3_secret_key", {"help": "S3 secret key (never logged)."}),
        ("--s3-secure", "s3_secure", {"type": bool, "help": "Use TLS for S3 (true/false)."}),
        ("--s3-region", "s3_region", {"help": "S3 region (bucket location)."}),
        ("--bucket-prefix", "bucket_prefix", {"help": "Prefix of generation bucket names."}),
        (
            "--s3-layout",
            "s3_layout",
            {
                "type": click.Choice(["buckets", "prefix"]),
                "help": "A bucket per generation, or one bucket with generations/<id>/.",
            },
        ),
        ("--s3-bucket", "s3_bucket", {"help": "The one bucket of the prefix layout."}),
        (
            "--s3-public-read",
            "s3_public_read",
            {
                "type": bool,
                "help": "Give each generation a public-read bucket policy (false: "
                "only when reads go through an authenticated proxy).",
            },
        ),
    ],
)
ROUTER = Group(
    "router",
    [
        (
            "--router",
            "router",
            {
                "type": click.Choice(["local", "ingress", "httproute"]),
                "help": "What points the world at the live generation.",
            },
        ),
        (
            "--kube-api",
            "kube_api",
            {"help": "Kubernetes API URL (as with kubectl proxy); else in-cluster or kubeconfig."},
        ),
        ("--router-namespace", "router_namespace", {"help": "Namespace of the Ingress or HTTPRoute."}),
        ("--ingress-name", "ingress_name", {"help": "Name of the Ingress."}),
        ("--router-label", "router_label", {"help": "Label of the Ingress or HTTPRoute naming the live bucket."}),
        ("--ingress-annotation", "ingress_annotation", {"help": "Annotation rewriting requests to the bucket."}),
        (
            "--ingress-annotation-value",
            "ingress_annotation_value",
            {"help": "Its value; {bucket}, {generation} and {path} are replaced."},
        ),
        ("--httproute-name", "httproute_name", {"help": "Name of the Gateway API HTTPRoute."}),
    ],
)
INDEXNOW = Group(
    "indexnow",
    [
        ("--indexnow-key", "indexnow_key", {"help": "IndexNow key (8-128 of a-z A-Z 0-9 -): enables IndexNow."}),
        (
            "--indexnow-endpoints",
            "indexnow_endpoints",
            {
                "callback": _hosts,
                "help": "Comma-separated IndexNow endpoints (default: https://api.indexnow.org/indexnow).",
            },
        ),
        (
            "--indexnow-key-location",
            "indexnow_key_location",
            {"help": "URL of the key file, {scheme} {host} {key} filled in (default: <site root>/<key>.txt)."},
        ),
        (
            "--indexnow-timeout",
            "indexnow_timeout",
            {"type": float, "help": "Seconds one generation's IndexNow submission may take."},
        ),
    ],
)
# How many generations stay: `prune`, and the service's prune timer.
PRUNE = Group(
    "prune",
    [
        ("--keep", "keep", {"type": int, "help": "Published generations to keep, the live one included."}),
    ],
)
# The change-feed service: `run` and `replay` (incremental/settings.py).
KAFKA = Group(
    "kafka",
    [
        (
            "--kafka-bootstrap-servers",
            "kafka_bootstrap_servers",
            {"help": "Kafka brokers, host:port[,host:port...] (run and replay)."},
        ),
        ("--kafka-topic", "kafka_topic", {"help": "Topic of document events, keyed by document."}),
        (
            "--kafka-topics",
            "kafka_topics",
            {
                "help": "Topics instead of --kafka-topic: comma-separated names, or a regular expression (one Debezium "
                "topic per table)."
            },
        ),
        ("--kafka-group", "kafka_group", {"help": "Consumer group the replicas share."}),
        (
            "--kafka-security-protocol",
            "kafka_security_protocol",
            {
                "type": click.Choice(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]),
                "help": "How to talk to the brokers.",
            },
        ),
        (
            "--kafka-sasl-mechanism",
            "kafka_sasl_mechanism",
            {
                "type": click.Choice(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
                "help": "SASL mechanism (with a SASL_* protocol).",
            },
        ),
        ("--kafka-sasl-username", "kafka_sasl_username", {"help": "SASL user name."}),
        ("--kafka-sasl-password", "kafka_sasl_password", {"help": "SASL password (never logged)."}),
        ("--kafka-ssl-cafile", "kafka_ssl_cafile", {"help": "CA bundle to verify the brokers with."}),
        (
            "--kafka-dead-letter-topic",
            "kafka_dead_letter_topic",
            {"help": "Also send refused events here (the dead-letter table has them anyway)."},
        ),
        (
            "--kafka-session-timeout",
            "kafka_session_timeout",
            {"type": float, "help": "Seconds before the group gives a silent replica's partitions to another."},
        ),
    ],
)
SERVICE = Group(
    "service",
    [
        (
            "--publish-interval",
            "publish_interval",
            {"type": float, "help": "Seconds between publishes (when shards are dirty)."},
        ),
        (
            "--publish-threshold",
            "publish_threshold",
            {"type": int, "help": "Dirty shards that trigger a publish at once."},
        ),
        ("--prune-interval", "prune_interval", {"type": float, "help": "Seconds between prunes."}),
        ("--http-host", "http_host", {"help": "Address of /healthz, /readyz and /metrics."}),
        ("--http-port", "http_port", {"type": int, "help": "Port of /healthz, /readyz and /metrics."}),
        (
            "--leader-election",
            "leader_election",
            {
                "type": click.Choice(["postgres", "lease", "none"]),
                "help": "Who publishes among replicas: the manifest's lock only, or a Kubernetes Lease too.",
            },
        ),
        ("--lease-name", "lease_name", {"help": "Name of the Lease."}),
        ("--lease-namespace", "lease_namespace", {"help": "Namespace of the Lease."}),
    ],
)
GROUPS = (MANIFEST, SITE, LIMITS, STORE, ROUTER, INDEXNOW, PRUNE, KAFKA, SERVICE)
# Every settings option, in the order of GROUPS: what a bare `@with_app` attaches.
SHARED: list[tuple[str, str, dict[str, Any]]] = [o for g in GROUPS for o in g.options]
# What a command that publishes reads: the manifest, the documents' rules, the limits, the store, the router
# and IndexNow (announced after the switch).
PUBLISHING = (MANIFEST, SITE, LIMITS, STORE, ROUTER, INDEXNOW)


def extra_fields_option(fn: F) -> F:
    """--extra-fields for the commands that read documents or events (apply, rebuild, run, replay): it sets
    the App's settings before the command runs."""
    opt = option(
        "--extra-fields",
        type=click.Choice(["reject", "ignore"]),
        default=option_default("extra_fields"),
        help="An unknown field (a misspelt `lastMod`): dead-letter it, naming the field (reject), or "
        "drop the field (ignore).",
    )

    @functools.wraps(fn)
    def wrapper(app: App, *args: Any, extra_fields: str, **kwargs: Any) -> Any:
        app.settings = app.settings.replace(extra_fields=extra_fields)
        return fn(app, *args, **kwargs)

    return opt(wrapper)  # type: ignore[return-value]


def envvar(option: str) -> str:
    return "SITEMAPS_" + option.lstrip("-").replace("-", "_").upper()


def option(name: str, *decls: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option that is also the environment variable SITEMAPS_<NAME>."""
    return click.option(name, *decls, envvar=envvar(name.split("/")[0]), show_envvar=True, show_default=True, **kwargs)


@overload
def with_app(fn: F, /) -> F: ...


@overload
def with_app(*groups: Group) -> Callable[[F], F]: ...


def with_app(*groups: Any) -> Any:
    """`@with_app(GROUP, ...)`: add those groups' options to a command and hand it an `App` built from them
    (settings of the groups left out keep their defaults). A bare `@with_app` adds every group."""
    if len(groups) == 1 and callable(groups[0]):
        return _with_options(GROUPS, groups[0])
    return functools.partial(_with_options, groups)


def with_reader(*groups: Group) -> Callable[[F], F]:
    """`@with_app(GROUP, ...)` for a command that only reads: the manifest is never created or changed, and where
    there is none the command says so in one line (exit status 1)."""
    return functools.partial(_with_options, groups, read_only=True)


def described(opt: str, field: str, kw: dict[str, Any]) -> click.Option:
    """A settings option as a plain click option, whose help record describes it in full (`sitemaps settings`)."""
    return click.Option(
        [opt, field], envvar=envvar(opt), show_envvar=True, show_default=True, default=option_default(field), **kw
    )


def option_default(field: str) -> Any:
    """The option's default: its setting's, as the option reads it (a tuple of names as a comma-separated list)."""
    value = default(field)
    return ",".join(value) if isinstance(value, tuple) else value


def _help(ctx: click.Context, help_option: click.Parameter, value: bool) -> None:
    """--help of a command with settings: click's, with the settings named by group after the command's own
    options, and --help listed last as click lists it (`click.command` builds a plain click.Command)."""
    if not value or ctx.resilient_parsing:
        return
    command, formatter = ctx.command, ctx.make_formatter()
    command.format_usage(ctx, formatter)
    command.format_help_text(ctx, formatter)
    command.format_arguments(ctx, formatter)
    params = [p for p in command.get_params(ctx) if p is not help_option] + [help_option]
    with formatter.section("Options"):
        formatter.write_dl([r for p in params if not isinstance(p, click.Argument) and (r := p.get_help_record(ctx))])
    names: dict[str, list[str]] = {}
    for param in params:
        if isinstance(param, Setting):
            names.setdefault(param.group, []).append(param.opts[0])
    with formatter.section("Settings"):
        formatter.write_text(
            "Each is also an environment variable SITEMAPS_<NAME>; `sitemaps settings GROUP` describes them."
        )
        write_names(formatter, names)
    command.format_epilog(ctx, formatter)
    click.echo(formatter.getvalue().rstrip("\n"), color=ctx.color)
    ctx.exit()


def write_names(formatter: click.HelpFormatter, names: dict[str, list[str]]) -> None:
    """One row per label (a group): the label, then the names (its options), wrapped between names, never inside one."""
    first = max(map(len, names)) + 2
    indent = " " * formatter.current_indent
    width = max(formatter.width - formatter.current_indent - first, 20)
    for group, opts in names.items():
        lines = textwrap.wrap(", ".join(opts), width, break_on_hyphens=False, break_long_words=False)
        formatter.write(f"{indent}{group:<{first}}{lines[0]}\n")
        formatter.write("".join(f"{indent}{'':<{first}}{line}\n" for line in lines[1:]))


def _with_options(groups: tuple[Group, ...], fn: F, read_only: bool = False) -> F:
    options = [(group.name, o) for group in groups for o in group.options]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {field: kwargs.pop(field) for _group, (_opt, field, _kw) in options}
        try:
            settings = ServiceSettings(**values)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        app = App(settings, read_only)
        try:
            if read_only:
                app.manifest  # noqa: B018 - no manifest: say so before anything else is looked at
            return fn(app, *args, **kwargs)
        except NoManifest as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            app.close()

    wrapper = click.option(
        "-h",
        "--help",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_help,
        help="Show this message and exit.",
    )(wrapper)
    for group, (opt, field, kw) in reversed(options):
        wrapper = option(opt, field, cls=Setting, group=group, default=option_default(field), **kw)(wrapper)
    return wrapper  # type: ignore[return-value]
