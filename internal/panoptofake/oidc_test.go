package panoptofake

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestDiscoveryOpenID(t *testing.T) {
	e := newEnv(t, nil)
	st, b := e.do(http.MethodGet, "/Panopto/oauth2/.well-known/openid-configuration", "", nil)
	var d struct {
		JWKS string   `json:"jwks_uri"`
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal(b, &d); err != nil || st != http.StatusOK {
		t.Fatalf("status %d, %v", st, err)
	}
	if want := e.ts.URL + "/Panopto/oauth2/.well-known/openid-configuration/jwks"; d.JWKS != want {
		t.Errorf("jwks_uri = %q, want %q", d.JWKS, want)
	}
	if len(d.Algs) != 1 || d.Algs[0] != "RS256" {
		t.Errorf("algs = %v", d.Algs)
	}
	st, b = e.do(http.MethodGet, "/Panopto/oauth2/.well-known/openid-configuration/jwks", "", nil)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil || st != http.StatusOK {
		t.Fatalf("jwks: status %d, %v", st, err)
	}
	if len(set.Keys) != 1 || set.Keys[0].KeyID != signingKeyID || !set.Keys[0].IsPublic() || set.Keys[0].Algorithm != "RS256" {
		t.Fatalf("jwks = %+v", set.Keys)
	}
}

// idClaims is what the tests read from an id_token.
type idClaims struct {
	Iss   string `json:"iss"`
	Aud   string `json:"aud"`
	Sub   string `json:"sub"`
	User  string `json:"preferred_username"`
	Name  string `json:"name"`
	Email string `json:"email"`
	Nonce string `json:"nonce"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
}

// readIDToken checks the id_token's form and signature against the served
// JWKS and returns its claims; sigOK says whether the signature verified.
func (e *env) readIDToken(raw string) (c idClaims, sigOK bool) {
	e.t.Helper()
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		e.t.Fatalf("parse id_token: %v", err)
	}
	if h := jws.Signatures[0].Header; h.KeyID != signingKeyID || h.ExtraHeaders["typ"] != "JWT" {
		e.t.Fatalf("header %+v", h)
	}
	_, b := e.do(http.MethodGet, "/Panopto/oauth2/.well-known/openid-configuration/jwks", "", nil)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		e.t.Fatal(err)
	}
	payload, err := jws.Verify(set.Keys[0])
	if err != nil {
		payload = jws.UnsafePayloadWithoutVerification()
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		e.t.Fatalf("claims: %v", err)
	}
	return c, err == nil
}

func TestIDToken(t *testing.T) {
	tests := []struct {
		name  string
		fault IDTokenFault
		check func(t *testing.T, e *env, c idClaims, sigOK bool)
	}{
		{"good", IDTokenGood, func(t *testing.T, e *env, c idClaims, sigOK bool) {
			now := e.clock.Now().Unix()
			want := idClaims{Iss: e.ts.URL + "/Panopto/oauth2", Aud: testClientID, Sub: "alice", User: "alice",
				Name: "Alice Liddell", Email: "alice@example.edu", Nonce: "n0nce", Iat: now, Exp: now + 300}
			if !sigOK || c != want {
				t.Fatalf("sig %v claims %+v, want %+v", sigOK, c, want)
			}
		}},
		{"wrong nonce", IDTokenWrongNonce, func(t *testing.T, e *env, c idClaims, sigOK bool) {
			if !sigOK || c.Nonce == "n0nce" || c.Nonce == "" {
				t.Fatalf("sig %v nonce %q", sigOK, c.Nonce)
			}
		}},
		{"wrong audience", IDTokenWrongAudience, func(t *testing.T, e *env, c idClaims, sigOK bool) {
			if !sigOK || c.Aud == testClientID {
				t.Fatalf("sig %v aud %q", sigOK, c.Aud)
			}
		}},
		{"wrong issuer", IDTokenWrongIssuer, func(t *testing.T, e *env, c idClaims, sigOK bool) {
			if !sigOK || c.Iss == e.ts.URL+"/Panopto/oauth2" {
				t.Fatalf("sig %v iss %q", sigOK, c.Iss)
			}
		}},
		{"bad signature", IDTokenBadSignature, func(t *testing.T, e *env, c idClaims, sigOK bool) {
			if sigOK || c.Nonce != "n0nce" {
				t.Fatalf("sig %v claims %+v", sigOK, c)
			}
		}},
		{"expired", IDTokenExpired, func(t *testing.T, e *env, c idClaims, sigOK bool) {
			if !sigOK || c.Exp >= e.clock.Now().Unix() {
				t.Fatalf("sig %v exp %d", sigOK, c.Exp)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.s.SetProfile("alice", Profile{Name: "Alice Liddell", Email: "alice@example.edu"})
			e.s.ForgeNextIDToken(tt.fault)
			tr := e.exchange(e.code(func(v url.Values) { v.Set("login_hint", "alice") }))
			c, sigOK := e.readIDToken(tr.str("id_token"))
			tt.check(t, e, c, sigOK)

			// A fault spoils one response only.
			tr = e.exchange(e.code(func(v url.Values) { v.Set("login_hint", "alice") }))
			if c, sigOK := e.readIDToken(tr.str("id_token")); !sigOK || c.Nonce != "n0nce" || c.Aud != testClientID {
				t.Fatalf("next login: sig %v claims %+v", sigOK, c)
			}
		})
	}
}

// exchange redeems code and returns the token response.
func (e *env) exchange(code string) tokenResp {
	e.t.Helper()
	tr := e.post("/Panopto/oauth2/connect/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {testRedirect}, "code_verifier": {testVerifier},
	}, true)
	if tr.status != http.StatusOK {
		e.t.Fatalf("exchange: %d %s", tr.status, tr.raw)
	}
	return tr
}

func TestIDTokenDefaultProfile(t *testing.T) {
	e := newEnv(t, nil)
	c, sigOK := e.readIDToken(e.login().str("id_token"))
	if !sigOK || c.Sub != "panopto-admin" || c.User != "panopto-admin" || c.Name != "panopto-admin" || c.Email != "" {
		t.Fatalf("sig %v claims %+v", sigOK, c)
	}
}

func TestNoIDToken(t *testing.T) {
	e := newEnv(t, nil)
	e.s.ForgeNextIDToken(IDTokenOmitted)
	tr := e.login()
	if _, ok := tr.body["id_token"]; ok {
		t.Fatalf("omitted: %s", tr.raw)
	}
	if _, ok := e.refresh(tr.str("refresh_token")).body["id_token"]; ok {
		t.Error("refresh answered an id_token")
	}
	if tr := e.exchange(e.code(func(v url.Values) { v.Set("scope", "api offline_access") })); tr.body["id_token"] != nil {
		t.Error("id_token without scope openid")
	}
	pw := e.post("/Panopto/oauth2/connect/token", url.Values{
		"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"},
	}, true)
	if pw.status != http.StatusOK || pw.body["id_token"] != nil {
		t.Errorf("password grant: %d %s", pw.status, pw.raw)
	}
	// iat follows the server's clock.
	e.clock.Advance(30 * time.Second)
	if c, sigOK := e.readIDToken(e.login().str("id_token")); !sigOK || c.Iat != e.clock.Now().Unix() {
		t.Fatalf("sig %v claims %+v", sigOK, c)
	}
}
