package vault

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/hashicorp/vault/api"
)

func TestSafeErrorWithholdsBodies(t *testing.T) {
	const secret = "s.SECRETVALUE"
	tests := []struct {
		name     string
		in       error
		want     string
		is, isnt []error
	}{
		{
			name: "vault json errors kept",
			in:   fmt.Errorf("error writing secret: %w", &api.ResponseError{StatusCode: 400, Errors: []string{"check-and-set parameter did not match the current version"}, URL: "http://x/v1/secret/data/p"}),
			want: "status 400: check-and-set parameter did not match the current version",
			isnt: []error{ErrUnavailable, ErrDenied, ErrSealed},
		},
		{
			name: "raw body withheld",
			in:   &api.ResponseError{StatusCode: 502, RawError: true, Errors: []string{"<html>" + secret + "</html>"}},
			want: "status 502: (non-vault response body withheld)",
			is:   []error{ErrUnavailable},
		},
		{
			name: "sealed",
			in:   &api.ResponseError{StatusCode: 503, Errors: []string{"Vault is sealed"}},
			want: "status 503: Vault is sealed",
			is:   []error{ErrUnavailable, ErrSealed},
		},
		{
			name: "denied",
			in:   &api.ResponseError{StatusCode: 403, Errors: []string{"permission denied"}},
			want: "status 403: permission denied",
			is:   []error{ErrDenied},
			isnt: []error{ErrUnavailable},
		},
		{
			name: "connection refused",
			in:   fmt.Errorf("giving up: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}),
			want: "unreachable: dial tcp: connection refused",
			is:   []error{ErrUnavailable},
		},
		{
			name: "deadline",
			in:   fmt.Errorf("get: %w", context.DeadlineExceeded),
			want: "unreachable: no answer in time: context deadline exceeded",
			is:   []error{ErrUnavailable, context.DeadlineExceeded},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := safeError(tt.in)
			if got.Error() != tt.want {
				t.Errorf("Error() = %q, want %q", got.Error(), tt.want)
			}
			if strings.Contains(got.Error(), secret) || strings.Contains(got.Error(), "http://x") {
				t.Errorf("Error() leaks a body or URL: %q", got.Error())
			}
			for _, target := range tt.is {
				if !errors.Is(got, target) {
					t.Errorf("errors.Is(%v) = false", target)
				}
			}
			for _, target := range tt.isnt {
				if errors.Is(got, target) {
					t.Errorf("errors.Is(%v) = true", target)
				}
			}
		})
	}
	if safeError(nil) != nil {
		t.Error("safeError(nil) != nil")
	}
}

func TestEscapeKey(t *testing.T) {
	tests := map[string]string{
		"alice":                 "alice",
		"Jo_Bloggs-2":           "Jo_Bloggs-2",
		"jo.bloggs@example.edu": "jo=2Ebloggs=40example=2Eedu",
		"a/b":                   "a=2Fb",
		"..":                    "=2E=2E",
		"=41":                   "=3D41",
		"é":                     "=C3=A9",
		" ":                     "=20",
	}
	seen := map[string]string{}
	for in, want := range tests {
		got := EscapeKey(in)
		if got != want {
			t.Errorf("EscapeKey(%q) = %q, want %q", in, got, want)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("EscapeKey(%q) == EscapeKey(%q)", in, prev)
		}
		seen[got] = in
		if strings.ContainsAny(got, "/.") {
			t.Errorf("EscapeKey(%q) = %q contains a path character", in, got)
		}
	}
	// "A" and "=41" must differ: '=' is always escaped.
	if EscapeKey("A") == EscapeKey("=41") {
		t.Error("escaping is not one-to-one")
	}
	s := NewStore(nil, "/panopto/token/")
	if got := s.keyPath(""); got != "panopto/token" {
		t.Errorf("keyPath(\"\") = %q", got)
	}
	if got := s.keyPath("a@b"); got != "panopto/token/accounts/a=40b" {
		t.Errorf("keyPath(a@b) = %q", got)
	}
	if got := s.keyPath("idem/a@b/0f"); got != "panopto/token/records/idem/a=40b=2F0f" {
		t.Errorf("keyPath(idem/a@b/0f) = %q", got)
	}
	if got := s.keyPath(token.TicketMarkerKey("a")); got != "panopto/token/accounts/login-ticket=2Fa" {
		t.Errorf("keyPath(ticket marker) = %q", got)
	}
}

