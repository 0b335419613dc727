# syntax=docker/dockerfile:1
# Multi-stage build of the Massa proxy: a Debian builder, a slim runtime.
# Build:  docker build -t massa .
# Run:    docker run --rm -p 9000:9000 -p 9090:9090 -e USER_FUNCTION_HOST=<fn host> massa
# io_uring inside containers needs a seccomp profile that allows
# io_uring_setup/enter (Docker's default blocks them); without it Massa logs
# "epoll" and runs on the epoll driver. See tuning/README.md.

FROM rust:1-bookworm AS build
WORKDIR /src
# Debian stable's package versions are the pin (bookworm ships RocksDB 7.8).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends librocksdb-dev libclang-dev \
 && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY proto proto
COPY src src
COPY benches benches
COPY loadtest loadtest
# Link Debian's RocksDB archive (statically, .cargo/config.toml) for
# whichever architecture this builds on; the runtime image needs only the
# compression libraries it uses.
RUN ROCKSDB_LIB_DIR="/usr/lib/$(gcc -print-multiarch)" \
    cargo build --release --locked --bin massa --bin massa-example-fn \
 && install -D -m 0755 target/release/massa /out/massa \
 && install -D -m 0755 target/release/massa-example-fn /out/massa-example-fn

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsnappy1v5 zlib1g libbz2-1.0 liblz4-1 libzstd1 libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/massa --create-home massa
COPY --from=build /out/ /usr/local/bin/
USER 10001
WORKDIR /var/lib/massa
ENV HTTP_PORT=9000 METRICS_PORT=9090 MASSA_LOG_FORMAT=json MASSA_DATA_DIR=/var/lib/massa/data
VOLUME ["/var/lib/massa/data"]
EXPOSE 9000 9090
# Ready only after discovery succeeded; bash's /dev/tcp avoids shipping curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${METRICS_PORT} && printf 'GET /health/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/massa"]
