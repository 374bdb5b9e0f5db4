# syntax=docker/dockerfile:1
# Image for the `sitemaps` service: `docker build -t sitemaps .`
# Default command is the long-running `sitemaps run`; any other subcommand works too:
#   docker run --rm sitemaps status

# --- build: install the project and its dependencies into a self-contained venv ---
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# gcc builds snapshot/_fastrow.c, the C fast path that validates and renders documents (the rebuild's and the
# apply path's workers). setup.py lets an install without a compiler fall back to Python, several times slower:
# the import after the install makes this build fail instead.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# .dockerignore is an allow-list: only pyproject.toml, setup.py, README.md, LICENSE and the package folders reach
# the context.
COPY . .
RUN pip install --upgrade pip \
    && pip install . \
    && cd / && python -c "import sitemap_keeper.snapshot._fastrow"

# --- runtime: same base (the venv's python symlinks into it), no sources, no build leftovers ---
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A numeric UID/GID, so Kubernetes' runAsNonRoot can verify the user without a runAsUser override.
RUN groupadd --system --gid 10001 sitemaps \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin sitemaps \
    && install -d -o 10001 -g 10001 /var/lib/sitemaps

COPY --from=build /opt/venv /opt/venv

# The default SITEMAPS_DATA_DIR is relative (./sitemaps-data): /tmp is writable even with a
# read-only root (an emptyDir in Kubernetes, a tmpfs in compose). Compose sets /var/lib/sitemaps,
# owned by the service user here so that a named volume mounted on it starts with that owner.
WORKDIR /tmp
USER 10001:10001

EXPOSE 8080

# slim has no curl: probe with the interpreter that is there anyway (urlopen raises on non-2xx).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SITEMAPS_HTTP_PORT', '8080') + '/healthz', timeout=4)"]

# Exec form: `sitemaps` is PID 1 and receives SIGTERM itself; it installs its own handler,
# finishes the batch in hand and exits (PID 1 gets no default signal handling from the kernel).
ENTRYPOINT ["sitemaps"]
CMD ["run"]