func TestRecordWireForm(t *testing.T) {
	exp := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("AEDT", 11*3600))
	tests := []struct {
		name string
		rec  token.Record
	}{
		{"empty", token.Record{}},
		{"dropped", token.Record{Dropped: "invalid_grant"}},
		{"grant", token.Record{Grant: &token.Grant{AccessToken: "at", RefreshToken: "rt", TokenType: "Bearer", Scope: "openid api", Expiry: exp, ObtainedAt: exp.Add(-time.Hour)}}},
		{"grant with zero times", token.Record{Grant: &token.Grant{AccessToken: "at"}}},
		{"grant with identity", token.Record{Grant: &token.Grant{AccessToken: "at", Identity: &token.Identity{Subject: "s-1", PreferredUsername: "alice", Name: "Alice A", Email: "alice@example.edu", UPN: "alice@example.edu"}}}},
		{"ticket mark", token.Record{Ticket: &token.TicketMark{IssuedAt: time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC), ID: "T0"}}},
		{"grant with bare identity", token.Record{Grant: &token.Grant{AccessToken: "at", Identity: &token.Identity{Subject: "alice"}}}},
		{"lease", token.Record{Lease: &token.Lease{Holder: "pod-1", Until: exp}}},
		{"data", token.Record{Data: json.RawMessage(`{"id":"u-1","metadata":{"task_id":123}}`)}},
		{"data with lease", token.Record{Data: json.RawMessage(`{"id":"u-1"}`), Lease: &token.Lease{Holder: "pod-2", Until: exp}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := encodeRecord(tt.rec)
			// Vault hands data back as JSON-decoded map[string]any of strings.
			got, err := decodeRecord(m)
			if err != nil {
				t.Fatal(err)
			}
			assertRecord(t, got, tt.rec)
		})
	}
	if s := encodeRecord(token.Record{Grant: &token.Grant{Expiry: exp}})[keyExpiresAt]; s != "2026-03-03T18:06:07.123456789Z" {
		t.Errorf("expires_at = %q", s)
	}
}

func TestRecordCorrupt(t *testing.T) {
	tests := map[string]map[string]any{
		"no record keys":    {"foo": "bar"},
		"number token":      {keyAccessToken: 42.0, keyDropped: ""},
		"bad time":          {keyAccessToken: "at", keyExpiresAt: "tomorrow", keyDropped: ""},
		"bad lease time":    {keyLeaseHolder: "a", keyLeaseUntil: "1700000000", keyDropped: ""},
		"dropped not  text": {keyDropped: true},
		"data not JSON":     {keyData: "{"},
		"data not text":     {keyData: map[string]any{"id": "u-1"}},
	}
	for name, m := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := decodeRecord(m)
			if !errors.Is(err, token.ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func assertRecord(t *testing.T, got, want token.Record) {
	t.Helper()
	if got.Dropped != want.Dropped {
		t.Errorf("Dropped = %q, want %q", got.Dropped, want.Dropped)
	}
	switch {
	case (got.Grant == nil) != (want.Grant == nil):
		t.Errorf("Grant = %v, want %v", got.Grant, want.Grant)
	case got.Grant != nil:
		g, w := got.Grant, want.Grant
		if g.AccessToken.Reveal() != w.AccessToken.Reveal() || g.RefreshToken.Reveal() != w.RefreshToken.Reveal() {
			t.Error("tokens differ")
		}
		if g.TokenType != w.TokenType || g.Scope != w.Scope {
			t.Errorf("type/scope = %q/%q, want %q/%q", g.TokenType, g.Scope, w.TokenType, w.Scope)
		}
		if (g.Identity == nil) != (w.Identity == nil) || g.Identity != nil && *g.Identity != *w.Identity {
			t.Errorf("identity = %+v, want %+v", g.Identity, w.Identity)
		}
		if !g.Expiry.Equal(w.Expiry) || !g.ObtainedAt.Equal(w.ObtainedAt) {
			t.Errorf("times = %v/%v, want %v/%v", g.Expiry, g.ObtainedAt, w.Expiry, w.ObtainedAt)
		}
	}
	switch {
	case (got.Lease == nil) != (want.Lease == nil):
		t.Errorf("Lease = %v, want %v", got.Lease, want.Lease)
	case got.Lease != nil:
		if got.Lease.Holder != want.Lease.Holder || !got.Lease.Until.Equal(want.Lease.Until) {
			t.Errorf("Lease = %+v, want %+v", *got.Lease, *want.Lease)
		}
	}
	if string(got.Data) != string(want.Data) {
		t.Errorf("Data = %s, want %s", got.Data, want.Data)
	}
	switch g, w := got.Ticket, want.Ticket; {
	case (g == nil) != (w == nil):
		t.Errorf("Ticket = %v, want %v", g, w)
	case g != nil && (g.ID != w.ID || !g.IssuedAt.Equal(w.IssuedAt)):
		t.Errorf("Ticket = %+v, want %+v", *g, *w)
	}
}

func TestNewConfigErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	full := filepath.Join(dir, "full")
	badCA := filepath.Join(dir, "ca.pem")
	for p, s := range map[string]string{empty: "\n", full: "value\n", badCA: "not a certificate"} {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing")
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	addr := "http://127.0.0.1:1"
	tests := []struct {
		name   string
		cfg    Config
		getenv func(string) string
		want   []string
	}{
		{"no address", Config{Auth: Auth{Method: "token", TokenFile: full}}, env(nil), []string{"address is not set"}},
		{"unknown method", Config{Address: addr, Auth: Auth{Method: "ldap"}}, env(nil), []string{`unknown auth method "ldap"`}},
		{"no token", Config{Address: addr}, env(nil), []string{"set token_file or $VAULT_TOKEN"}},
		{"missing token file", Config{Address: addr, Auth: Auth{TokenFile: missing}}, env(nil), []string{"read " + missing}},
		{"empty token file", Config{Address: addr, Auth: Auth{TokenFile: empty}}, env(nil), []string{"file is empty"}},
		{"approle files", Config{Address: addr, Auth: Auth{Method: "approle", SecretIDFile: missing}}, env(nil), []string{"role_id_file is not set", "read " + missing}},
		{"kubernetes", Config{Address: addr, Auth: Auth{Method: "kubernetes", JWTFile: missing}}, env(nil), []string{"role is not set", "read " + missing}},
		{"bad ca", Config{Address: addr, CACert: badCA}, env(map[string]string{"VAULT_TOKEN": "t"}), []string{"ca_cert " + badCA}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(context.Background(), tt.cfg, tt.getenv, nil)
			if err == nil {
				c.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "value") {
				t.Errorf("error shows file content: %q", err)
			}
		})
	}
}

// closedAddr returns a loopback URL nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close()
	return addr
}

