#!/usr/bin/env bash
# Build the base image of the stack's images without a registry; idempotent.
#
#   stack/install/docker/base-image.sh            # pushctl/base:bookworm, unless it exists already
#   stack/install/docker/base-image.sh --force    # build it again
#
# Where an image can be pulled, the Dockerfile's default base (debian:bookworm-slim) is used and
# this script is not needed. Where none can be, this makes the same Debian release from the
# machine's own package mirror: `debootstrap --variant=minbase bookworm`, imported with
# `docker import` (about 25 s). The root gets the machine's apt sources, so `apt-get` inside an
# image build reaches the same archive the machine's apt does.
#
# Environment: PUSHCTL_BASE_IMAGE (tag to build, default pushctl/base:bookworm),
#              PUSHCTL_DEBIAN_MIRROR (default: the first Debian URI of the machine's apt sources).
set -euo pipefail

TAG="${PUSHCTL_BASE_IMAGE:-pushctl/base:bookworm}"
SUITE=bookworm
say() { echo "base-image.sh: $*" >&2; }

if [ "${1:-}" != "--force" ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    say "$TAG exists"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    say "debootstrap needs root (sudo $0)"
    exit 1
fi

mirror="${PUSHCTL_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    # deb822 sources first (bookworm's default), then one-line sources
    mirror="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
        | grep -v -- '-security' | head -n1 || true)"
fi
if [ -z "$mirror" ]; then
    mirror="$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)"
fi
if [ -z "$mirror" ]; then
    say "no Debian mirror in this machine's apt sources (/etc/apt/sources.list*): set PUSHCTL_DEBIAN_MIRROR to its URL"
    exit 2
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap ..."
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q debootstrap >/dev/null \
        || { apt-get -o DPkg::Lock::Timeout=600 update -qq \
             && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q debootstrap >/dev/null; }
fi

root="$(mktemp -d /var/tmp/pushctl-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
say "debootstrap --variant=minbase $SUITE from $mirror ..."
started=$SECONDS
debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# the machine's apt sources (same archive, same suites: updates and security too)
if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
    rm -f "$root/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/"
fi
# like the official slim images: no package caches, no docs, no recommends
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
cat >"$root/etc/apt/apt.conf.d/90pushctl-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
cat >"$root/etc/dpkg/dpkg.cfg.d/90pushctl-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
EOF

tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase $SUITE $mirror" \
    - "$TAG" >/dev/null
say "built $TAG in $((SECONDS - started)) s"
