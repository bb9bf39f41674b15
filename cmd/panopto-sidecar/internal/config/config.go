package config

import "net/url"

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
	return c.Credentials.Source == CredentialsVault || c.TokenStore.Type == TokenStoreVault
}
