# syntax=docker/dockerfile:1
# One image for every Nuri process: the server (any of the api, scheduler and gateway roles,
# NURI_ROLES) and the node agent. Built with the README's commands (npm ci, npm run build).
#   docker build -t nuri .
#   docker run -e DATABASE_URL=postgres://… -e NURI_ROLES=api -p 8080:8080 nuri
#   docker run nuri dist/apps/agent/src/main.js --gateway-url ws://… --node-token-file …
# deploy/README.md says how compose and Kubernetes run it; test/deploy checks this file.

ARG NODE_IMAGE=node:20-bookworm-slim

# --- build: every dependency, then the README's build (swc into dist/) ---------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json nest-cli.json .swcrc ./
COPY libs libs
COPY apps apps
COPY bench bench
RUN npm run build

# --- runtime dependencies only (no compilers, test tools or throwaway PostgreSQL) -----------
FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# --- runtime ------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
# The heap is capped (V8 otherwise lets it grow towards a quarter of the machine before it
# collects hard): at 100,000 pending jobs and 4,000 agents in one process, RSS stayed at
# 680 MiB with this cap and reached 1.2 GiB without it (npm run bench:live).
ENV NODE_ENV=production \
    NODE_OPTIONS=--max-old-space-size=768 \
    PORT=8080 \
    NURI_DATA_DIR=/var/lib/nuri/data \
    NURI_AGENT_WORK_DIR=/var/lib/nuri/agents \
    NURI_LOG_FORMAT=json
# A dedicated unprivileged user; only the agent on a GPU node runs as root (its manifests
# say so), to give each job its own uid and cgroup.
RUN groupadd --system --gid 10001 nuri \
 && useradd --system --uid 10001 --gid nuri --home-dir /var/lib/nuri --shell /usr/sbin/nologin nuri \
 && install -d -o nuri -g nuri -m 0750 /var/lib/nuri /var/lib/nuri/data /var/lib/nuri/agents
WORKDIR /opt/nuri
COPY --from=deps /src/node_modules node_modules
COPY --from=build /src/dist dist
COPY package.json ./
USER 10001:10001
EXPOSE 8080
# Every server process answers GET /healthz on PORT (the agent has no HTTP port: its compose
# service and DaemonSet turn this off).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node"]
CMD ["dist/apps/server/src/main.js"]
