#!/usr/bin/env bash
# One-time Vault setup for panopto-sidecar in Kubernetes. Run with a Vault
# admin token (VAULT_ADDR, VAULT_TOKEN set). NAMESPACE is OnTrack's namespace.
set -euo pipefail
NAMESPACE="${NAMESPACE:-ontrack}"
cd "$(dirname "$0")"

# KV v2 at secret/ (a dev server has it already).
vault secrets enable -path=secret -version=2 kv 2>/dev/null || true

# Kubernetes auth. Vault running in the cluster reviews tokens with its own
# service account; from outside, also pass token_reviewer_jwt and kubernetes_ca_cert.
vault auth enable kubernetes 2>/dev/null || true
vault write auth/kubernetes/config kubernetes_host="https://kubernetes.default.svc"

vault policy write ontrack-panopto vault-policy.hcl

# The sidecar logs in with the ontrack service account's projected token
# (audience vault), see deployment.yaml.
vault write auth/kubernetes/role/ontrack-panopto \
  bound_service_account_names=ontrack \
  bound_service_account_namespaces="${NAMESPACE}" \
  audience=vault \
  token_policies=ontrack-panopto \
  token_ttl=1h token_max_ttl=24h

# Panopto's API client ("Server-side Web Application", redirect URL
# http://localhost:9127/redirect). Read the secret from a prompt, not argv.
read -r -p "Panopto client_id: " client_id
read -r -s -p "Panopto client_secret: " client_secret; echo
vault kv put secret/panopto/client client_id="${client_id}" client_secret=- <<<"${client_secret}"
