package config

import (
	"net/url"
	"reflect"
)

// RedirectURL is the OAuth redirect_uri: public_url + "/redirect". It must
// match the one registered for the client in Panopto exactly.
func (c *Config) RedirectURL() string { return c.PublicURL + "/redirect" }

// LoginURL is where a browser starts the authorization code flow.
func (c *Config) LoginURL() string { return c.PublicURL + "/-/login" }

// UpstreamURL returns a fresh copy of the parsed upstream origin, which the
// caller may modify. It is nil only for a Config that did not come from Parse.
func (c *Config) UpstreamURL() *url.URL {
	u, err := url.Parse(c.Upstream)
	if err != nil {
		return nil
	}
	return u
}

// NeedsVault reports whether anything is read from or written to Vault.
func (c *Config) NeedsVault() bool {
	return c.Credentials.Source == "vault" || c.TokenStore.Type == "vault"
}

// restartKeys are the keys a running sidecar cannot apply by reloading: the
// listener and its TLS and inbound authentication, the server timeouts, the
// Vault client and login, where credentials and tokens live, the per-account
// machinery, and the log format. Everything else (upstream aside, which would
// strand the held tokens) applies on reload.
var restartKeys = []struct {
	path string
	get  func(*Config) any
}{
	{"listen", func(c *Config) any { return c.Listen }},
	{"public_listen", func(c *Config) any { return c.PublicListen }},
	{"upstream", func(c *Config) any { return c.Upstream }},
	{"upstream_ca_file", func(c *Config) any { return c.UpstreamCAFile }},
	{"vault.address", func(c *Config) any { return c.Vault.Address }},
	{"vault.namespace", func(c *Config) any { return c.Vault.Namespace }},
	{"vault.ca_cert", func(c *Config) any { return c.Vault.CACert }},
	{"vault.tls_server_name", func(c *Config) any { return c.Vault.TLSServerName }},
	{"vault.auth", func(c *Config) any { return c.Vault.Auth }},
	{"vault.mount", func(c *Config) any { return c.Vault.Mount }},
	{"credentials.source", func(c *Config) any { return c.Credentials.Source }},
	{"token_store.type", func(c *Config) any { return c.TokenStore.Type }},
	{"token_store.path", func(c *Config) any { return c.TokenStore.Path }},
	{"log.format", func(c *Config) any { return c.Log.Format }},
	{"tls.mode", func(c *Config) any { return c.TLS.Mode }},
	{"tls.cert_file", func(c *Config) any { return c.TLS.CertFile }},
	{"tls.key_file", func(c *Config) any { return c.TLS.KeyFile }},
	{"tls.acme.domains", func(c *Config) any { return c.TLS.ACME.Domains }},
	{"tls.acme.email", func(c *Config) any { return c.TLS.ACME.Email }},
	{"tls.acme.directory", func(c *Config) any { return c.TLS.ACME.Directory }},
	{"tls.acme.ca_roots", func(c *Config) any { return c.TLS.ACME.CARoots }},
	{"tls.acme.storage", func(c *Config) any { return c.TLS.ACME.Storage }},
	{"tls.acme.http_port", func(c *Config) any { return c.TLS.ACME.HTTPPort }},
	{"tls.acme.tls_alpn_port", func(c *Config) any { return c.TLS.ACME.TLSALPNPort }},
	{"accounts.mode", func(c *Config) any { return c.Accounts.Mode }},
	{"accounts.max_cache", func(c *Config) any { return c.Accounts.MaxCache }},
	{"inbound.client_ca_file", func(c *Config) any { return c.Inbound.ClientCAFile }},
	{"timeouts.read_header", func(c *Config) any { return c.Timeouts.ReadHeader }},
	{"timeouts.idle", func(c *Config) any { return c.Timeouts.Idle }},
}

// RestartRequired returns the key paths whose value differs between c (the
// running config) and next, and that take effect only after a restart, in a
// fixed order. A reload should apply next and log these. Nil if either is nil.
func (c *Config) RestartRequired(next *Config) []string {
	if c == nil || next == nil {
		return nil
	}
	var keys []string
	for _, k := range restartKeys {
		if !reflect.DeepEqual(k.get(c), k.get(next)) {
			keys = append(keys, k.path)
		}
	}
	return keys
}
