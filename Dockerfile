# syntax=docker/dockerfile:1
# The base is pinned to an exact release; to pin its digest too, write the line as
# python:3.11.9-slim-bookworm@sha256:<digest>, the digest from
# `docker buildx imagetools inspect python:3.11.9-slim-bookworm`.
# Two stages: the builder turns the source into wheels (ours and every dependency's); the final
# image installs those wheels and keeps neither the source tree nor any build tooling.

FROM python:3.11.9-slim-bookworm AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.9-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The wheels are mounted, not copied, so they leave no layer behind.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels sms-worker \
    && useradd --create-home --uid 10001 --user-group sms
# A numeric user, so an orchestrator can verify it is not root.
USER 10001:10001
# Beat keeps its schedule file here; nothing else is written to disk.
WORKDIR /home/sms
# 8080: sms-worker simulator, 8090: sms-worker receiver.
EXPOSE 8080 8090
# No entrypoint: each service runs `sms-worker ...` or `celery -A worker ...` as its command.
CMD ["sms-worker", "--help"]
