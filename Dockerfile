# Builds the three binaries (coupon, producer, consumer) into one small image.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --bins

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/coupon /src/target/release/producer /src/target/release/consumer /usr/local/bin/
USER nobody
CMD ["coupon", "--listen", "0.0.0.0:8080", "--data-dir", "/tmp/coupon-data"]
