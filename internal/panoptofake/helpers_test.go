package panoptofake

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

const (
	testClientID = "client-123"
	testSecret   = "s3cr3t/with+chars"
	testRedirect = "http://localhost:9127/redirect"
)

type env struct {
	t     *testing.T
	s     *Server
	ts    *httptest.Server
	clock *testsupport.Clock
	c     *http.Client // does not follow redirects
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	clock := testsupport.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	o := Options{
		ClientID:          testClientID,
		ClientSecret:      testSecret,
		RedirectURIs:      []string{testRedirect},
		Users:             map[string]string{"alice": "wonderland"},
		IdentityProviders: map[string]string{"NetID": "0F5B6C2E-APP-KEY"},
		Now:               clock.Now,
	}
	if mod != nil {
		mod(&o)
	}
	s := New(o)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	c := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &env{t: t, s: s, ts: ts, clock: clock, c: c}
}

func pkce(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

const testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-0123456789"

func authorizeQuery(mod func(url.Values)) url.Values {
	v := url.Values{
		"client_id":             {testClientID},
		"redirect_uri":          {testRedirect},
		"response_type":         {"code"},
		"scope":                 {"openid api offline_access"},
		"state":                 {"st4te"},
		"nonce":                 {"n0nce"},
		"code_challenge":        {pkce(testVerifier)},
		"code_challenge_method": {"S256"},
	}
	if mod != nil {
		mod(v)
	}
	return v
}

// authorize performs the authorize request and returns the response.
func (e *env) authorize(q url.Values) *http.Response {
	e.t.Helper()
	resp, err := e.c.Get(e.ts.URL + "/Panopto/oauth2/connect/authorize?" + q.Encode())
	if err != nil {
		e.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// code runs a good authorize and returns the code from the redirect.
func (e *env) code(mod func(url.Values)) string {
	e.t.Helper()
	resp := e.authorize(authorizeQuery(mod))
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	if loc.Query().Get("code") == "" || loc.Query().Get("state") != "st4te" {
		e.t.Fatalf("authorize: redirect %s lacks code or state", loc.Redacted())
	}
	return loc.Query().Get("code")
}

type tokenResp struct {
	status int
	body   map[string]any
	raw    string
}

func (t tokenResp) str(k string) string { s, _ := t.body[k].(string); return s }

// post posts a form; basic selects HTTP Basic client auth (url-encoded as
// RFC 6749 wants), otherwise the credentials go in the body.
func (e *env) post(path string, form url.Values, basic bool) tokenResp {
	e.t.Helper()
	form = cloneValues(form)
	if !basic {
		form.Set("client_id", testClientID)
		form.Set("client_secret", testSecret)
	}
	return e.postRaw(path, form, func(r *http.Request) {
		if basic {
			r.SetBasicAuth(url.QueryEscape(testClientID), url.QueryEscape(testSecret))
		}
	})
}

func (e *env) postRaw(path string, form url.Values, mod func(*http.Request)) tokenResp {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if mod != nil {
		mod(req)
	}
	resp, err := e.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	tr := tokenResp{status: resp.StatusCode, raw: string(b)}
	_ = json.Unmarshal(b, &tr.body)
	return tr
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, x := range v {
		out[k] = append([]string(nil), x...)
	}
	return out
}

// login runs the whole code flow and returns the token response.
func (e *env) login() tokenResp {
	e.t.Helper()
	code := e.code(nil)
	tr := e.post("/Panopto/oauth2/connect/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {testRedirect}, "code_verifier": {testVerifier},
	}, true)
	if tr.status != http.StatusOK {
		e.t.Fatalf("login: %d %s", tr.status, tr.raw)
	}
	return tr
}

func (e *env) refresh(rt string) tokenResp {
	e.t.Helper()
	return e.post("/Panopto/oauth2/connect/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, false)
}

// get calls an API path with a bearer (none if empty) and returns status and body.
func (e *env) do(method, path, bearer string, body io.Reader) (int, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.ts.URL+path, body)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
