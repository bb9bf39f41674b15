package config

import "reflect"

// restartOnly are the settings a running sidecar cannot change by
// reloading, in the order a reload reports them: the listener with its TLS
// and client certificates, the server and transport timeouts, the upstream's
// extra roots, where tokens are stored, the per-account machinery, the log
// format, the upload watch's bounds (the watch keeps those it started
// with), and the vault: section while the token store is in Vault (the
// store holds its client for the process's life). Everything else, upstream
// and credentials.source included, applies on reload. README.md lists the
// same keys (TestREADMEListsRestartOnlyKeys).
var restartOnly = []restartKey{
	{path: "listen", keep: field(func(c *Config) *string { return &c.Listen })},
	{path: "public_listen", keep: field(func(c *Config) *string { return &c.PublicListen })},
	{path: "public_max_conns", keep: field(func(c *Config) *int { return &c.PublicMaxConns })},
	{path: "tls", keep: field(func(c *Config) *TLS { return &c.TLS })},
	{path: "inbound.client_ca_file", keep: field(func(c *Config) *string { return &c.Inbound.ClientCAFile })},
	{path: "timeouts", keep: field(func(c *Config) *Timeouts { return &c.Timeouts })},
	{path: "upstream_ca_file", keep: field(func(c *Config) *string { return &c.UpstreamCAFile })},
	{path: "token_store", keep: field(func(c *Config) *TokenStore { return &c.TokenStore })},
	{path: "accounts.mode", keep: field(func(c *Config) *AccountsMode { return &c.Accounts.Mode })},
	{path: "log.format", keep: field(func(c *Config) *string { return &c.Log.Format })},
	{path: "uploads.watch_for", keep: field(func(c *Config) *Duration { return &c.Uploads.WatchFor })},
	{path: "uploads.retention", keep: field(func(c *Config) *Duration { return &c.Uploads.Retention })},
	{
		path: "vault",
		when: func(cur *Config) bool { return cur.TokenStore.Type == TokenStoreVault },
		keep: field(func(c *Config) *Vault { return &c.Vault }),
	},
}

type restartKey struct {
	path string
	// when reports whether the key needs a restart with cur in force; nil
	// means always.
	when func(cur *Config) bool
	// keep sets the key in next to its value in cur and reports whether
	// that changed next.
	keep func(next, cur *Config) bool
}

// field returns a restartKey.keep for the setting at, which returns its
// address in a Config.
func field[T any](at func(*Config) *T) func(next, cur *Config) bool {
	return func(next, cur *Config) bool {
		n, c := at(next), at(cur)
		if reflect.DeepEqual(*n, *c) {
			return false
		}
		*n = *c
		return true
	}
}

// RestartOnly returns the key paths of the settings that take effect only
// after a restart, in a fixed order. "vault" is one only while
// token_store.type is vault.
func RestartOnly() []string {
	keys := make([]string, len(restartOnly))
	for i, k := range restartOnly {
		keys[i] = k.path
	}
	return keys
}

// KeepRestartOnly returns a copy of next with every restart-only setting as
// it is in cur, the running config, so that a reload applies nothing by
// halves, and the key paths of those that next changed, in RestartOnly's
// order. next itself is not modified. With a nil cur it returns next.
func KeepRestartOnly(cur, next *Config) (*Config, []string) {
	if cur == nil || next == nil {
		return next, nil
	}
	eff := *next
	var kept []string
	for _, k := range restartOnly {
		if k.when != nil && !k.when(cur) {
			continue
		}
		if k.keep(&eff, cur) {
			kept = append(kept, k.path)
		}
	}
	return &eff, kept
}
