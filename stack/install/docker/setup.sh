#!/usr/bin/env bash
# Everything `pushctl stack up --runtime docker` needs on this machine, in order; idempotent.
#
#   stack/install/docker/setup.sh     # CI: once, before the tests (as root)
#
# 1. engine.sh      a Docker engine answers (installs docker.io and starts dockerd if needed)
# 2. a base image   debian:bookworm-slim if the engine has it or can pull it, else base-image.sh
#                   builds pushctl/base:bookworm from the machine's Debian mirror (no registry)
# 3. images.sh      the stack's images, built from the pinned artifacts (cached by content)
#
# Prints how long each step took. Needs the project's venv (./dev setup) for step 3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
step() { local t=$SECONDS; "$@"; echo "setup.sh: $(basename "$1") done in $((SECONDS - t)) s" >&2; }

step "$here/engine.sh"
if docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
    || timeout 120 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    echo "setup.sh: base image debian:bookworm-slim" >&2
else
    step "$here/base-image.sh"
fi
step "$here/images.sh" >/dev/null
