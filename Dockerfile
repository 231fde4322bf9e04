# The sluice worker. Build: docker build -t sluice .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev zlib1g-dev pkg-config make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p sluice-worker --bin sluice

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 zlib1g ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
EXPOSE 8083
# Configure with SLUICE_<KEY> environment variables (SLUICE_BOOTSTRAP_SERVERS, SLUICE_GROUP_ID, ...)
# or a worker properties file passed as the first argument.
ENTRYPOINT ["/usr/local/bin/sluice"]
