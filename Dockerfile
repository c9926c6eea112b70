# hotpath: production image. Build: docker build -t hotpath .
# Run:   docker run -p 8080:8080 -e HOTPATH_REDIS_URL=redis://redis:6379/0 hotpath
# compose.yaml beside this file runs it with Redis.
FROM python:3.11-slim AS build
# A C compiler for the mypyc build of the ingest's per-message code (setup.py); only in this
# stage: the image gets the compiled modules, not the compiler.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m venv /opt/hotpath
COPY pyproject.toml setup.py README.md ./
COPY hotpath ./hotpath
RUN HOTPATH_COMPILE=1 /opt/hotpath/bin/pip install --no-cache-dir .

FROM python:3.11-slim
# redis-server is only used when HOTPATH_REDIS_URL is unset (embedded, single node).
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home hotpath
COPY --from=build /opt/hotpath /opt/hotpath
ENV PATH=/opt/hotpath/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOTPATH_HOST=0.0.0.0 \
    HOTPATH_PORT=8080 \
    HOTPATH_SHUTDOWN_GRACE=5 \
    HOTPATH_SHUTDOWN_WINDOW=10
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2).status != 200)"]
# SIGTERM starts the drain: /health answers 503 for HOTPATH_SHUTDOWN_GRACE seconds, then
# clients are closed with 1001 over HOTPATH_SHUTDOWN_WINDOW seconds. Stop with a grace
# period longer than both: docker stop -t 30 (compose: stop_grace_period: 30s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["hotpath", "serve"]
