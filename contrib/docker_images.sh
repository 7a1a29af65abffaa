#!/usr/bin/env bash
# The images of the container flow: the two base images, then the project's image.
#
#   contrib/docker_images.sh          # bases (pulled, or stand-ins), then bluegreen-model-server:latest
#   eval "$(contrib/docker_images.sh env)"   # PYTHON_IMAGE and NGINX_IMAGE as chosen by the last run
#
# Bases: python:3.11-slim and nginx:1.27-alpine (override with PYTHON_IMAGE / NGINX_IMAGE).
# When one is neither present nor pullable (no registry reachable), a stand-in is built
# from Debian 12 packages with mmdebstrap and `docker import`: bluegreen-standin/python:3.11
# (Debian's python3 and python3-venv; its interpreter is /usr/bin/python3, which the
# Dockerfile bridges) and bluegreen-standin/nginx:1.22 (Debian's nginx). A stand-in is
# built once per engine; later runs reuse it.
#
# The project's image is built from the repo's Dockerfile with BuildKit (docker buildx).
# pip inside the build may need this machine's pip settings and extra CA certificates:
# both are generated here at run time, into a temporary directory outside the repo (the
# pip settings from `pip config list`, keeping only what a build can reach: http(s) index
# URLs and plain options; local paths stay out), passed as BuildKit secrets, and removed
# afterwards. They are never committed and never written to an image layer.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${BLUEGREEN_DOCKER_DIR:-$ROOT/.run/docker}"
mkdir -p "$DIR"
ENVFILE="$DIR/images.env"
IMAGE="${BLUEGREEN_IMAGE:-bluegreen-model-server:latest}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Debian's local CA directory: certificates this machine trusts beyond the public ones.
LOCAL_CA_DIR="${LOCAL_CA_DIR:-/usr/local/share/ca-certificates}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

say() { echo "images: $*" >&2; }
fail() { echo "images: $*" >&2; exit 1; }

if [ "${1:-}" = env ]; then
  cat "$ENVFILE" 2>/dev/null || true
  exit 0
fi
[ "$#" = 0 ] || { echo "usage: $0 [env]" >&2; exit 2; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

pullable() {  # pullable IMAGE: present, or pulled now
  have_image "$1" && return 0
  say "pulling $1"
  timeout 300 docker pull --quiet "$1" >/dev/null 2>&1
}

standin() {  # standin TAG PACKAGES CMD: a Debian 12 image with PACKAGES, imported as TAG
  local tag="$1" packages="$2" cmd="$3"
  if [ "$(docker image inspect --format '{{index .Config.Labels "bluegreen.standin.packages"}}' "$tag" 2>/dev/null)" \
       = "$packages" ]; then
    say "reusing the stand-in $tag"
    return
  fi
  command -v mmdebstrap >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends mmdebstrap >&2 \
      || { $SUDO apt-get update -q >&2 \
           && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends mmdebstrap >&2; }
  }
  say "no registry: building the stand-in $tag from Debian packages ($packages)"
  # essential + merged-usr hook: no apt and no usrmerge (which drags in perl); no docs,
  # man pages or translations. An imported image has no environment: PATH is set here.
  mmdebstrap --quiet --variant=essential --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --include="$packages" --aptopt='Acquire::Languages "none"' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      bookworm - "$DEBIAN_MIRROR" \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL bluegreen.standin.packages=$packages" --change "CMD $cmd" - "$tag" >/dev/null
  have_image "$tag" || fail "the stand-in $tag was not created"
}

python_image="${PYTHON_IMAGE:-python:3.11-slim}"
nginx_image="${NGINX_IMAGE:-nginx:1.27-alpine}"
if ! pullable "$python_image"; then
  python_image=bluegreen-standin/python:3.11
  # libstdc++6: the official slim image has it (apt needs it); numpy's and onnxruntime's wheels do too.
  standin "$python_image" python3,python3-venv,ca-certificates,libstdc++6 '["python3"]'
fi
if ! pullable "$nginx_image"; then
  nginx_image=bluegreen-standin/nginx:1.22
  standin "$nginx_image" nginx '["nginx", "-g", "daemon off;"]'
fi
printf 'export PYTHON_IMAGE=%s\nexport NGINX_IMAGE=%s\n' "$python_image" "$nginx_image" > "$ENVFILE"
say "bases: $python_image, $nginx_image"

# -- what pip inside the build needs from this machine --------------------------------------
secrets="$(mktemp -d "${TMPDIR:-/tmp}/bluegreen-build.XXXXXX")"
trap 'rm -rf "$secrets"' EXIT
pip_args=()
pip="$ROOT/.venv/bin/pip"
[ -x "$pip" ] || pip="python3 -m pip"
if $pip config list > "$secrets/host-pip.txt" 2>/dev/null; then
  python3 - "$secrets/host-pip.txt" "$secrets/pip.conf" <<'PY'
"""Keep the host's pip options a build can use; name the ones it cannot."""
import sys

REACHABLE_URLS = ("http://", "https://")
URL_KEYS = {"index-url", "extra-index-url", "find-links"}
PATH_KEYS = {"cert", "client-cert", "constraint", "requirement", "build", "src", "cache-dir", "log"}
kept, dropped = {}, []
for line in open(sys.argv[1]):
    name, _, value = line.strip().partition("=")
    key = name.rsplit(".", 1)[-1]
    value = value.strip().strip("'\"")
    if not key or not value or key in PATH_KEYS:
        if key:
            dropped.append(key)
        continue
    if key in URL_KEYS:
        urls = [u for u in value.split() if u.startswith(REACHABLE_URLS)]
        dropped += [f"{key} {u}" for u in value.split() if not u.startswith(REACHABLE_URLS)]
        if urls:
            kept[key] = " ".join(urls)
        continue
    kept[key] = value
if kept:
    with open(sys.argv[2], "w") as out:
        out.write("[global]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(kept.items())))
print("images: host pip settings passed to the build: " + (", ".join(sorted(kept)) or "none")
      + (f"; left out (local paths, unreachable from a build): {', '.join(sorted(set(dropped)))}" if dropped else ""),
      file=sys.stderr)
PY
fi
[ -s "$secrets/pip.conf" ] && pip_args+=(--secret "id=pip_conf,src=$secrets/pip.conf")
if compgen -G "$LOCAL_CA_DIR/*.crt" >/dev/null; then
  cat "$LOCAL_CA_DIR"/*.crt > "$secrets/extra_ca.pem"
  pip_args+=(--secret "id=extra_ca,src=$secrets/extra_ca.pem")
  say "extra CA certificates passed to the build: $(cd "$LOCAL_CA_DIR" && ls ./*.crt | wc -l) from $LOCAL_CA_DIR"
fi

say "building $IMAGE from $ROOT/Dockerfile"
# host network: the build's RUN steps reach the package index the way this machine does.
docker buildx build --network host --progress "${BUILDKIT_PROGRESS:-plain}" \
  --build-arg "PYTHON_IMAGE=$python_image" "${pip_args[@]}" \
  --tag "$IMAGE" "$ROOT" >&2
size="$(docker image inspect --format '{{.Size}}' "$IMAGE")"
say "$IMAGE: $((size / 1000000)) MB (docker image inspect)"
