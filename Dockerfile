# plangate: one image for the worker, the ledger writer and the scripted LLM endpoint.
#   docker build -t plangate .        docker run --rm plangate --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY governance ./governance
COPY ledger ./ledger
COPY plangate_base ./plangate_base
# Install, then drop the sources: the package lives in site-packages.
# /ledger belongs to the unprivileged user so a named volume mounted there (which Docker seeds with
# this directory's owner) holds the SQLite ledger and its signing key.
RUN pip install . \
    && rm -rf /app/worker /app/governance /app/ledger /app/plangate_base \
    && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin plangate \
    && mkdir /ledger \
    && chown plangate:plangate /ledger

ENV PLANGATE_LEDGER_PATH=/ledger/plangate-ledger.db
USER plangate

# Exec form, so SIGTERM reaches plangate itself (compose adds a small init with `init: true`).
ENTRYPOINT ["plangate"]
CMD ["worker"]
