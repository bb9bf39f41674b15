// Package vault connects the sidecar to HashiCorp Vault: it logs in and keeps
// its token alive, reads Panopto's client credentials from KV v2
// (credentials.source: vault) and stores grants in KV v2 with check-and-set
// writes (token_store.type: vault). It is the only package that imports the
// Vault API client.
//
// # Logging in
//
// Config.Address and Config.Namespace fall back to $VAULT_ADDR and
// $VAULT_NAMESPACE, read through the getenv passed to New; nothing else is
// taken from the process environment. CACert and TLSServerName configure TLS.
//
//   - token: the token in Auth.TokenFile when set, else $VAULT_TOKEN. The
//     file is checked on every call and polled every second; a new token
//     takes effect at once, without a restart. A renewable token is renewed;
//     a token that cannot be renewed is used until it expires, after which
//     the client logs an error and waits for a new token in the file.
//   - approle: role_id from Auth.RoleIDFile and secret_id from
//     Auth.SecretIDFile, both read at every login, at auth/<MountPath>
//     (default approle).
//   - kubernetes: Auth.Role and the service-account JWT from Auth.JWTFile
//     (default /var/run/secrets/kubernetes.io/serviceaccount/token), read at
//     every login because Kubernetes rotates it, at auth/<MountPath>
//     (default kubernetes).
//
// Logins happen on a separate client that never carries the old token.
// Client.Status counts logins and renewals and shows when the token expires;
// it never shows the token.
//
// # Holding the client
//
// Holder is what a program keeps: the one Client built from its Config
// (shared by the credentials and the token store) and the Credentials read
// through it. Holder.Swap replaces both on reload and keeps the ones in
// force when the new client cannot be built; Holder.Status and Holder.Up
// feed the status page and the vault-up gauge.
//
// # Renewal
//
// A renewable token is renewed by the API's LifetimeWatcher. When renewal
// stops (maximum TTL reached, token revoked, renewal failing until expiry)
// the client logs in again; failed logins are retried with exponential
// backoff and jitter from 1 s to 1 min. A call answered 403 makes the client
// look its token up (at most every 5 s) and log in again if Vault no longer
// accepts it. A non-renewable login token is replaced after two thirds of
// its TTL.
//
// # Outages
//
// New fails only for configuration errors (unknown method, unreadable or
// empty files, bad CA file). When Vault is unreachable or sealed at start,
// or later, the client keeps trying in the background. Every call is bounded
// (10 s including one retry) and fails with an *Error that matches
// ErrUnavailable (and ErrSealed when sealed); Client.Status shows it.
// Credentials keep the last snapshot read successfully; the Store returns
// the error and changes nothing.
//
// Errors never carry a token, secret_id, JWT, secret value or a response
// body: only Vault's own error messages and status codes (see Error).
//
// # Token store layout
//
// The default grant (key "") is at the store path; the grant of account k is
// at path + "/accounts/" + EscapeKey(k). EscapeKey keeps ASCII letters,
// digits, '-' and '_' and writes every other byte as '=' plus two
// upper-case hex digits: "jo.bloggs@example.edu" becomes
// "jo=2Ebloggs=40example=2Eedu". The mapping is one-to-one and never yields
// a path separator or a "." or ".." segment.
//
// A record's KV v2 data holds strings: access_token, refresh_token,
// token_type, scope, expires_at, obtained_at (present only with a grant),
// lease_holder, lease_until (only with a lease) and dropped. Times are
// RFC 3339 with nanoseconds in UTC, "" for the zero time.
//
// Load returns the KV v2 version: 0 when nothing was ever written (or the
// metadata was deleted). When the latest version was deleted or destroyed,
// Load returns an empty record with that version, because KV v2 check-and-set
// compares against current_version, which a deletion does not change.
// CompareAndSwap writes with options.cas = version and maps KV v2's
// "check-and-set parameter did not match the current version" (a 400) to
// token.ErrConflict. Data that does not decode (wrong types, bad times, no
// record keys) is token.ErrCorrupt and is never overwritten by the store on
// its own.
package vault
