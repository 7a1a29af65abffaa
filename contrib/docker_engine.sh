#!/usr/bin/env bash
# A Docker engine for the container flow (`make test-containers`), reused or private.
#
#   contrib/docker_engine.sh start   # reuse the engine `docker` already reaches, or start a private one
#   contrib/docker_engine.sh env     # the environment to use it:  eval "$(contrib/docker_engine.sh env)"
#   contrib/docker_engine.sh stop    # stop the private engine (by its recorded pid); a reused one is left alone
#
# The private engine is Debian's docker.io (installed with apt when dockerd is missing),
# started so that it never touches the host network: no iptables rules, no masquerading,
# no bridge (containers use host networking and listen on loopback). Its data root, exec
# root, socket, pid file and log live under BLUEGREEN_DOCKER_DIR (default .run/docker, git
# ignored); the data root keeps the base images, the image layers and the build cache, so
# a second run is warm. Compose v2 and buildx are added as CLI plugins under
# <dir>/config/cli-plugins when `docker compose` / `docker buildx` are missing: Debian 12
# has neither, so the static binaries of Debian 13's docker-compose and docker-buildx
# packages are downloaded with apt (a private package list; the system's sources are not
# changed) and unpacked there (docs/adr/0009-containers-end-to-end.md).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$(mkdir -p "${BLUEGREEN_DOCKER_DIR:-$ROOT/.run/docker}" && cd "${BLUEGREEN_DOCKER_DIR:-$ROOT/.run/docker}" && pwd)"
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/dockerd.pid"
ENVFILE="$DIR/env"
PLUGINS="$DIR/config/cli-plugins"
# Where Debian 13 ("trixie") is downloaded from: the mirror this machine's apt uses.
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

say() { echo "docker engine: $*" >&2; }
fail() { echo "docker engine: $*" >&2; exit 1; }

own_pid() {  # the private dockerd's pid, when it runs
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = dockerd ] && echo "$pid"
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$@" >&2 \
    || { $SUDO apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
           --no-install-recommends "$@" >&2; }
}

start_private() {
  if [ -n "$(own_pid)" ]; then
    say "private engine already running (pid $(own_pid), $SOCK)"
    echo "export DOCKER_HOST=unix://$SOCK" >> "$ENVFILE"
    return
  fi
  command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || { say "installing docker.io"; apt_install docker.io; }
  [ "$(id -u)" = 0 ] || fail "a private engine needs root (run with sudo), or start your own Docker engine"
  mkdir -p "$DIR/data" "$DIR/exec"
  echo '{}' > "$DIR/daemon.json"  # not /etc/docker/daemon.json: a system setting must not change this engine
  rm -f "$SOCK" "$PIDFILE"
  say "starting a private dockerd (data under $DIR)"
  # setsid: the engine outlives this script; it is stopped by `stop`, by its pid.
  setsid "$(command -v dockerd || echo /usr/sbin/dockerd)" \
    --config-file "$DIR/daemon.json" \
    --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
    --storage-driver=overlay2 \
    --data-root "$DIR/data" --exec-root "$DIR/exec" \
    --pidfile "$PIDFILE" -H "unix://$SOCK" \
    >"$DIR/dockerd.log" 2>&1 < /dev/null &
  local launched=$! waited=0
  until DOCKER_HOST="unix://$SOCK" docker version >/dev/null 2>&1; do
    if ! kill -0 "$launched" 2>/dev/null; then
      fail "dockerd exited: $(tail -n 3 "$DIR/dockerd.log" | tr '\n' ' ')"
    fi
    waited=$((waited + 1))
    [ "$waited" -le 120 ] || fail "dockerd did not answer on $SOCK within 60s (log: $DIR/dockerd.log)"
    sleep 0.5
  done
  say "private engine ready (pid $(own_pid), $SOCK)"
  echo "export DOCKER_HOST=unix://$SOCK" >> "$ENVFILE"
}

plugin_works() {  # plugin_works compose|buildx: Compose v2 / buildx answer through the CLI
  local out
  out="$(docker "$1" version 2>/dev/null)" || return 1
  [ "$1" != compose ] || [[ "$out" =~ version\ v?2\. ]]
}

install_plugins() {
  local missing=()
  plugin_works compose || missing+=(docker-compose)
  plugin_works buildx || missing+=(docker-buildx)
  [ "${#missing[@]}" -gt 0 ] || return 0
  mkdir -p "$PLUGINS"
  export DOCKER_CONFIG="$DIR/config"
  echo "export DOCKER_CONFIG=$DOCKER_CONFIG" >> "$ENVFILE"
  if plugin_works compose && plugin_works buildx; then
    return 0  # unpacked by an earlier run
  fi
  say "downloading ${missing[*]} from Debian 13 (trixie) as CLI plugins"
  local apt="$DIR/apt"
  mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/debs"
  echo "deb $DEBIAN_MIRROR trixie main" > "$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::Archives=$apt/archives"
              -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root"
              -o "APT::Architecture=amd64")
  apt-get "${opts[@]}" update -q >&2
  (cd "$apt/debs" && apt-get "${opts[@]}" download "${missing[@]}" >&2)
  local deb
  for deb in "$apt"/debs/*.deb; do
    rm -rf "$apt/unpacked" && dpkg-deb -x "$deb" "$apt/unpacked"
    find "$apt/unpacked" -path '*/cli-plugins/*' -type f -exec cp {} "$PLUGINS/" \;
  done
  chmod +x "$PLUGINS"/*
  plugin_works compose || fail "docker compose (v2) still missing after unpacking into $PLUGINS"
  plugin_works buildx || fail "docker buildx still missing after unpacking into $PLUGINS"
}

case "${1:-}" in
  start)
    command -v docker >/dev/null 2>&1 || { say "installing docker.io"; apt_install docker.io; }
    : > "$ENVFILE"
    if [ -z "$(own_pid)" ] && [ -z "${BLUEGREEN_PRIVATE_ENGINE:-}" ] && docker info >/dev/null 2>&1; then
      say "reusing the engine at ${DOCKER_HOST:-the default socket} (it is not stopped afterwards)"
      rm -f "$PIDFILE"
    else
      start_private
      export DOCKER_HOST="unix://$SOCK"
    fi
    install_plugins
    ;;
  env)
    cat "$ENVFILE" 2>/dev/null || true
    ;;
  stop)
    pid="$(own_pid || true)"
    if [ -z "$pid" ]; then
      say "no private engine runs (nothing to stop)"
      exit 0
    fi
    # Every container of the private engine was started by this project's flow.
    left="$(DOCKER_HOST="unix://$SOCK" docker ps -aq 2>/dev/null || true)"
    if [ -n "$left" ]; then
      say "removing leftover containers: $(echo "$left" | tr '\n' ' ')"
      # shellcheck disable=SC2086
      DOCKER_HOST="unix://$SOCK" docker rm -f $left >/dev/null
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 60); do
      [ -r "/proc/$pid/comm" ] || break
      sleep 0.5
    done
    if [ -r "/proc/$pid/comm" ]; then
      fail "dockerd (pid $pid) did not stop within 30s"
    fi
    # dockerd leaves its handle on the host's network namespace mounted under its exec root.
    findmnt -rn -o TARGET | grep -F "$DIR/exec/" | sort -r | while read -r target; do
      umount "$target" || say "could not unmount $target"
    done
    rm -f "$SOCK"
    say "private engine stopped (pid $pid)"
    ;;
  *)
    echo "usage: $0 start|env|stop" >&2
    exit 2
    ;;
esac
