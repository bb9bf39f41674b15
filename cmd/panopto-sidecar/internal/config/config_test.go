package config

import (
	"errors"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// repoRoot holds config.yaml and testdata/config.
const repoRoot = "../../../.."

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// problems splits a Parse error into its messages.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

// wants returns the "# want: …" lines at the top of a testdata file.
func wants(data []byte) []string {
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if w, ok := strings.CutPrefix(line, "# want: "); ok {
			out = append(out, w)
		}
	}
	return out
}

func TestTestdata(t *testing.T) {
	good, _ := filepath.Glob(filepath.Join(repoRoot, "testdata/config/good/*.yaml"))
	bad, _ := filepath.Glob(filepath.Join(repoRoot, "testdata/config/bad/*.yaml"))
	if len(good) < 5 || len(bad) < 10 {
		t.Fatalf("testdata missing: %d good, %d bad files", len(good), len(bad))
	}
	good = append(good, filepath.Join(repoRoot, "config.yaml"))
	for _, f := range good {
		t.Run("good/"+filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if w := wants(data); len(w) > 0 {
				t.Fatalf("a good file wants problems: %q", w)
			}
			c, err := Parse(data, env())
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			roundTrip(t, c, env())
		})
	}
	for _, f := range bad {
		t.Run("bad/"+filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want := wants(data)
			if len(want) == 0 {
				t.Fatal("no # want: lines")
			}
			c, err := Parse(data, env())
			if err == nil || c != nil {
				t.Fatalf("Parse = %v, %v; want nil and an error", c, err)
			}
			got := problems(err)
			// Each want is matched by its own problem, so a file with three
			// problems must report all three, and nothing else.
			left := append([]string(nil), got...)
		next:
			for _, w := range want {
				for i, g := range left {
					if strings.Contains(g, w) {
						left = append(left[:i], left[i+1:]...)
						continue next
					}
				}
				t.Errorf("missing problem %q", w)
			}
			for _, g := range left {
				t.Errorf("unexpected problem %q", g)
			}
			if t.Failed() {
				t.Logf("got:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	want := &Config{
		Listen:    "127.0.0.1:9127",
		PublicURL: "http://localhost:9127",
		Upstream:  "https://deakin.au.panopto.com",
		OAuth: OAuth{
			Grant:         "authorization_code",
			AuthorizeURL:  "https://deakin.au.panopto.com/Panopto/oauth2/connect/authorize",
			TokenURL:      "https://deakin.au.panopto.com/Panopto/oauth2/connect/token",
			RevocationURL: "https://deakin.au.panopto.com/Panopto/oauth2/connect/revocation",
			Scopes:        []string{"openid", "api", "offline_access"},
			ClientAuth:    "basic",
			RefreshBefore: Duration(5 * time.Minute),
			Issuer:        "https://deakin.au.panopto.com/Panopto/oauth2",
		},
		Vault: Vault{
			Address: "http://127.0.0.1:8200",
			Auth:    VaultAuth{Method: "token", MountPath: "token"},
			Mount:   "secret",
		},
		Credentials: Credentials{
			Source: "env", Path: "panopto/client",
			IDKey: "client_id", SecretKey: "client_secret",
			UsernameKey: "username", PasswordKey: "password", AppKeyKey: "app_key", WebhookSecretKey: "webhook_secret",
			PollInterval: Duration(30 * time.Second),
		},
		TokenStore: TokenStore{Type: "file", Path: "panopto-token.json"},
		Routes: []Route{
			{Prefix: "/Panopto/api/", Inject: true},
			{Prefix: "/Panopto/PublicAPI/", Inject: true},
			{Prefix: "/Panopto/Upload/", Inject: false},
		},
		RoutesMatch:   "case_insensitive",
		Log:           Log{Level: "info", Format: "auto"},
		ShutdownGrace: Duration(30 * time.Second),
		TLS: TLS{Mode: "none", ACME: ACME{
			Directory: "https://acme-v02.api.letsencrypt.org/directory",
			HTTPPort:  80, TLSALPNPort: 443, Storage: "certmagic",
		}},
		RetryBodyLimit: 1 << 20,
		PublicMaxConns: 1024,
		Accounts: Accounts{Mode: "off", Header: "X-Panopto-User", MaxCache: 1000, IdleEvict: Duration(time.Hour), KeepAliveRate: 2,
			TicketTTL: Duration(10 * time.Minute), IdentityTemplate: "{account}"},
		Inbound: Inbound{SharedSecretHeader: "X-Sidecar-Auth"},
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
	shipped, err := os.ReadFile(filepath.Join(repoRoot, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"empty":         "",
		"comment":       "# nothing\n",
		"null":          "~\n",
		"document":      "---\n",
		"empty strings": "listen: ''\noauth: {token_url: '', grant: ''}\nlog: {}\nvault: {auth: {}}\n",
		"shipped":       string(shipped),
	} {
		got, err := Parse([]byte(data), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
		}
	}
}

func TestDerivedDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		getenv     func(string) string
		check      func(*Config) (got, want any)
	}{
		{"vault address from env", "", env("VAULT_ADDR", "https://vault:8200", "VAULT_NAMESPACE", "ns1"),
			func(c *Config) (any, any) {
				return []string{c.Vault.Address, c.Vault.Namespace}, []string{"https://vault:8200", "ns1"}
			}},
		{"explicit vault address wins", "vault: {address: 'http://10.0.0.1:8200', namespace: x}", env("VAULT_ADDR", "https://vault:8200", "VAULT_NAMESPACE", "ns1"),
			func(c *Config) (any, any) {
				return []string{c.Vault.Address, c.Vault.Namespace}, []string{"http://10.0.0.1:8200", "x"}
			}},
		{"https public_url with tls", "tls: {mode: files, cert_file: c, key_file: k}", nil,
			func(c *Config) (any, any) { return c.PublicURL, "https://localhost:9127" }},
		{"public_url follows the listen port", "listen: 127.0.0.1:8080", nil,
			func(c *Config) (any, any) { return c.PublicURL, "http://localhost:8080" }},
		{"public_url for port 0", "listen: 127.0.0.1:0", nil,
			func(c *Config) (any, any) { return c.PublicURL, "http://localhost:9127" }},
		{"trailing slashes trimmed", "public_url: https://ontrack.example.org/\nupstream: https://x.panopto.com/", nil,
			func(c *Config) (any, any) {
				return []string{c.PublicURL, c.Upstream, c.RedirectURL(), c.LoginURL()},
					[]string{"https://ontrack.example.org", "https://x.panopto.com",
						"https://ontrack.example.org/redirect", "https://ontrack.example.org/-/login"}
			}},
		{"oauth urls follow upstream", "upstream: http://127.0.0.1:8081\noauth: {token_url: 'https://idp.example.org/token'}", nil,
			func(c *Config) (any, any) {
				return []string{c.OAuth.AuthorizeURL, c.OAuth.TokenURL, c.OAuth.RevocationURL},
					[]string{"http://127.0.0.1:8081/Panopto/oauth2/connect/authorize", "https://idp.example.org/token",
						"http://127.0.0.1:8081/Panopto/oauth2/connect/revocation"}
			}},
		{"vault token store path", "token_store: {type: vault}", nil,
			func(c *Config) (any, any) { return c.TokenStore.Path, "panopto/token" }},
		{"kubernetes auth defaults", "vault: {auth: {method: kubernetes, role: r}}", nil,
			func(c *Config) (any, any) {
				return c.Vault.Auth, VaultAuth{Method: "kubernetes", Role: "r", JWTFile: vault.DefaultJWTFile, MountPath: "kubernetes"}
			}},
		{"bare auth method", "vault: {auth: approle}", nil,
			func(c *Config) (any, any) { return c.Vault.Auth, VaultAuth{Method: "approle", MountPath: "approle"} }},
		{"explicit zeros kept", "shutdown_grace: 0s\nretry_body_limit: 0\nrewrite_upload_target: true", nil,
			func(c *Config) (any, any) {
				return []any{c.ShutdownGrace, c.RetryBodyLimit, c.RewriteUploadTarget}, []any{Duration(0), ByteSize(0), true}
			}},
		{"sizes and durations", "retry_body_limit: 512KiB\noauth: {refresh_before: 90s}\naccounts: {idle_evict: 2h30m}", nil,
			func(c *Config) (any, any) {
				return []any{c.RetryBodyLimit.Int64(), c.OAuth.RefreshBefore.D(), c.Accounts.IdleEvict.D()},
					[]any{int64(512 << 10), 90 * time.Second, 150 * time.Minute}
			}},
		{"scopes without offline_access", "oauth: {scopes: [openid, api]}", nil,
			func(c *Config) (any, any) { return c.OAuth.Scopes, []string{"openid", "api"} }},
		{"anchors", "x: &s [a]\n", nil, nil}, // unknown key: checked below
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), tc.getenv)
			if tc.check == nil {
				if err == nil {
					t.Fatal("Parse accepted an unknown key")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tc.check(c); !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func TestHosts(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		ok   bool
	}{
		{"upstream: http://127.0.0.1:8080", true},
		{"upstream: http://127.3.2.1", true},
		{"upstream: 'http://[::1]:8080'", true},
		{"upstream: http://localhost:8080", true},
		{"upstream: http://LOCALHOST", true},
		{"upstream: http://10.0.0.1", false},
		{"upstream: http://localhost.evil.example", false},
		{"upstream: http://127.0.0.1.nip.io", false},
		{"upstream: https://user:pw@deakin.au.panopto.com", false},
		{"upstream: https://deakin.au.panopto.com:99999", false},
		{"upstream: ftp://deakin.au.panopto.com", false},
		{"upstream: https://deakin.au.panopto.com/?a=b", false},
		{"listen: localhost:9127", true},
		{"listen: '[::1]:9127'", true},
		{"listen: 127.0.0.2:9127", true},
		{"listen: 10.1.2.3:9127", false},
		{"listen: ontrack.local:9127", false},
		{"listen: 10.1.2.3:9127\ninbound: {allow_unauthenticated: true}", true},
		{"listen: 10.1.2.3:9127\ninbound: {shared_secret_file: /s}", true},
		{"listen: 10.1.2.3:9127\ninbound: {client_ca_file: /ca}\ntls: {mode: files, cert_file: c, key_file: k}", true},
		{"listen: 127.0.0.1:65536", false},
		{"listen: 127.0.0.1:http", false},
	} {
		_, err := Parse([]byte(tc.yaml), nil)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok = %v", tc.yaml, err, tc.ok)
		}
	}
}

func TestProblemsAreTyped(t *testing.T) {
	_, err := Parse([]byte("oauth:\n  refresh_before: 0s\n"), nil)
	var p *Problem
	if !errors.As(err, &p) {
		t.Fatalf("error %v holds no *Problem", err)
	}
	if *p != (Problem{Path: "oauth.refresh_before", Line: 2, Msg: "must be > 0"}) {
		t.Errorf("problem = %+v", *p)
	}
	if got, want := p.Error(), "oauth.refresh_before: must be > 0 (line 2)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"two documents", "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n", "more than one YAML document"},
		{"syntax", "oauth: [\n", "invalid yaml"},
		{"tab indent", "oauth:\n\tgrant: password\n", "invalid yaml"},
		{"complex key", "? [a]\n: b\n", "keys must be plain names"},
	} {
		_, err := Parse([]byte(tc.yaml), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	if _, err := Load(missing, nil); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: err = %v, want it to name %s", err, missing)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("colour: red\noauth: {grant: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(bad, nil)
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 {
		t.Fatalf("err = %v, want 2 problems", err)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, bad+": ") {
			t.Errorf("problem %q does not name the file", l)
		}
	}
	var p *Problem
	if !errors.As(err, &p) || p.Path != "colour" {
		t.Errorf("errors.As(*Problem) = %+v", p)
	}
	c, err := Load(filepath.Join(repoRoot, "config.yaml"), nil)
	if err != nil || c.Listen != DefaultListen {
		t.Errorf("shipped config: %v, %v", c, err)
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		out  string
		ok   bool
	}{
		{"5m", 5 * time.Minute, "5m", true},
		{"30s", 30 * time.Second, "30s", true},
		{"1h", time.Hour, "1h", true},
		{"1h30m", 90 * time.Minute, "1h30m", true},
		{"1h0m5s", time.Hour + 5*time.Second, "1h0m5s", true},
		{"250ms", 250 * time.Millisecond, "250ms", true},
		{"0", 0, "0s", true},
		{"30", 0, "", false},
		{"five", 0, "", false},
		{"[1s]", 0, "", false},
	} {
		var d Duration
		err := yaml.Unmarshal([]byte(tc.in), &d)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok = %v", tc.in, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if d.D() != tc.want {
			t.Errorf("%q = %v, want %v", tc.in, d.D(), tc.want)
		}
		out, err := yaml.Marshal(d)
		if err != nil || strings.TrimSpace(string(out)) != tc.out {
			t.Errorf("marshal %q = %q, %v; want %q", tc.in, out, err, tc.out)
		}
	}
}

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		out  string
		ok   bool
	}{
		{"1048576", 1 << 20, "1MiB", true},
		{"1MiB", 1 << 20, "1MiB", true},
		{"512KiB", 512 << 10, "512KiB", true},
		{"512 kib", 512 << 10, "512KiB", true},
		{"1MB", 1000000, "1000000", true},
		{"2GiB", 2 << 30, "2GiB", true},
		{"1kB", 1000, "1000", true},
		{"100B", 100, "100", true},
		{"0", 0, "0", true},
		{"-1", -1, "-1", true},
		{"1.5MiB", 0, "", false},
		{"1 megabyte", 0, "", false},
		{"MiB", 0, "", false},
		{"9999999TiB", 0, "", false},
		{"{a: b}", 0, "", false},
	} {
		var b ByteSize
		err := yaml.Unmarshal([]byte(tc.in), &b)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok = %v", tc.in, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if b.Int64() != tc.want {
			t.Errorf("%q = %d, want %d", tc.in, b.Int64(), tc.want)
		}
		out, err := yaml.Marshal(b)
		if err != nil || strings.TrimSpace(string(out)) != tc.out {
			t.Errorf("marshal %q = %q, %v; want %q", tc.in, out, err, tc.out)
		}
	}
}

