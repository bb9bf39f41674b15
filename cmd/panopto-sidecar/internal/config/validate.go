package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/ascii"
)

// validator collects problems with their key path and, when the key is in
// the file, its line.
type validator struct {
	lines map[string]int
	errs  []error
}

func (v *validator) problemf(path, format string, args ...any) {
	v.errs = append(v.errs, &Problem{Path: path, Line: v.lines[path], Msg: fmt.Sprintf(format, args...)})
}

func oneOf[T ~string](v *validator, path string, got T, allowed ...T) {
	if !slices.Contains(allowed, got) {
		v.problemf(path, "must be one of %s; got %q", modeList(allowed), got)
	}
}

func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.problemf(path, "must be > 0")
	}
}

func (v *validator) required(path, got, why string) {
	if got == "" {
		v.problemf(path, "required %s", why)
	}
}

// validate checks a filled config and returns every problem.
func (c *Config) validate(lines map[string]int) []error {
	v := &validator{lines: lines}

	listenHost, listenOK := "", false
	if h, p, err := net.SplitHostPort(c.Listen); err != nil || !validPort(p, 0) {
		v.problemf("listen", "must be host:port, e.g. 127.0.0.1:9127; got %q", c.Listen)
	} else {
		listenHost, listenOK = h, true
	}
	if msg := urlProblem(c.PublicURL); msg != "" {
		v.problemf("public_url", "%s; got %q", msg, c.PublicURL)
	} else if msg := publicURLProblem(c.PublicURL); msg != "" {
		v.problemf("public_url", "%s", msg)
	} else if c.RewriteUploadTarget && c.publicPath() != "" {
		v.problemf("rewrite_upload_target", "needs public_url without a path: upload targets are served at the root of listen; got %q", c.PublicURL)
	}
	if msg := upstreamProblem(c.Upstream); msg != "" {
		v.problemf("upstream", "%s", msg)
	}

	c.validateOAuth(v)
	c.validateVault(v)

	oneOf(v, "credentials.source", c.Credentials.Source, CredentialsEnv, CredentialsVault)
	if c.Credentials.PollInterval < Duration(time.Second) {
		v.problemf("credentials.poll_interval", "must be at least 1s")
	}
	oneOf(v, "token_store.type", c.TokenStore.Type, TokenStoreFile, TokenStoreVault)
	if c.TokenStore.Path == "" && (c.TokenStore.Type == TokenStoreFile || c.TokenStore.Type == TokenStoreVault) {
		v.problemf("token_store.path", "must not be empty")
	}

	oneOf(v, "routes_match", c.RoutesMatch, RoutesCaseInsensitive, RoutesExact)
	c.validateRoutes(v)

	oneOf(v, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(v, "log.format", c.Log.Format, "auto", "text", "json")
	if c.ShutdownGrace < 0 {
		v.problemf("shutdown_grace", "must be >= 0")
	}

	c.validateTLS(v)

	oneOf(v, "accounts.mode", c.Accounts.Mode, AccountsOff, AccountsIdP, AccountsLogin)
	if c.Accounts.Mode == AccountsIdP {
		v.required("accounts.provider", c.Accounts.Provider, "when accounts.mode is idp (the identity provider's name in Panopto)")
	}
	if !validHeaderName(c.Accounts.Header) {
		v.problemf("accounts.header", "must be a valid HTTP header name; got %q", c.Accounts.Header)
	}
	if c.Accounts.MaxCache < 1 {
		v.problemf("accounts.max_cache", "must be at least 1")
	}
	v.positive("accounts.idle_evict", c.Accounts.IdleEvict)
	c.validateKeepAlive(v)
	c.validateConnect(v, listenHost)

	if !validHeaderName(c.Inbound.SharedSecretHeader) {
		v.problemf("inbound.shared_secret_header", "must be a valid HTTP header name; got %q", c.Inbound.SharedSecretHeader)
	}
	if c.Inbound.ClientCAFile != "" && c.TLS.Mode == TLSNone {
		v.problemf("inbound.client_ca_file", "client certificates need tls.mode files or acme")
	}
	c.validateAllowedHosts(v)
	in := c.Inbound
	if listenOK && !isLoopbackHost(listenHost) &&
		!in.AllowUnauthenticated && in.SharedSecretFile == "" && in.ClientCAFile == "" {
		v.problemf("listen", "binding a non-loopback address needs inbound authentication "+
			"(inbound.shared_secret_file or inbound.client_ca_file) or inbound.allow_unauthenticated: true")
	}

	v.positive("timeouts.read_header", c.Timeouts.ReadHeader)
	v.positive("timeouts.idle", c.Timeouts.Idle)
	v.positive("timeouts.upstream_headers", c.Timeouts.UpstreamHeaders)
	v.positive("timeouts.dial", c.Timeouts.Dial)
	v.positive("timeouts.token_endpoint", c.Timeouts.TokenEndpoint)
	if c.RetryBodyLimit < 0 {
		v.problemf("retry_body_limit", "must be >= 0")
	}
	if c.Uploads.PartSize < 5<<20 || c.Uploads.PartSize > 25<<20 {
		v.problemf("uploads.part_size", "must be within 5MiB-25MiB (Panopto's upload server takes parts of that size); got %d bytes", c.Uploads.PartSize)
	}
	if c.Uploads.Concurrency < 1 || c.Uploads.Concurrency > 16 {
		v.problemf("uploads.concurrency", "must be within 1-16; got %d", c.Uploads.Concurrency)
	}
	if c.Uploads.MemoryLimit < 2*c.Uploads.PartSize {
		v.problemf("uploads.memory_limit", "must be at least 2 * uploads.part_size (%s) so two uploads can progress at once; got %s", 2*c.Uploads.PartSize, c.Uploads.MemoryLimit)
	}
	v.positive("uploads.queue_timeout", c.Uploads.QueueTimeout)
	v.positive("uploads.watch_for", c.Uploads.WatchFor)
	v.positive("uploads.retention", c.Uploads.Retention)
	return v.errs
}

func (c *Config) validateOAuth(v *validator) {
	o := c.OAuth
	for _, u := range []struct{ path, val string }{
		{"oauth.authorize_url", o.AuthorizeURL},
		{"oauth.token_url", o.TokenURL},
		{"oauth.revocation_url", o.RevocationURL},
	} {
		// Empty only when derived from an invalid upstream, reported there.
		if u.val == "" {
			continue
		}
		if msg := urlProblem(u.val); msg != "" {
			v.problemf(u.path, "%s; got %q", msg, u.val)
		}
	}
	oneOf(v, "oauth.grant", o.Grant, GrantAuthorizationCode, GrantPassword)
	// Without offline_access Panopto issues no refresh token: the sidecar then
	// needs a new login (or password grant) every hour. Allowed, on purpose.
	if len(o.Scopes) == 0 {
		v.problemf("oauth.scopes", "must not be empty (default: openid, api, offline_access)")
	}
	for i, s := range o.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			v.problemf(fmt.Sprintf("oauth.scopes[%d]", i), "must be one word; got %q", s)
		}
	}
	oneOf(v, "oauth.client_auth", o.ClientAuth, ClientAuthBasic, ClientAuthBody)
	if o.RefreshBefore <= 0 {
		v.problemf("oauth.refresh_before", "must be > 0")
	} else if o.RefreshBefore >= Duration(time.Hour) {
		v.problemf("oauth.refresh_before", "must be < 1h (Panopto access tokens last 1h)")
	}
}

