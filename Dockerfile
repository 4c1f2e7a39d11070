# syntax=docker/dockerfile:1
# The `tessera` image: one binary, every role is a subcommand (serve, worker, migrate, ...).
#
#   docker build -t tessera:latest .
#
# See deploy/README.md for Compose and Kubernetes. scripts/check-deploy.sh lints this file.

# The builder's Rust must be at least the workspace's rust-version (Cargo.toml); this one is
# the toolchain the test suite runs with.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
# Only what the build reads: the workspace manifest, its lock file and the crates.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The cache mounts keep the registry and target dir between builds; the binary is copied out
# of the cached target dir within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tessera \
    && install -D -m 0755 target/release/tessera /out/tessera

FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to S3 and PostgreSQL; nothing else is needed at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A non-root user, and its writable data dir (scratch files of the commands). With a read-only
# root file system, mount a volume (Compose) or an emptyDir (Kubernetes) here.
RUN groupadd --system --gid 10001 tessera \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tessera --no-create-home \
        --shell /usr/sbin/nologin tessera \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/tessera
COPY --from=builder /out/tessera /usr/local/bin/tessera
ENV TESSERA_DATA_DIR=/var/lib/tessera
WORKDIR /var/lib/tessera
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["tessera"]
CMD ["serve", "--addr", "0.0.0.0:8080"]
