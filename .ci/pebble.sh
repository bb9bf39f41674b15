#!/usr/bin/env bash
# Installs Pebble (a test ACME server) and pebble-challtestsrv (its DNS stand-in)
# when they are missing, and prints the directory holding both binaries.
# The tlsconf tests find them through $PEBBLE_BIN or $(go env GOPATH)/bin/pebble.
set -euo pipefail

version=v2.10.3
bindir="$(go env GOBIN)"
if [[ -z "${bindir}" ]]; then
  bindir="$(go env GOPATH | cut -d: -f1)/bin"
fi

if [[ ! -x "${bindir}/pebble" || ! -x "${bindir}/pebble-challtestsrv" ]]; then
  # "go install pkg@version" ignores the current module; run it from / anyway.
  (cd / && go install \
    "github.com/letsencrypt/pebble/v2/cmd/pebble@${version}" \
    "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@${version}") >&2
fi

echo "${bindir}"
