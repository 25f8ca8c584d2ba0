# syntax=docker/dockerfile:1
# passhouse: a small image (python:3.11-slim, two stages), run as a non-root user.
# Build: docker build -t passhouse .    Run: see compose.yaml and docs/deployment.md.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# The wheel carries the migrations and the example templates; the virtualenv holds it
# and its dependencies, and is all the runtime stage copies.
RUN python -m venv /opt/passhouse \
    && pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/passhouse/bin/pip install /wheels/passhouse-*.whl

FROM python:3.11-slim
ENV PATH=/opt/passhouse/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PASSHOUSE_DATA_DIR=/var/lib/passhouse/data
RUN groupadd --system --gid 10001 passhouse \
    && useradd --system --uid 10001 --gid passhouse --home-dir /var/lib/passhouse \
       --create-home --shell /usr/sbin/nologin passhouse
COPY --from=build /opt/passhouse /opt/passhouse
USER 10001:10001
# A SQLite database (the default URL is relative) and the data directory live here.
WORKDIR /var/lib/passhouse
VOLUME ["/var/lib/passhouse"]
EXPOSE 8000
# Readiness: 200 while the database answers, the schema is at head and pushes are sent
# (the default command runs a worker too); 503 otherwise. Liveness, for orchestrators
# that restart processes, is /livez. The image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]
ENTRYPOINT ["passhouse"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
