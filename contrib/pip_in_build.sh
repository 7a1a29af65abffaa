#!/bin/sh
# pip inside `docker build`: makes a virtual environment with the base image's python3 and
# installs into it. When contrib/docker_images.sh passes them (BuildKit secrets, mounted
# for one RUN step and never written to a layer), the host's pip settings (index URLs) and
# the host's extra CA certificates are used for this install only.
# Usage, in a RUN step that mounts the secrets pip_conf and extra_ca:
#   sh pip_in_build.sh VENV PIP-INSTALL-ARGUMENTS...
set -eu
venv="$1"
shift
if [ -s /run/secrets/pip_conf ]; then
  export PIP_CONFIG_FILE=/run/secrets/pip_conf
fi
if [ -s /run/secrets/extra_ca ]; then
  bundle="$(mktemp)"
  trap 'rm -f "$bundle"' EXIT
  # The base image's CA bundle plus the extra certificates: public and local indexes both verify.
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then cat /etc/ssl/certs/ca-certificates.crt > "$bundle"; fi
  cat /run/secrets/extra_ca >> "$bundle"
  export PIP_CERT="$bundle"
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --quiet "$@"
