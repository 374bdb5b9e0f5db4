"""`python -m sitemap_keeper ...` is the `sitemaps` command."""

from sitemap_keeper.incremental.cli import main

main()
