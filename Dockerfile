# syntax=docker/dockerfile:1.7
#
# Platform container image: the single `platform` binary on distroless, non-root, no shell.
#
#   docker build -t ghcr.io/platform-dev/platform:$(git rev-parse --short HEAD) .
#
# The same image runs every part: `platform runtime` (Knative Service), `platform control`,
# `platform worker` (see deploy/). Stages:
#   chef     Rust toolchain + cargo-chef (pinned), shared by the next two stages
#   planner  reduces the workspace to a dependency "recipe" (manifests + Cargo.lock only)
#   builder  compiles the recipe (this layer is cached until Cargo.toml/Cargo.lock change),
#            then the real sources with `--locked`, so the binary comes from Cargo.lock exactly
#   runtime  gcr.io/distroless/cc-debian12:nonroot: glibc, libgcc, CA certificates, uid 65532
#
# The builder is Debian 12 (bookworm) on purpose: the binary links against glibc and must not
# need a newer glibc than the distroless Debian 12 runtime has. The build needs only gcc
# (the rust image ships it); TLS is rustls, so no OpenSSL headers.
# For fully repeatable builds pin both base images by digest in CI (`FROM image@sha256:...`).

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.77
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
# Same flags for the cached dependency build and the final build, or the cache is useless.
# --remap-path-prefix keeps build paths out of the binary's line tables.
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_NET_RETRY=5 \
    RUSTFLAGS="--remap-path-prefix=/src=. --remap-path-prefix=/usr/local/cargo=/cargo"
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: rebuilt when a manifest or Cargo.lock changes, not when code changes.
RUN cargo chef cook --release --locked --package platform --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --package platform --bin platform \
 && install -D -m 0755 target/release/platform /out/platform \
 && install -d -m 0750 /out/var/lib/platform

FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="platform" \
      org.opencontainers.image.description="WebAssembly serverless host for Go HTTP handlers" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/platform-dev/platform"
COPY --from=builder /out/platform /platform
# An owned data dir so a plain `docker run` works too; in Kubernetes an emptyDir covers it.
COPY --from=builder --chown=65532:65532 /out/var/lib/platform /var/lib/platform
# distroless "nonroot" is uid/gid 65532; stated again so `runAsNonRoot` can verify a numeric uid.
USER 65532:65532
# Writable state lives on volumes (deploy/ mounts emptyDirs there); the root fs can be read-only.
ENV PLATFORM_DATA_DIR=/var/lib/platform
# 8080: traffic (runtime; Knative sets $PORT), 8081: admin / control API.
EXPOSE 8080 8081
ENTRYPOINT ["/platform"]
CMD ["runtime"]
