package login_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"golang.org/x/oauth2"
)

const (
	oidcClientID = "sidecar-oidc"
	oidcSecret   = "oidc-client-secret"
	oidcRedirect = "https://ontrack.example/redirect"
	oidcVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-0123456789"
	oidcNonce    = "n0nce-sent-to-authorize"
)

// oidcEnv is the stand-in served over TLS by a private CA, with a switch
// that makes its discovery document fail, and counters of discovery and
// JWKS fetches.
type oidcEnv struct {
	t         *testing.T
	clk       *testsupport.Clock
	fake      *panoptofake.Server
	srv       *httptest.Server
	client    *http.Client // trusts the private CA
	down      atomic.Bool  // discovery answers 503
	discovery atomic.Int32
	jwks      atomic.Int32
}

func newOIDCEnv(t *testing.T) *oidcEnv {
	t.Helper()
	e := &oidcEnv{t: t, clk: testsupport.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))}
	e.fake = panoptofake.New(panoptofake.Options{
		ClientID: oidcClientID, ClientSecret: oidcSecret, RedirectURIs: []string{oidcRedirect}, Now: e.clk.Now,
	})
	e.fake.SetProfile("alice", panoptofake.Profile{Name: "Alice Liddell", Email: "alice@example.edu", UPN: "alice@example.edu"})
	ca := testsupport.NewCert(t, "private CA", nil, true)
	leaf := testsupport.NewCert(t, "panopto.test", ca, false)
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/Panopto/oauth2/.well-known/openid-configuration":
			e.discovery.Add(1)
			if e.down.Load() {
				http.Error(w, "service unavailable", http.StatusServiceUnavailable)
				return
			}
		case "/Panopto/oauth2/.well-known/openid-configuration/jwks":
			e.jwks.Add(1)
		}
		e.fake.ServeHTTP(w, r)
	}))
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted-CA test's handshake
	e.srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLSCert(t)}}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	e.client = &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(e.client.CloseIdleConnections)
	return e
}

func (e *oidcEnv) issuer() string { return e.srv.URL + "/Panopto/oauth2" }

func (e *oidcEnv) verifier() *login.IDVerifier {
	return login.NewIDVerifier(e.issuer(), oidcClientID, e.client, e.clk.Now)
}