func TestVaultAuthUnmarshal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want VaultAuth
		err  string
	}{
		{"kubernetes", VaultAuth{Method: "kubernetes"}, ""},
		{"{method: approle, role_id_file: r, secret_id_file: s, mount_path: ar}",
			VaultAuth{Method: "approle", RoleIDFile: "r", SecretIDFile: "s", MountPath: "ar"}, ""},
		{"{method: token, token_file: /t}", VaultAuth{Method: "token", TokenFile: "/t"}, ""},
		{"{method: approle, roleid: r}", VaultAuth{}, "roleid: unknown key (line 1)"},
		{"[token]", VaultAuth{}, "want a method name"},
	} {
		var a VaultAuth
		err := yaml.Unmarshal([]byte(tc.in), &a)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || a != tc.want {
			t.Errorf("%q = %+v, %v; want %+v", tc.in, a, err, tc.want)
		}
	}
}

func TestNeedsVault(t *testing.T) {
	for yml, want := range map[string]bool{
		"":                                    false,
		"credentials: {source: vault}":        true,
		"token_store: {type: vault}":          true,
		"vault: {address: 'https://v:8200'}":  false,
		"credentials: {source: env, path: x}": false,
	} {
		c, err := Parse([]byte(yml), nil)
		if err != nil {
			t.Fatalf("%q: %v", yml, err)
		}
		if c.NeedsVault() != want {
			t.Errorf("%q: NeedsVault = %v, want %v", yml, !want, want)
		}
	}
}