func (c *Config) validateVault(v *validator) {
	a := c.Vault.Auth
	oneOf(v, "vault.auth.method", a.Method, vaultAuthMethods...)
	if !c.NeedsVault() {
		return
	}
	if msg := urlProblem(c.Vault.Address); msg != "" {
		v.problemf("vault.address", "%s; got %q", msg, c.Vault.Address)
	}
	why := "when vault.auth.method is " + string(a.Method)
	switch a.Method {
	case VaultAuthAppRole:
		v.required("vault.auth.role_id_file", a.RoleIDFile, why)
		v.required("vault.auth.secret_id_file", a.SecretIDFile, why)
	case VaultAuthKubernetes:
		v.required("vault.auth.role", a.Role, why)
	}
	// A setting of another method is a sign the method is wrong.
	for _, s := range []struct {
		key, val string
		method   VaultAuthMethod
	}{
		{"token_file", a.TokenFile, VaultAuthToken},
		{"role_id_file", a.RoleIDFile, VaultAuthAppRole},
		{"secret_id_file", a.SecretIDFile, VaultAuthAppRole},
		{"role", a.Role, VaultAuthKubernetes},
		{"jwt_file", a.JWTFile, VaultAuthKubernetes},
	} {
		if s.val != "" && a.Method != s.method && slices.Contains(vaultAuthMethods, a.Method) {
			v.problemf("vault.auth."+s.key, "only used with vault.auth.method %s, not %s", s.method, a.Method)
		}
	}
}

