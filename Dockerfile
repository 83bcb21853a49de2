# oci-registry: a pull-through caching mirror for container registries.
#
#   docker build -t oci-registry .
#   docker run -p 8080:8080 -v oci-cache:/data oci-registry
#   docker run -p 8080:8080 -e AWS_REGION=eu-west-1 oci-registry s3 --bucket my-cache
#   docker build --build-arg BASE_IMAGE=registry.example/node:24-bookworm-slim -t oci-registry .
#
# Arguments given to `docker run` replace CMD, so they must include the
# storage subcommand; global flags (--listen, --upstream-config-file, ...)
# come before it, and every flag also has an environment variable.

# Both stages build on this image: a Debian with Node.js (node, npm on PATH)
# and the shadow tools (groupadd/useradd). Override it to build from a
# private registry's copy or a pinned digest.
ARG BASE_IMAGE=node:24-bookworm-slim

# ---- build: install all dependencies and compile TypeScript to dist/ ----
FROM ${BASE_IMAGE} AS build
WORKDIR /app
# Dependencies first, so source changes do not invalidate this layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build \
 && chmod 0755 dist/cli/main.js

# ---- runtime: production dependencies and the compiled program only ----
FROM ${BASE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY example.yaml ./
# The image runs as uid/gid 10001 (the Helm chart's runAsUser). The app files
# stay owned by root, read-only for that user; only /data is writable.
RUN groupadd --system --gid 10001 oci-registry \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin oci-registry \
 && ln -s /app/dist/cli/main.js /usr/local/bin/oci-registry \
 && mkdir -p /data \
 && chown 10001:10001 /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
# For `docker run`; Kubernetes uses the chart's probes instead. Set
# HEALTHCHECK_URL when the server listens elsewhere.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.HEALTHCHECK_URL).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["oci-registry"]
CMD ["--listen", "0.0.0.0:8080", "filesystem", "--root", "/data"]
