# `ppd serve` in a container: the README's install (`npm ci`, here without the dev dependencies:
# the benchmarks' llama.cpp peer and the test tools are ~730 MB the server never loads), the
# bundled model with its PPD adapter, its ONNX graph compiled at build time, a non-root user, and
# a health check on readiness. deploy/README.md runs two of these behind HAProxy.
#
#   docker build -t ppd .
#   docker run --rm -p 8080:8080 -e PPD_API_KEY=change-me ppd
#   docker run --rm -p 8080:8080 -v /path/to/model:/model:ro ppd --model /model --host 0.0.0.0
#
# Settings come as flags after the image name or as environment variables: PPD_API_KEY (required
# beyond a trusted network: the server listens on every interface here), PPD_ALLOWED_HOSTS (the
# names clients address the service by, besides IP addresses and localhost).
FROM node:20-bookworm-slim

WORKDIR /app
ENV NODE_ENV=production PPD_CACHE_DIR=/app/.cache/graphs

# Dependencies first, so the layer is reused while only the sources change. .npmrc keeps ONNX
# Runtime's install script from downloading CUDA binaries (the CPU build ships in the package).
COPY --chown=node:node package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev && npm cache clean --force

COPY --chown=node:node tsconfig.json ./
COPY --chown=node:node bin ./bin
COPY --chown=node:node src ./src
COPY --chown=node:node models/ppd-base ./models/ppd-base

USER node
# Compile the bundled model's graph now: a container is then ready within seconds of starting.
RUN node bin/ppd.js generate --model models/ppd-base --prompt "Warm up" --max-tokens 1 > /dev/null

EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:8080/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
ENTRYPOINT ["node", "bin/ppd.js", "serve"]
CMD ["--model", "models/ppd-base", "--ppd", "models/ppd-base/ppd", "--host", "0.0.0.0", "--port", "8080"]
