# syntax=docker/dockerfile:1
#
# kinesis-relay container image: the relay and the client, on a small Debian runtime,
# running as a fixed non-root user.
#
#   docker build -t kinesis-relay .
#   docker run --rm -p 50051:50051 kinesis-relay --embedded --demo-producer 10
#
# The build needs BuildKit (the default builder of current Docker) for the cache mounts.

# ---- build ---------------------------------------------------------------------------------
# Same Debian release as the runtime stage, so the binaries link against the same glibc.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The workspace root is itself a package, so the binaries' packages are named with -p
# (`--bin` alone only searches the root package). No protoc is needed: build.rs uses protox.
# The registry and target directories are cache mounts, so the binaries are copied out of
# target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p kinesis-relay -p kinesis-relay-client \
        --bin kinesis-relay --bin kinesis-relay-client \
 && install -D -m 0755 target/release/kinesis-relay /out/kinesis-relay \
 && install -D -m 0755 target/release/kinesis-relay-client /out/kinesis-relay-client

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim
# CA certificates for TLS to AWS; nothing else.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed UID/GID (the "nonroot" id of distroless images), so Kubernetes' runAsNonRoot can
# check it and volume permissions can name it. /var/lib/kinesis-relay is the checkpoint
# directory (--state-dir); mount a volume there.
RUN groupadd --system --gid 65532 relay \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin relay \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/kinesis-relay /etc/kinesis-relay
COPY --from=build /out/kinesis-relay /out/kinesis-relay-client /usr/local/bin/
USER 65532:65532
# 50051: gRPC (Relay, health, reflection). 9090: Prometheus metrics (--metrics-listen).
EXPOSE 50051 9090
# On SIGTERM the relay ends subscriber streams with UNAVAILABLE and their resume cursor,
# flushes checkpoints, and deregisters its consumer when asked (--deregister-on-exit).
STOPSIGNAL SIGTERM
ENTRYPOINT ["kinesis-relay"]
