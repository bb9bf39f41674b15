package token_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// authorize sends a started login to the stand-in and returns the query it
// redirects back with (code and state).
func (e *env) authorize(l login.Login) url.Values {
	e.t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(l.URL)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
		e.t.Fatalf("authorize answered %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query()
}

// TestExchangeCodeStoresNothing: ExchangeCode hands back the candidate grant
// and the raw id_token and leaves the store and the held grant alone until
// Install; the identity survives a refresh and a restart from the store.
func TestExchangeCodeStoresNothing(t *testing.T) {
	e := newEnv(t, time.Hour)
	flow := login.NewLoginFlow(0, e.clk.Now)
	m := e.manager("a", e.store)
	m.Load(t.Context())
	go m.Run(t.Context())

	l := flow.BeginReturning(e.ep, clientID, "alice", "https://ontrack.example/done")
	code := e.authorize(l).Get("code")
	done, err := flow.Finish(l.State, l.Binding, true)
	if err != nil {
		t.Fatal(err)
	}
	if done.Account != "alice" || done.ReturnTo != "https://ontrack.example/done" || done.Nonce == "" || done.Verifier == "" {
		t.Fatalf("finish: account %q return_to %q nonce set %v", done.Account, done.ReturnTo, done.Nonce != "")
	}
	if got := authorizeParams(l.URL).Get("nonce"); got != done.Nonce {
		t.Fatal("the nonce returned is not the one sent to authorize")
	}
	g, idToken, err := m.ExchangeCode(context.Background(), code, done.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	if idToken.IsZero() || g.AccessToken.IsZero() {
		t.Fatal("no id_token or access token")
	}
	if _, ver, _ := e.store.Load(context.Background(), ""); ver != 0 {
		t.Fatalf("store written before Install (version %d)", ver)
	}
	if st := m.Status(); st.Connected {
		t.Fatal("candidate grant served before Install")
	}

	v := login.NewIDVerifier(e.srv.URL+"/Panopto/oauth2", clientID, nil, e.clk.Now)
	id, err := v.VerifyIDToken(context.Background(), idToken.Reveal(), done.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	g.Identity = &id
	if err := m.Install(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); !st.Connected || st.Identity == nil || st.Identity.Subject != "alice" {
		t.Fatalf("after install: %+v", st)
	}

	// A refresh keeps the identity; a new manager reads it back.
	e.clk.Advance(58 * time.Minute)
	if _, err := m.ForceRefresh(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	rec, _, err := e.store.Load(context.Background(), "")
	if err != nil || rec.Grant == nil || rec.Grant.Identity == nil || rec.Grant.Identity.PreferredUsername != "alice" {
		t.Fatalf("stored after refresh: %+v %v", rec.Grant, err)
	}
	if g2, _ := m.Token(context.Background()); g2.AccessToken == g.AccessToken {
		t.Fatal("not refreshed")
	}
}

// TestFileStoreReadsRecordsWithoutIdentity: a token file written before
// identities existed loads, with no identity.
func TestFileStoreReadsRecordsWithoutIdentity(t *testing.T) {
	e := newEnv(t, time.Hour)
	old := `{"version": 3, "access_token": "at-old", "refresh_token": "rt-old", "expires_at": "2026-03-01T10:00:00Z"}`
	if err := os.WriteFile(e.path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	rec, ver, err := e.store.Load(context.Background(), "")
	if err != nil || ver != 3 || rec.Grant == nil || rec.Grant.Identity != nil {
		t.Fatalf("load: %+v %d %v", rec.Grant, ver, err)
	}
	rec.Grant.Identity = &token.Identity{Subject: "alice", Email: "alice@example.edu"}
	if _, err := e.store.CompareAndSwap(context.Background(), "", 3, rec); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(e.path)
	if !strings.Contains(string(b), `"sub": "alice"`) {
		t.Fatalf("identity not written: %s", b)
	}
	rec2, _, err := e.store.Load(context.Background(), "")
	if err != nil || rec2.Grant.Identity == nil || *rec2.Grant.Identity != *rec.Grant.Identity {
		t.Fatalf("round trip: %+v %v", rec2.Grant, err)
	}
}
