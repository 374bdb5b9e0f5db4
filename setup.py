"""The one thing pyproject.toml cannot say without an experimental table: the C extension.

snapshot/_fastrow.c validates and renders the common document (snapshot/render.py says why). It is optional:
without a C compiler the install still succeeds, and the Python code does all the work, more slowly.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sitemap_keeper.snapshot._fastrow", ["snapshot/_fastrow.c"], optional=True)])
