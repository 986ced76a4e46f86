# The CDS service under gunicorn (cds-service serve --production), as a non-root user.
# Also the image of the one-shot fhir-loader (deploy/load_fixtures.py + fixtures/).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 cds \
    && useradd --system --uid 10001 --gid cds --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin cds

WORKDIR /app

# Only what `pip install .` needs (no tests, no dev extras), then the loader and its data.
COPY pyproject.toml README.md ./
COPY cds_service/ cds_service/
COPY hooks/ hooks/
RUN pip install . && rm -rf build *.egg-info
COPY fixtures/ fixtures/
COPY deploy/load_fixtures.py deploy/load_fixtures.py

# Writable places for the unprivileged user: the default SQLite folder (a single container
# without CDS_DATABASE_URL) and the Prometheus multiprocess files (emptied at each start).
ENV PROMETHEUS_MULTIPROC_DIR=/var/lib/cds-service/metrics
RUN mkdir -p /app/instance "$PROMETHEUS_MULTIPROC_DIR" \
    && chown -R cds:cds /app/instance /var/lib/cds-service

USER cds

EXPOSE 8080

# No curl in slim images: the liveness probe is a few lines of Python.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]

CMD ["cds-service", "serve", "--production", "--host", "0.0.0.0", "--port", "8080"]
