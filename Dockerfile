# Build stage: compiles chat-server against libpq, with the toolchain line the project is
# built and tested with (Swift 6.3; hummingbird 2.28 and others need tools version 6.2).
FROM swift:6.3-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
RUN swift package resolve
# Only the sources: Package.swift declares the test and benchmark targets only where
# Tests/ and Benchmarks/ exist. The migrations are built into the binary.
COPY Sources Sources
RUN swift build -c release --product chat-server --static-swift-stdlib \
    && cp "$(swift build -c release --show-bin-path)/chat-server" /chat-server

# Run stage: the binary and libpq, as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app chat \
    && mkdir -p /app/uploads && chown chat:chat /app/uploads
WORKDIR /app
COPY --from=build /chat-server /app/chat-server
ENV HOST=0.0.0.0 PORT=8000 UPLOAD_DIR=/app/uploads
# Uploads: mount one volume (or network file system) at /app/uploads shared by every
# instance; a file stored by one is served by all (deploy/compose.yaml does this).
USER chat
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${PORT}/health" >/dev/null || exit 1
ENTRYPOINT ["/app/chat-server"]
CMD ["serve"]
