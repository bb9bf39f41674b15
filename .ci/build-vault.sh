#!/usr/bin/env bash
# Builds a Vault server binary for the test suite and caches it.
# Prints the binary's path on stdout. Reuses $VAULT_BIN when it is set and runs.
set -euo pipefail

if [[ -n "${VAULT_BIN:-}" && -x "${VAULT_BIN}" ]]; then
  echo "${VAULT_BIN}"
  exit 0
fi

version=1.21.4
cache="${HOME}/.cache/panopto-sidecar/vault-${version}"
bin="${cache}/vault"
if [[ -x "${bin}" ]]; then
  echo "${bin}"
  exit 0
fi

mkdir -p "${cache}"
work="$(mktemp -d)"
trap 'chmod -R u+w "${work}" 2>/dev/null; rm -rf "${work}"' EXIT

# The module's own go.mod points api and sdk at local directories with
# replace directives, which "go install" refuses; build from a copy instead.
dir="$(go mod download -json "github.com/hashicorp/vault@v${version}" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
cp -r "${dir}" "${work}/vault"
chmod -R u+w "${work}/vault"
cd "${work}/vault"
# Drop every replace that points into the source tree (api, api/auth/*, sdk).
sed -i '/^replace github.com\/hashicorp\/vault\/[a-z\/]* => \.\//d' go.mod
go mod edit -require=github.com/hashicorp/vault/sdk@v0.21.0 -require=github.com/hashicorp/vault/api@v1.22.0

# Compile drifts against sdk v0.21.0: ActivationFunc gained a string argument,
# and keysutil.LockManager.RestorePolicy returns only an error.
sed -i 's/func (i \*IdentityStore) activateDeduplication(ctx context.Context, req \*logical.Request) error {/func (i *IdentityStore) activateDeduplication(ctx context.Context, req *logical.Request, _ string) error {/' vault/identity_store_util.go
sed -i 's/b.idStoreBackend.ActivationFunc(ctx, nil)/b.idStoreBackend.ActivationFunc(ctx, nil, "")/' vault/logical_system_activation_flags.go
sed -i 's/restoredKeyName, err := b.lm.RestorePolicy(ctx, req.Storage, keyName, backupB64, force)/restoredKeyName := keyName\n\terr := b.lm.RestorePolicy(ctx, req.Storage, keyName, backupB64, force)/' builtin/logical/transit/path_restore.go

echo "building vault ${version} (several minutes, cached afterwards)" >&2
CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags='-s -w' -o "${bin}.tmp" . >&2
mv "${bin}.tmp" "${bin}"
echo "${bin}"