// idToken logs user in at the stand-in (authorize, then the code exchange)
// and returns the id_token of the answer ("" when it has none).
func (e *oidcEnv) idToken(user string) string {
	e.t.Helper()
	q := url.Values{
		"client_id": {oidcClientID}, "redirect_uri": {oidcRedirect}, "response_type": {"code"},
		"scope": {"openid api offline_access"}, "state": {"st4te"}, "nonce": {oidcNonce},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(oidcVerifier)}, "code_challenge_method": {"S256"}, "login_hint": {user},
	}
	resp, err := e.client.Get(e.issuer() + "/connect/authorize?" + q.Encode())
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
		e.t.Fatalf("authorize: %d %v", resp.StatusCode, err)
	}
	form := url.Values{
		"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {oidcRedirect}, "code_verifier": {oidcVerifier},
	}
	req, _ := http.NewRequest(http.MethodPost, e.issuer()+"/connect/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(oidcClientID, oidcSecret)
	resp, err = e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		IDToken string `json:"id_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	return body.IDToken
}

func TestVerifyIDToken(t *testing.T) {
	alice := token.Identity{Subject: "alice", PreferredUsername: "alice", Name: "Alice Liddell", Email: "alice@example.edu", UPN: "alice@example.edu"}
	tests := []struct {
		name    string
		fault   panoptofake.IDTokenFault
		nonce   string                  // the nonce the login sent
		raw     func(tok string) string // what the callback hands over
		want    token.Identity
		wantErr []error
	}{
		{name: "good", want: alice},
		{name: "wrong nonce", fault: panoptofake.IDTokenWrongNonce, wantErr: []error{login.ErrIDTokenInvalid, login.ErrNonceMismatch}},
		{name: "login sent another nonce", nonce: "another", wantErr: []error{login.ErrIDTokenInvalid, login.ErrNonceMismatch}},
		{name: "login sent no nonce", nonce: "-", wantErr: []error{login.ErrIDTokenInvalid, login.ErrNonceMismatch}},
		{name: "wrong audience", fault: panoptofake.IDTokenWrongAudience, wantErr: []error{login.ErrIDTokenInvalid}},
		{name: "wrong issuer", fault: panoptofake.IDTokenWrongIssuer, wantErr: []error{login.ErrIDTokenInvalid}},
		{name: "bad signature", fault: panoptofake.IDTokenBadSignature, wantErr: []error{login.ErrIDTokenInvalid}},
		{name: "expired", fault: panoptofake.IDTokenExpired, wantErr: []error{login.ErrIDTokenInvalid}},
		{name: "no id_token", fault: panoptofake.IDTokenOmitted, wantErr: []error{login.ErrNoIDToken}},
		{name: "not a jwt", raw: func(string) string { return "not.a.jwt" }, wantErr: []error{login.ErrIDTokenInvalid}},
		{name: "payload altered", raw: func(tok string) string {
			// Still well-formed, so only the signature gives it away.
			p := strings.Split(tok, ".")
			payload, _ := base64.RawURLEncoding.DecodeString(p[1])
			altered := strings.Replace(string(payload), `"preferred_username":"alice"`, `"preferred_username":"bob"`, 1)
			return p[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(altered)) + "." + p[2]
		}, wantErr: []error{login.ErrIDTokenInvalid}},
	}
	e := newOIDCEnv(t)
	v := e.verifier()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.fake.ForgeNextIDToken(tt.fault)
			raw := e.idToken("alice")
			if tt.raw != nil {
				raw = tt.raw(raw)
			}
			nonce := oidcNonce
			switch tt.nonce {
			case "":
			case "-":
				nonce = ""
			default:
				nonce = tt.nonce
			}
			id, err := v.VerifyIDToken(context.Background(), raw, nonce)
			if len(tt.wantErr) == 0 {
				if err != nil || id != tt.want {
					t.Fatalf("got %+v, %v; want %+v", id, err, tt.want)
				}
				return
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("error %v does not wrap %v", err, want)
				}
			}
			if id != (token.Identity{}) {
				t.Errorf("identity %+v with an error", id)
			}
			for _, part := range strings.Split(raw, ".") {
				if len(part) > 8 && strings.Contains(err.Error(), part) {
					t.Errorf("error quotes the token: %v", err)
				}
			}
		})
	}
	if n := e.discovery.Load(); n != 1 {
		t.Errorf("discovery fetched %d times, want once", n)
	}
	// A signature that does not verify makes go-oidc re-read the JWKS once,
	// in case the keys rotated (two cases here); otherwise they are cached.
	if n := e.jwks.Load(); n != 3 {
		t.Errorf("jwks fetched %d times", n)
	}
}

func TestVerifyIDTokenExpiredIsTyped(t *testing.T) {
	e := newOIDCEnv(t)
	e.fake.ForgeNextIDToken(panoptofake.IDTokenExpired)
	_, err := e.verifier().VerifyIDToken(context.Background(), e.idToken("alice"), oidcNonce)
	var te *oidc.TokenExpiredError
	if !errors.As(err, &te) || !errors.Is(err, login.ErrIDTokenInvalid) {
		t.Fatalf("error %v", err)
	}
	// The verifier's clock decides: a good token is expired 6 minutes on.
	raw := e.idToken("alice")
	e.clk.Advance(6 * time.Minute)
	if _, err := e.verifier().VerifyIDToken(context.Background(), raw, oidcNonce); !errors.As(err, &te) {
		t.Fatalf("later: %v", err)
	}
}

func TestVerifyIDTokenDiscoveryDownThenUp(t *testing.T) {
	e := newOIDCEnv(t)
	e.down.Store(true)
	v := e.verifier() // constructing it contacts nobody
	if n := e.discovery.Load(); n != 0 {
		t.Fatalf("discovery at construction: %d", n)
	}
	raw := e.idToken("alice")
	_, err := v.VerifyIDToken(context.Background(), raw, oidcNonce)
	if !errors.Is(err, login.ErrOIDCDiscovery) || errors.Is(err, login.ErrIDTokenInvalid) {
		t.Fatalf("while down: %v", err)
	}
	if _, err := v.VerifyIDToken(context.Background(), raw, oidcNonce); !errors.Is(err, login.ErrOIDCDiscovery) {
		t.Fatalf("still down: %v", err)
	}
	if n := e.discovery.Load(); n != 2 {
		t.Fatalf("a failed discovery is retried by the next call: %d fetches, want 2", n)
	}

	e.down.Store(false)
	if id, err := v.VerifyIDToken(context.Background(), raw, oidcNonce); err != nil || id.Subject != "alice" {
		t.Fatalf("after recovery: %+v, %v", id, err)
	}
	// Discovery and keys are kept: discovery failing again changes nothing.
	e.down.Store(true)
	if _, err := v.VerifyIDToken(context.Background(), e.idToken("bob"), oidcNonce); err != nil {
		t.Fatalf("cached: %v", err)
	}
	if d, k := e.discovery.Load(), e.jwks.Load(); d != 3 || k != 1 {
		t.Fatalf("discovery %d, jwks %d fetches; want 3, 1", d, k)
	}
}

func TestVerifyIDTokenIssuerMismatch(t *testing.T) {
	e := newOIDCEnv(t)
	// The discovery document names another issuer than the one configured.
	v := login.NewIDVerifier(e.srv.URL+"/Panopto/oauth2/", oidcClientID, e.client, e.clk.Now)
	_, err := v.VerifyIDToken(context.Background(), e.idToken("alice"), oidcNonce)
	var im *oidc.IssuerMismatchError
	if !errors.Is(err, login.ErrOIDCDiscovery) || !errors.As(err, &im) {
		t.Fatalf("error %v", err)
	}
}

func TestVerifyIDTokenUntrustedCA(t *testing.T) {
	e := newOIDCEnv(t)
	v := login.NewIDVerifier(e.issuer(), oidcClientID, &http.Client{Timeout: 5 * time.Second}, e.clk.Now)
	if _, err := v.VerifyIDToken(context.Background(), e.idToken("alice"), oidcNonce); !errors.Is(err, login.ErrOIDCDiscovery) {
		t.Fatalf("error %v", err)
	}
}

func TestVerifyIDTokenConcurrentFirstUse(t *testing.T) {
	e := newOIDCEnv(t)
	v := e.verifier()
	raw := e.idToken("alice")
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if _, err := v.VerifyIDToken(context.Background(), raw, oidcNonce); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d, k := e.discovery.Load(), e.jwks.Load(); d != 1 || k != 1 {
		t.Fatalf("discovery %d, jwks %d fetches; want 1 each", d, k)
	}
}

func TestVerifyIDTokenWaiterHonoursItsContext(t *testing.T) {
	e := newOIDCEnv(t)
	release := make(chan struct{})
	started := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		http.Error(w, "late", http.StatusServiceUnavailable)
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	v := login.NewIDVerifier(slow.URL, oidcClientID, slow.Client(), e.clk.Now)
	go func() { _, _ = v.VerifyIDToken(context.Background(), "x.y.z", oidcNonce) }()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.VerifyIDToken(ctx, "x.y.z", oidcNonce); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter: %v", err)
	}
}

func TestIdentityJSON(t *testing.T) {
	b, err := json.Marshal(token.Identity{Subject: "alice", PreferredUsername: "deakin\\alice"})
	if err != nil || string(b) != `{"sub":"alice","preferred_username":"deakin\\alice"}` {
		t.Fatalf("%s %v", b, err)
	}
}

// TestMatchIdentity: the claim must equal the template with the account in
// it, ASCII letters folded and nothing else; "none" is the only way to skip
// the check, and an unset or unknown claim refuses.
func TestMatchIdentity(t *testing.T) {
	id := token.Identity{Subject: "8c1e0b7a", PreferredUsername: `Deakin\Alice`, Name: "Alice Liddell", Email: "alice@deakin.edu.au", UPN: "Alice@Deakin.EDU.AU"}
	tests := []struct {
		name     string
		claim    string
		template string
		account  string
		id       token.Identity
		ok       bool
	}{
		{"none: no check", "none", "", "bob", id, true},
		{"unset claim refuses", "", "", "alice", id, false},
		{"template with provider, any case", "preferred_username", `deakin\{account}`, "alice", id, true},
		{"template with provider, other user", "preferred_username", `deakin\{account}`, "bob", id, false},
		{"default template needs the bare name", "preferred_username", "", "alice", id, false},
		{"default template", "preferred_username", "", `deakin\alice`, id, true},
		{"sub", "sub", "", "8C1E0B7A", id, true},
		{"sub differs", "sub", "", "8c1e0b7b", id, false},
		{"email template", "email", "{account}@deakin.edu.au", "ALICE", id, true},
		{"upn", "upn", "{account}@deakin.edu.au", "alice", id, true},
		{"upn differs", "upn", "{account}@deakin.edu.au", "bob", id, false},
		{"name is not an identity", "name", "", "Alice Liddell", id, false},
		{"claim missing from the token", "email", "{account}@deakin.edu.au", "alice", token.Identity{Subject: "x"}, false},
		{"empty claim never matches an empty account", "email", "", "", token.Identity{Subject: "x"}, false},
		{"no substring match", "preferred_username", `{account}`, "alice", token.Identity{PreferredUsername: "alice2"}, false},
		{"unknown claim refuses", "groups", "", "alice", id, false},
		// Only ASCII letters fold: KELVIN SIGN and LONG S are other users.
		{"kelvin sign is not k", "preferred_username", "", "kate", token.Identity{PreferredUsername: "\u212aate"}, false},
		{"k is not kelvin sign", "preferred_username", "", "\u212aate", token.Identity{PreferredUsername: "kate"}, false},
		{"long s is not s", "preferred_username", "", "sam", token.Identity{PreferredUsername: "\u017fam"}, false},
		{"dotless i is not I", "preferred_username", "", "IAN", token.Identity{PreferredUsername: "\u0131an"}, false},
		{"non-ASCII compared exactly", "preferred_username", "", "zoë", token.Identity{PreferredUsername: "ZOë"}, true},
		{"non-ASCII case is not folded", "preferred_username", "", "zoë", token.Identity{PreferredUsername: "ZOË"}, false},
		{"@ and ` are not letters", "preferred_username", "", "a@", token.Identity{PreferredUsername: "a`"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := login.MatchIdentity(tt.id, tt.claim, tt.template, tt.account)
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, login.ErrIdentityMismatch) {
				t.Fatalf("MatchIdentity = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	for claim, ok := range map[string]bool{"": true, "none": true, "sub": true, "preferred_username": true, "email": true, "upn": true, "name": false, "groups": false, "Sub": false} {
		if err := login.CheckIdentityClaim(claim); (err == nil) != ok {
			t.Errorf("CheckIdentityClaim(%q) = %v", claim, err)
		}
	}
	if err := login.CheckIdentityClaim("name"); err == nil || !strings.Contains(err.Error(), "not unique") {
		t.Errorf("CheckIdentityClaim(name) = %v, want it to say names are not unique", err)
	}
}
