# Vault policy ontrack-panopto: what panopto-sidecar may do in the KV v2
# mount "secret". Install with vault-setup.sh.

# Panopto client id and secret: read, and watch for a new version.
path "secret/data/panopto/client" {
  capabilities = ["read"]
}
path "secret/metadata/panopto/client" {
  capabilities = ["read"]
}

# The shared token store: check-and-set writes of the current grant.
path "secret/data/panopto/token*" {
  capabilities = ["create", "update", "read"]
}
path "secret/metadata/panopto/token*" {
  capabilities = ["read", "list"] # list: accounts.keep_alive and GET /-/accounts?state=disconnected walk the accounts
}
# Records of uploads and idempotency keys: deleted once past their
# retention (a more specific path wins, so read and list are repeated).
path "secret/metadata/panopto/token/records/*" {
  capabilities = ["read", "list", "delete"]
}