func TestUnreachableAtStart(t *testing.T) {
	addr := closedAddr(t)
	getenv := func(k string) string {
		return map[string]string{"VAULT_ADDR": addr, "VAULT_TOKEN": "hvs.unreachable-token"}[k]
	}
	c, err := New(context.Background(), Config{}, getenv, nil)
	if err != nil {
		t.Fatalf("New must not fail when Vault is down: %v", err)
	}
	defer c.Close()
	s := NewStore(c, "panopto/token")
	start := time.Now()
	_, _, err = s.Load(context.Background(), "")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Load err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Load took %v with Vault down", d)
	}
	if strings.Contains(err.Error(), "unreachable-token") {
		t.Errorf("error leaks the token: %v", err)
	}
	st := c.Status()
	if st.Reachable || st.Authenticated || st.LastError == "" || st.Address != addr || st.Method != "token" {
		t.Errorf("Status = %+v", st)
	}
	if _, err := NewCredentials(c, CredentialsOptions{Path: "panopto/client"}, nil).Credentials(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Credentials err = %v, want ErrUnavailable", err)
	}
	_, err = s.CompareAndSwap(context.Background(), "", 0, token.Record{})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, token.ErrConflict) {
		t.Errorf("CompareAndSwap err = %v, want ErrUnavailable and not ErrConflict", err)
	}
}

// TestConfigFromGetenvOnly runs against a stand-in Vault over TLS: the
// address, namespace and token come from getenv (never from the process
// environment), and the CA file and server name are used.
func TestConfigFromGetenvOnly(t *testing.T) {
	type seen struct{ path, token, namespace string }
	got := make(chan seen, 16)
	fake := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.URL.Path, r.Header.Get("X-Vault-Token"), r.Header.Get("X-Vault-Namespace")}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/auth/token/lookup-self":
			fmt.Fprint(w, `{"data":{"ttl":0,"renewable":false,"expire_time":null}}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"errors":[]}`)
		}
	}))
	defer fake.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fake.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VAULT_TOKEN", "from-process")
	t.Setenv("VAULT_NAMESPACE", "process-ns")
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	getenv := func(k string) string {
		return map[string]string{"VAULT_ADDR": fake.URL, "VAULT_NAMESPACE": "team-a", "VAULT_TOKEN": "from-getenv"}[k]
	}
	c, err := New(context.Background(), Config{CACert: ca, TLSServerName: "example.com"}, getenv, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rec, v, err := NewStore(c, "p").Load(context.Background(), "")
	if err != nil || v != 0 || rec.Grant != nil {
		t.Fatalf("Load = %+v, %d, %v", rec, v, err)
	}
	deadline := time.After(10 * time.Second)
	var paths []string
	for len(paths) < 2 {
		select {
		case s := <-got:
			if s.token != "from-getenv" || s.namespace != "team-a" {
				t.Errorf("%s sent token %q namespace %q", s.path, s.token, s.namespace)
			}
			paths = append(paths, s.path)
		case <-deadline:
			t.Fatalf("requests seen: %v", paths)
		}
	}

	// Without the CA file the server is not trusted.
	c2, err := New(context.Background(), Config{}, getenv, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, _, err := NewStore(c2, "p").Load(context.Background(), ""); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted server: %v", err)
	}
}