func (c *Config) validateRoutes(v *validator) {
	if len(c.Routes) == 0 {
		v.problemf("routes", "at least one route is needed, or nothing is ever forwarded")
	}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d].prefix", i)
		switch {
		case !strings.HasPrefix(r.Prefix, "/") || !strings.HasSuffix(r.Prefix, "/"):
			v.problemf(p, "must start and end with /; got %q", r.Prefix)
			continue
		case strings.ContainsAny(r.Prefix, "?#%\\") || strings.ContainsFunc(r.Prefix, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			v.problemf(p, "must be a plain path without ?, #, %%, \\, spaces or control characters; got %q", r.Prefix)
			continue
		case r.Prefix != "/" && path.Clean(r.Prefix)+"/" != r.Prefix:
			v.problemf(p, "must be a clean path without //, . or .. segments; got %q", r.Prefix)
			continue
		}
		// With case-insensitive matching, prefixes that differ only in case
		// are the same route; the message says so when that is why.
		fold := c.RoutesMatch != RoutesExact
		for j, earlier := range c.Routes[:i] {
			a, b, why := earlier.Prefix, r.Prefix, ""
			if fold {
				a, b = ascii.ToLower(a), ascii.ToLower(b)
				if !strings.HasPrefix(r.Prefix, earlier.Prefix) {
					why = " (routes_match: case_insensitive)"
				}
			}
			if a == b {
				v.problemf(p, "duplicate of routes[%d]%s", j, why)
				break
			}
			if strings.HasPrefix(b, a) && strings.HasSuffix(a, "/") {
				v.problemf(p, "never matched: routes[%d] (%s) comes first and matches it%s", j, earlier.Prefix, why)
				break
			}
		}
	}
}

func (c *Config) validateTLS(v *validator) {
	t := c.TLS
	oneOf(v, "tls.mode", t.Mode, TLSNone, TLSFiles, TLSACME)
	switch t.Mode {
	case TLSFiles:
		v.required("tls.cert_file", t.CertFile, "when tls.mode is files")
		v.required("tls.key_file", t.KeyFile, "when tls.mode is files")
	case TLSACME:
		a := t.ACME
		if len(a.Domains) == 0 {
			v.problemf("tls.acme.domains", "at least one domain is needed when tls.mode is acme")
		}
		for i, d := range a.Domains {
			if d == "" || strings.ContainsAny(d, ":/ \t?#@") {
				v.problemf(fmt.Sprintf("tls.acme.domains[%d]", i), "must be a bare host name; got %q", d)
			}
		}
		if msg := urlProblem(a.Directory); msg != "" {
			v.problemf("tls.acme.directory", "%s; got %q", msg, a.Directory)
		}
		if a.HTTPPort < 1 || a.HTTPPort > 65535 {
			v.problemf("tls.acme.http_port", "must be a port, 1-65535; got %d", a.HTTPPort)
		}
		if a.TLSALPNPort < 1 || a.TLSALPNPort > 65535 {
			v.problemf("tls.acme.tls_alpn_port", "must be a port, 1-65535; got %d", a.TLSALPNPort)
		}
	}
}

// urlProblem says what is wrong with an absolute http(s) URL, or "".
func urlProblem(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "must be a valid URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an absolute http:// or https:// URL"
	case u.Host == "" || u.Hostname() == "":
		return "must name a host"
	case u.Port() != "" && !validPort(u.Port(), 1):
		return "has an invalid port"
	}
	return ""
}

// originProblem says what is wrong with a URL that must be an origin only
// (scheme, host, port), or "".
func originProblem(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "must be a valid URL"
	case u.User != nil:
		return "must not hold a user name or password"
	case u.Path != "" || u.RawPath != "" || u.Opaque != "":
		return fmt.Sprintf("must have no path; got %q", u.Path)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return "must have no query or fragment"
	}
	return ""
}

// upstreamProblem says what is wrong with the upstream URL, or "".
func upstreamProblem(s string) string {
	if msg := urlProblem(s); msg != "" {
		return fmt.Sprintf("%s; got %q", msg, s)
	}
	if msg := originProblem(s); msg != "" {
		return msg
	}
	u, _ := url.Parse(s)
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return fmt.Sprintf("plain http is only allowed to a loopback host (127.0.0.1, ::1, localhost), "+
			"or the bearer would cross the network in clear; use https://%s", u.Host)
	}
	return ""
}

// isLoopbackHost reports whether host (no port, no brackets) is a loopback
// name or address. "" means every interface, so it is not.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validPort(p string, min int) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= min && n <= 65535 && p == strconv.Itoa(n)
}

// validHeaderName reports whether s is an HTTP header field name (RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}
