package config

import "strings"

// Each key that picks one of a few behaviours has its own type; its values
// are the constants below, and code compares against those, never against
// string literals.

// Grant is oauth.grant: how the default grant is obtained.
type Grant string

const (
	GrantAuthorizationCode Grant = "authorization_code" // a browser logs in once (default)
	GrantPassword          Grant = "password"           // a Panopto user's name and password
)

// ClientAuth is oauth.client_auth: how the client authenticates at the
// token endpoint.
type ClientAuth string

const (
	ClientAuthBasic ClientAuth = "basic" // HTTP Basic (default)
	ClientAuthBody  ClientAuth = "body"  // client_id and client_secret in the form
)

// VaultAuthMethod is vault.auth.method: how the sidecar logs in to Vault.
type VaultAuthMethod string

const (
	VaultAuthToken      VaultAuthMethod = "token" // default
	VaultAuthAppRole    VaultAuthMethod = "approle"
	VaultAuthKubernetes VaultAuthMethod = "kubernetes"
)

// vaultAuthMethods are the Vault login methods, also the defaults of
// VaultAuth.MountPath.
var vaultAuthMethods = []VaultAuthMethod{VaultAuthToken, VaultAuthAppRole, VaultAuthKubernetes}

// CredentialsSource is credentials.source: where the client credentials
// are read.
type CredentialsSource string

const (
	CredentialsEnv   CredentialsSource = "env" // default
	CredentialsVault CredentialsSource = "vault"
)

// TokenStoreType is token_store.type: where grants are kept.
type TokenStoreType string

const (
	TokenStoreFile  TokenStoreType = "file" // default
	TokenStoreVault TokenStoreType = "vault"
)

// TLSMode is tls.mode: how the listener serves TLS.
type TLSMode string

const (
	TLSNone  TLSMode = "none" // plain HTTP (default)
	TLSFiles TLSMode = "files"
	TLSACME  TLSMode = "acme"
)

// AccountsMode is accounts.mode: whether requests may name a Panopto user.
type AccountsMode string

const (
	AccountsOff   AccountsMode = "off" // default
	AccountsIdP   AccountsMode = "idp"
	AccountsLogin AccountsMode = "login"
)

// RoutesMatch is routes_match: how a request path is compared with the
// routes' prefixes.
type RoutesMatch string

const (
	RoutesCaseInsensitive RoutesMatch = "case_insensitive" // as Panopto's IIS (default)
	RoutesExact           RoutesMatch = "exact"
)

// modeList joins values for a message: "token, approle, kubernetes".
func modeList[T ~string](values []T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
