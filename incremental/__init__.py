"""Change events, the long-running service and the `sitemaps` command, on top of `sitemap_keeper.snapshot`.

Installed as `sitemap_keeper.incremental` (pyproject.toml maps this folder there).
"""

from sitemap_keeper._names import refuse_bare_import

refuse_bare_import(__name__, "sitemap_keeper.incremental")
