# autobuilder server image.
#
# Builds run on the host's Docker engine, so mount its socket. Workspaces are bind-mounted
# into build containers by host path, so mount the data directory at the SAME path inside
# and outside, on Btrfs for O(1) snapshots; creating and deleting subvolumes needs
# CAP_SYS_ADMIN. Example:
#
#   docker build -t autobuilder .
#   docker run -d --name autobuilder \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /srv/autobuilder/data:/srv/autobuilder/data \
#     -v /srv/autobuilder/config.ts:/app/config.ts:ro \
#     -e GITHUB_WEBHOOK_SECRET -e GITHUB_TOKEN \
#     --cap-add SYS_ADMIN -p 8462:8462 autobuilder
#
# with config.ts setting dataDir: '/srv/autobuilder/data' and listen.host: '0.0.0.0'.
#
# The server runs compiled (dist/, built in the first stage), with the node flags of
# `npm start`: compiled it takes about 70 MiB less memory than from source through tsx, and a
# 1 MiB young generation and one V8 helper thread keep an idle server's heap small (see
# README, Memory). A config.ts is still read (through tsx, in a short-lived child process).
FROM node:20-bookworm-slim AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends git btrfs-progs ca-certificates python3 make g++ \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config.sample.ts ./
COPY projects-config-repo-example ./projects-config-repo-example

ENV NODE_ENV=production
EXPOSE 8462
CMD ["node", "--max-semi-space-size=1", "--v8-pool-size=1", "dist/main.js"]
