# syntax=docker/dockerfile:1
# Pitcrew image: dependencies come from uv.lock only (`uv sync --frozen`), the runtime stage holds
# the virtualenv and nothing else, and the process runs as a numeric non-root user.
#
#   docker build -t registry.example.com/platform/pitcrew:0.1.0 .
#
# The base image is pinned by tag. For bit-for-bit rebuilds pin it by digest as well, e.g.
#   --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest>
# (`docker buildx imagetools inspect python:3.11-slim` prints the digest) and let Renovate or
# Dependabot bump it. Both stages must use the same image: the venv's python is a symlink to the
# base image's /usr/local/bin/python3.11.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

# Same uv as the Makefile (UV_VERSION), so the lock file is read the same way everywhere.
RUN pip install --no-cache-dir --disable-pip-version-check uv==0.13.9

WORKDIR /src

# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --no-install-project

# Then the project itself, installed as a regular (non-editable) package into the venv.
COPY README.md ./
COPY bot/ ./bot/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="pitcrew" \
      org.opencontainers.image.description="ChatOps Slack bot for GitOps delivery to Kubernetes with GitLab" \
      org.opencontainers.image.licenses="Apache-2.0"

# A numeric UID/GID so that Kubernetes can enforce runAsNonRoot; the passwd entry exists for
# libraries that look the user up. STATE_DIR is the only place the process writes (plus /tmp).
RUN groupadd --system --gid 10001 pitcrew \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin pitcrew \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/pitcrew

# Owned by root and read-only for the app user: the code cannot be modified at run time.
COPY --from=builder /app/.venv /app/.venv

# MPLCONFIGDIR: matplotlib (the weekly digest's chart) keeps its font cache there; the home
# directory does not exist and the root filesystem is read-only, /tmp is writable.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STATE_DIR=/var/lib/pitcrew \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app
USER 10001:10001
EXPOSE 3000

# No HEALTHCHECK: Kubernetes ignores it and probes GET /healthz (liveness) and GET /readyz
# (readiness) instead, see manifests/base/deployment.yaml. With plain Docker, add
# `--health-cmd` to `docker run` if you want one.
#
# pitcrew runs as PID 1: `pitcrew serve` handles SIGTERM itself (drains, then exits) and waits
# for its only child process (the embedded Redis), so no init shim is needed.
ENTRYPOINT ["pitcrew"]
CMD ["serve"]
