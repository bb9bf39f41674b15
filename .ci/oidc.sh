#!/usr/bin/env bash
# Installs the OAuth2 server peer (npm oidc-provider, pinned by
# testdata/oidc/package-lock.json) when testdata/oidc/node_modules is missing
# or older than the lock file, and prints the directory holding server.mjs.
# npm's download cache lives under $HOME/.cache/npm. TestAgainstOIDCProvider
# finds the directory through $PANOPTO_SIDECAR_OIDC_DIR or testdata/oidc.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${PWD}/testdata/oidc"
stamp="${dir}/node_modules/.package-lock.json"
if [[ ! -f "${stamp}" || "${dir}/package-lock.json" -nt "${stamp}" || ! -d "${dir}/node_modules/oidc-provider" ]]; then
  if ! command -v npm >/dev/null; then
    echo "oidc.sh: npm is missing (Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
  (cd "${dir}" && npm ci --cache "${HOME}/.cache/npm" --prefer-offline --no-audit --no-fund) >&2
fi

echo "${dir}"
