"""sitemap-keeper: always-fresh, never half-published sitemaps for very large sites.

The repository keeps two folders at its top, installed under this package (pyproject.toml's package-dir):
`snapshot/` is `sitemap_keeper.snapshot` (the manifest, rendering, generations, stores and routers: everything
a one-shot command needs) and `incremental/` is `sitemap_keeper.incremental` (change events, the service and
the `sitemaps` command). `snapshot` never imports `incremental`.
"""

DISTRIBUTION = "sitemap-keeper"
