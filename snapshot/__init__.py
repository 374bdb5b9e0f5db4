"""The manifest, rendering, generations, stores and routers: all a one-shot command needs.

Installed as `sitemap_keeper.snapshot` (pyproject.toml maps this folder there). It never imports
`sitemap_keeper.incremental` (tests/test_packaging.py holds that).
"""

from sitemap_keeper._names import refuse_bare_import

refuse_bare_import(__name__, "sitemap_keeper.snapshot")
