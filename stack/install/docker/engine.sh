#!/usr/bin/env bash
# Make a Docker engine answer on this machine; idempotent and quick when one already does.
#
#   stack/install/docker/engine.sh            # install docker.io if needed, start dockerd if needed, wait
#   stack/install/docker/engine.sh --stop     # stop the dockerd this script started (by its pid file)
#
# 1. `docker info` answers (any engine: systemd's, Docker Desktop's, $DOCKER_HOST): done.
# 2. No dockerd binary: `apt-get install docker.io` (Debian's package: dockerd, containerd, runc).
# 3. Start dockerd in the background, without systemd, logging to $PUSHCTL_DOCKERD_LOG. If it does
#    not come up with its default iptables setup (no netfilter modules in some VMs), start it again
#    with --iptables=false: the docker runtime uses host networking, which needs no iptables.
#
# Exit codes: 0 an engine answers; 1 it could not be installed or started (the log's tail is printed).
set -euo pipefail

LOG="${PUSHCTL_DOCKERD_LOG:-/var/log/pushctl-dockerd.log}"
PIDFILE="${PUSHCTL_DOCKERD_PIDFILE:-/var/run/pushctl-dockerd.pid}"
SOCK=/var/run/docker.sock
WAIT_S="${PUSHCTL_DOCKERD_WAIT:-60}"

say() { echo "engine.sh: $*" >&2; }

answers() { timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

if [ "${1:-}" = "--stop" ]; then
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        pid="$(cat "$PIDFILE")"
        kill "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$PIDFILE"
        say "stopped dockerd (pid $pid)"
    else
        say "no dockerd started by this script is running"
    fi
    exit 0
fi

if answers; then
    say "docker engine $(docker info --format '{{.ServerVersion}}') already answers"
    exit 0
fi
if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "unix://$SOCK" ]; then
    say "DOCKER_HOST=$DOCKER_HOST does not answer; this script starts only a local engine on $SOCK (unset DOCKER_HOST)"
    exit 1
fi

if [ "$(id -u)" != 0 ]; then
    say "no docker engine answers and starting one needs root (sudo $0)"
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io from the machine's package manager ..."
    export DEBIAN_FRONTEND=noninteractive
    # another apt-get may hold the lock (a CI step, an unattended upgrade): wait for it
    apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
    if ! apt-cache show docker.io >/dev/null 2>&1; then apt_get update -qq; fi
    apt_get install -y -q --no-install-recommends docker.io iptables >/dev/null || {
        apt_get update -qq
        apt_get install -y -q --no-install-recommends docker.io iptables >/dev/null
    }
fi
# Debian's package puts a client on PATH too; any client speaks to the engine
command -v docker >/dev/null 2>&1 || { say "docker.io installed no docker client"; exit 1; }

start() {
    mkdir -p "$(dirname "$LOG")"
    echo "--- $(date -Is) dockerd $*" >>"$LOG"
    # setsid: the engine outlives this script and the shell that ran it
    setsid dockerd --host "unix://$SOCK" "$@" >>"$LOG" 2>&1 < /dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 $((WAIT_S * 5))); do
        if answers; then return 0; fi
        kill -0 "$(cat "$PIDFILE")" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

stop_ours() {
    if [ -f "$PIDFILE" ]; then
        local pid; pid="$(cat "$PIDFILE")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$PIDFILE"
    fi
}

# a dockerd that is still starting (another call of this script, a service manager): wait for it;
# one that never answers is reported, never replaced (it may not be ours)
if pgrep -x dockerd >/dev/null 2>&1; then
    for _ in $(seq 1 $((WAIT_S * 5))); do answers && exit 0; sleep 0.2; done
    say "a dockerd is running (pid $(pgrep -x dockerd | tr '\n' ' ')) but does not answer on $SOCK; see $LOG"
    exit 1
fi
rm -f "$SOCK"

if start; then
    say "dockerd started (pid $(cat "$PIDFILE"), log $LOG)"
    exit 0
fi
say "dockerd did not answer with its default network setup; retrying with --iptables=false"
stop_ours
rm -f "$SOCK"
if start --iptables=false --ip6tables=false; then
    say "dockerd started without iptables (pid $(cat "$PIDFILE"), log $LOG); host networking only"
    exit 0
fi
say "dockerd did not start; last lines of $LOG:"
tail -n 30 "$LOG" >&2
stop_ours
exit 1
