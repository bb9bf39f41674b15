package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"io"
	"io/fs"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults that are not derived from other keys.
const (
	DefaultListen        = "127.0.0.1:9127"
	DefaultUpstream      = "https://deakin.au.panopto.com"
	DefaultVaultAddress  = "http://127.0.0.1:8200"
	DefaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"
)

// Load reads the config file at path, parses it (see Parse) and reads the
// files it names that hold secrets (see Secrets): an empty, white-space-only
// or unreadable one is a problem of its key, like any invalid setting. Every
// problem it reports names the config file.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFoundError{path: path, err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, lines, errs := parse(data, getenv)
	if c == nil {
		return nil, fmt.Errorf("%s: %w", path, errs[0])
	}
	errs = append(errs, c.readSecrets(lines)...)
	if len(errs) > 0 {
		sortByLine(errs)
		for i, e := range errs {
			errs[i] = fmt.Errorf("%s: %w", path, e)
		}
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// notFoundError is a config file that does not exist; it matches
// fs.ErrNotExist.
type notFoundError struct {
	path string
	err  error
}

func (e notFoundError) Error() string {
	return fmt.Sprintf("config file %s not found (name another with -config or $PANOPTO_SIDECAR_CONFIG)", e.path)
}

func (e notFoundError) Unwrap() error { return e.err }

// Parse decodes config.yaml, fills the defaults and validates the result.
// getenv supplies $VAULT_ADDR and $VAULT_NAMESPACE (nil means an empty
// environment). An empty document is valid: every key takes its default.
//
// Unknown keys, duplicate keys, values of the wrong type and invalid settings
// are all reported at once, joined with errors.Join; each is a *Problem whose
// message starts with its key path: "oauth.refresh_before: must be > 0 (line 7)".
//
// A string key written as "" takes its default, as if absent. Numbers,
// durations, lists and booleans keep what is written, so an explicit 0 or []
// is validated rather than replaced. Parse never reads files the config names:
// Load reads those holding secrets; certificates are checked where they are
// used.
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	c, _, errs := parse(data, getenv)
	switch {
	case c == nil:
		return nil, errs[0]
	case len(errs) > 0:
		sortByLine(errs)
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// parse is Parse returning what Load needs besides: the config even when it
// has problems (nil only when the document could not be decoded at all,
// with the one error why), the line of every key in the file, and the
// problems unsorted.
func parse(data []byte, getenv func(string) string) (*Config, map[string]int, []error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		doc = yaml.Node{}
	case err != nil:
		return nil, nil, []error{fmt.Errorf("invalid yaml: %w", err)}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, nil, []error{fmt.Errorf("invalid yaml: %w", err)}
	default:
		return nil, nil, []error{&Problem{Line: next.Line, Msg: "more than one YAML document (---): put every key in one"}}
	}

	c := defaults()
	d := newDecoder()
	if len(doc.Content) > 0 {
		top := doc.Content[0]
		for top.Kind == yaml.AliasNode && top.Alias != nil {
			top = top.Alias
		}
		switch {
		case top.Kind == yaml.ScalarNode && top.ShortTag() == "!!null":
		case top.Kind == yaml.MappingNode:
			d.mapping(top, structValue(&c), "")
		default:
			d.problemf("", top, "the top level must be a mapping of keys such as listen: and upstream:, got %s", describe(top))
		}
	}
	// A key that failed to decode kept its default, so validating the rest
	// adds no noise and reports every problem in one go.
	c.fill(getenv)
	errs := append(d.errs(), c.validate(d.lines)...)
	return &c, d.lines, append(errs, c.validateWebhook(d.lines, getenv)...)
}

// sortByLine orders problems as they appear in the file; those about keys
// absent from it (line 0) come last, in the order found.
func sortByLine(errs []error) {
	line := func(e error) int {
		var p *Problem
		if errors.As(e, &p) && p.Line > 0 {
			return p.Line
		}
		return math.MaxInt
	}
	slices.SortStableFunc(errs, func(a, b error) int { return cmp.Compare(line(a), line(b)) })
}

// defaults returns a Config holding every default that is not a string;
// strings are filled after decoding, by fill, because "" means default.
func defaults() Config {
	return Config{
		OAuth: OAuth{
			Scopes:        []string{"openid", "api", "offline_access"},
			RefreshBefore: Duration(5 * time.Minute),
		},
		Credentials: Credentials{PollInterval: Duration(30 * time.Second)},
		Routes: []Route{
			{Prefix: "/Panopto/api/", Inject: true},
			{Prefix: "/Panopto/PublicAPI/", Inject: true},
			{Prefix: "/Panopto/Upload/", Inject: false},
		},
		ShutdownGrace:  Duration(30 * time.Second),
		TLS:            TLS{ACME: ACME{HTTPPort: 80, TLSALPNPort: 443}},
		RetryBodyLimit: 1 << 20,
		PublicMaxConns: 1024,
		Accounts:       Accounts{MaxCache: 1000, IdleEvict: Duration(time.Hour), TicketTTL: Duration(10 * time.Minute), KeepAliveRate: 2},
		Uploads: Uploads{PartSize: 16 << 20, Concurrency: 2, MemoryLimit: 256 << 20, QueueTimeout: Duration(15 * time.Minute),
			WatchFor: Duration(24 * time.Hour), Retention: Duration(30 * 24 * time.Hour)},
		Timeouts: Timeouts{
			ReadHeader:      Duration(10 * time.Second),
			Idle:            Duration(120 * time.Second),
			UpstreamHeaders: Duration(60 * time.Second),
			Dial:            Duration(10 * time.Second),
			TokenEndpoint:   Duration(15 * time.Second),
		},
	}
}

// fill sets every empty string key to its default, derived from other keys
// where the default depends on them, and normalises the URLs.
func (c *Config) fill(getenv func(string) string) {
	def(&c.Listen, DefaultListen)
	def(&c.TLS.Mode, TLSNone)
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.PublicURL == "" {
		scheme, port := "http", "9127"
		if c.TLS.Mode != TLSNone {
			scheme = "https"
		}
		// An invalid listen port is reported at listen; deriving from it
		// would add a public_url problem the operator never wrote.
		if _, p, err := net.SplitHostPort(c.Listen); err == nil && p != "0" && validPort(p, 1) {
			port = p
		}
		c.PublicURL = scheme + "://localhost:" + port
	}
	def(&c.Upstream, DefaultUpstream)
	c.Upstream = strings.TrimRight(c.Upstream, "/")

	def(&c.OAuth.Grant, GrantAuthorizationCode)
	def(&c.OAuth.ClientAuth, ClientAuthBasic)
	if upstreamProblem(c.Upstream) == "" {
		base := c.Upstream + "/Panopto/oauth2/connect/"
		def(&c.OAuth.AuthorizeURL, base+"authorize")
		def(&c.OAuth.TokenURL, base+"token")
		def(&c.OAuth.RevocationURL, base+"revocation")
		def(&c.OAuth.Issuer, c.Upstream+"/Panopto/oauth2")
	}

	def(&c.Vault.Address, getenv("VAULT_ADDR"))
	def(&c.Vault.Address, DefaultVaultAddress)
	def(&c.Vault.Namespace, getenv("VAULT_NAMESPACE"))
	def(&c.Vault.Mount, vault.DefaultMount)
	a := &c.Vault.Auth
	def(&a.Method, VaultAuthToken)
	if a.Method == VaultAuthKubernetes {
		def(&a.JWTFile, vault.DefaultJWTFile)
	}
	def(&a.MountPath, string(a.Method))

	cr := &c.Credentials
	def(&cr.Source, CredentialsEnv)
	def(&cr.Path, "panopto/client")
	def(&cr.IDKey, "client_id")
	def(&cr.SecretKey, "client_secret")
	def(&cr.UsernameKey, "username")
	def(&cr.PasswordKey, "password")
	def(&cr.AppKeyKey, "app_key")
	def(&cr.WebhookSecretKey, "webhook_secret")

	def(&c.TokenStore.Type, TokenStoreFile)
	switch c.TokenStore.Type {
	case TokenStoreFile:
		def(&c.TokenStore.Path, "panopto-token.json")
	case TokenStoreVault:
		def(&c.TokenStore.Path, "panopto/token")
	}

	def(&c.RoutesMatch, RoutesCaseInsensitive)
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "auto")
	def(&c.TLS.ACME.Directory, DefaultACMEDirectory)
	def(&c.TLS.ACME.Storage, "certmagic") // relative to the working directory, like the token file
	def(&c.Accounts.Mode, AccountsOff)
	def(&c.Accounts.Header, "X-Panopto-User")
	def(&c.Accounts.IdentityTemplate, "{account}")
	def(&c.Inbound.SharedSecretHeader, "X-Sidecar-Auth")
}

// def sets an empty string key to its default.
func def[T ~string](s *T, v T) {
	if *s == "" {
		*s = v
	}
}