func TestUpstreamURL(t *testing.T) {
	c, err := Parse([]byte("upstream: https://x.panopto.com:8443/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	u := c.UpstreamURL()
	if u.Scheme != "https" || u.Host != "x.panopto.com:8443" || u.Path != "" {
		t.Errorf("UpstreamURL = %#v", u)
	}
	u.Host = "changed"
	if c.UpstreamURL().Host != "x.panopto.com:8443" {
		t.Error("UpstreamURL shares its result")
	}
}

func TestRestartRequired(t *testing.T) {
	base := "listen: 127.0.0.1:9127\n"
	vaultStore := base + "token_store: {type: vault}\n"
	for _, tc := range []struct {
		cur, next string // cur "" means base
		want      []string
	}{
		{"", base, nil},
		{"", base + "log: {level: debug}\noauth: {refresh_before: 10m}\nroutes: [{prefix: /Panopto/api/, inject: true}]\nshutdown_grace: 1s", nil},
		// Applied on reload: the upstream, where credentials come from, the
		// account cache, the vault: section while tokens are not in Vault.
		{"", base + "routes_match: exact", nil},
		{"", base + "upstream: https://other.panopto.com\ncredentials: {source: vault}\naccounts: {max_cache: 5}", nil},
		{"", base + "vault: {address: http://vault.example:8200, auth: {method: approle, role_id_file: /r, secret_id_file: /s}}", nil},
		{"", "listen: 127.0.0.1:9128\n", []string{"listen"}},
		{"", base + "tls: {mode: files, cert_file: c, key_file: k}", []string{"tls"}},
		{"", base + "tls: {mode: files, cert_file: c, key_file: k}\ninbound: {client_ca_file: ca.pem}", []string{"tls", "inbound.client_ca_file"}},
		{"", base + "timeouts: {read_header: 1s, idle: 2s, dial: 3s}", []string{"timeouts"}},
		{"", base + "upstream_ca_file: ca.pem", []string{"upstream_ca_file"}},
		{"", base + "accounts: {mode: login, identity_claim: sub}", []string{"accounts.mode"}},
		{"", base + "vault: {auth: {method: token, token_file: /t}}\ntoken_store: {type: vault}", []string{"token_store"}},
		{"", base + "tls: {acme: {domains: [a.example]}}\nlog: {format: json}", []string{"tls", "log.format"}},
		{vaultStore, vaultStore + "vault: {auth: {method: token, token_file: /t}}", []string{"vault"}},
		{vaultStore, vaultStore + "vault: {mount: kv}\ncredentials: {source: vault}", []string{"vault"}},
	} {
		if tc.cur == "" {
			tc.cur = base
		}
		cur, err := Parse([]byte(tc.cur), nil)
		if err != nil {
			t.Fatal(err)
		}
		next, err := Parse([]byte(tc.next), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.next, err)
		}
		orig := *next
		eff, got := KeepRestartOnly(cur, next)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: KeepRestartOnly keys = %q, want %q", tc.next, got, tc.want)
		}
		if !reflect.DeepEqual(*next, orig) {
			t.Errorf("%q: KeepRestartOnly modified next", tc.next)
		}
		// What it returns has every restart-only setting of cur, and
		// everything else of next.
		if _, again := KeepRestartOnly(cur, eff); again != nil {
			t.Errorf("%q: the result still changes %q", tc.next, again)
		}
		if back, _ := KeepRestartOnly(next, eff); !reflect.DeepEqual(back, next) {
			t.Errorf("%q: the result differs from next in more than %q", tc.next, got)
		}
		if eff, got := KeepRestartOnly(next, next); got != nil || !reflect.DeepEqual(eff, next) {
			t.Errorf("%q: KeepRestartOnly(itself) = %q", tc.next, got)
		}
	}
	var nilCfg *Config
	if eff, got := KeepRestartOnly(nilCfg, &Config{}); got != nil || !reflect.DeepEqual(eff, &Config{}) {
		t.Error("nil running config")
	}
}

