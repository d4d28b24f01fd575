# syntax=docker/dockerfile:1
#
# The booking service and the chaos harness in one slim image.
#
#   docker build -t booking .                          # everything built inside
#   docker build --target runtime-prebuilt -t booking . # binaries built on the host
#
# `runtime-prebuilt` takes `prebuilt/booking`, `prebuilt/booking-harness` and
# `prebuilt/static/` (the built front end) from the build context, for
# machines that have no Rust or Node image to build with (see docs/DEPLOY.md).
# Base images are arguments with the upstream defaults.

ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG NODE_IMAGE=node:22-bookworm-slim
ARG RUST_IMAGE=rust:1-slim-bookworm

# --- what every runtime has: CA roots (JWKS over https), a user, folders ---
# Stages a target does not need come after it, so the classic builder (which
# builds every stage before the target) never needs the Node or Rust image
# for `runtime-prebuilt`.
FROM ${RUNTIME_IMAGE} AS runtime-base
# ca-certificates follows the distribution's archive; a pinned version would
# break the build whenever the archive moves on.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 booking \
    && useradd --system --uid 10001 --gid booking --home-dir /nonexistent --shell /usr/sbin/nologin booking \
    && mkdir -p /opt/booking/static /opt/booking/scenarios /var/lib/booking \
    && chown booking:booking /var/lib/booking
COPY scenarios/ /opt/booking/scenarios/
ENV LISTEN_ADDR=0.0.0.0:3000 \
    STATIC_DIR=/opt/booking/static \
    DATABASE_URL=sqlite:///var/lib/booking/booking.db \
    LOG_FORMAT=json
WORKDIR /var/lib/booking
EXPOSE 3000
# `booking probe` asks /health on loopback at LISTEN_ADDR's port (which
# another LISTEN_ADDR may change, e.g. on the host's network).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["booking", "probe"]
USER 10001:10001
ENTRYPOINT ["booking"]
CMD ["serve"]

# --- binaries built on the host ----------------------------------------------
FROM runtime-base AS runtime-prebuilt
# No --chmod (BuildKit only): the classic builder of Docker 20.10 builds this
# target too; COPY keeps the files' modes, and cargo's binaries are 0755.
COPY prebuilt/booking prebuilt/booking-harness /usr/local/bin/
COPY prebuilt/static/ /opt/booking/static/

# --- the front end ------------------------------------------------------------
FROM ${NODE_IMAGE} AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

# --- the service and the harness, release build -----------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY app/ app/
COPY harness/ harness/
COPY benches/ benches/
RUN cargo build --release --locked -p booking -p booking-harness --bins \
    && cp target/release/booking target/release/booking-harness /usr/local/bin/

# --- the default image ---------------------------------------------------------
FROM runtime-base AS runtime
COPY --from=build /usr/local/bin/booking /usr/local/bin/booking-harness /usr/local/bin/
COPY --from=frontend /src/frontend/dist/ /opt/booking/static/
