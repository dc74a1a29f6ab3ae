#!/usr/bin/env bash
# Build the stack's images, or find them built: what `pushctl stack up --runtime docker` does first.
#
#   stack/install/docker/images.sh [--force]     # prints "target<TAB>tag" per image
#
# Cached by content: nothing is built when the Dockerfile, the base image, the pinned artifacts
# and pushctl's sources are unchanged. Needs an engine (engine.sh) and, where no image can be
# pulled, the base image (base-image.sh; run on demand when missing and this runs as root).
set -euo pipefail
cd "$(dirname "$0")/../../.."
exec "${PUSHCTL_PYTHON:-.venv/bin/python}" -c 'from pushctl.runtime.docker.images import main; main()' "$@"