// TestREADMEListsRestartOnlyKeys: the README's list of settings that need a
// restart is the code's.
func TestREADMEListsRestartOnlyKeys(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const intro = "Settings that take effect only after a restart"
	_, list, ok := strings.Cut(string(data), intro)
	if !ok {
		t.Fatalf("README.md has no paragraph starting %q", intro)
	}
	// The list: the first run of bullets after the introducing sentence.
	var readme []string
	for line := range strings.Lines(list) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "- `") {
			if len(readme) > 0 {
				break
			}
			continue
		}
		key, _, _ := strings.Cut(strings.TrimPrefix(line, "- `"), "`")
		readme = append(readme, key)
	}
	code := RestartOnly()
	slices.Sort(readme)
	slices.Sort(code)
	if !slices.Equal(readme, code) {
		t.Errorf("README.md lists the restart-only keys %q; the code has %q", readme, code)
	}
}

// TestShippedConfigIsComplete checks that config.yaml sets every key of the
// schema, so that a field added to types.go is documented there too.
func TestShippedConfigIsComplete(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d := newDecoder()
	var c Config
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	d.mapping(doc.Content[0], structValue(&c), "")
	if len(d.problems) > 0 {
		t.Fatal(errors.Join(d.errs()...))
	}
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if yamlKey(f) == "" {
				continue // not in the file (Secrets)
			}
			p := join(path, strings.Split(f.Tag.Get("yaml"), ",")[0])
			if _, ok := d.lines[p]; !ok {
				t.Errorf("config.yaml does not set %s", p)
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[VaultAuth]() {
				walk(f.Type, p)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
}
