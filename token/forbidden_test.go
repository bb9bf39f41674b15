package token_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// A 403 claims a refresh only for the bearer held now, obtained more than a
// minute ago, once a minute; a 401 to a bearer already replaced retries with
// the current one and rotates nothing.
func TestClaimForbiddenRefresh(t *testing.T) {
	e := newEnv(t, time.Hour)
	m := e.manager("a", e.store)
	ctx := context.Background()
	if m.ClaimForbiddenRefresh(nil) {
		t.Fatal("claimed a refresh holding no grant")
	}
	e.login(m, login.NewLoginFlow(0, e.clk.Now))
	g0, err := m.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := &token.Grant{AccessToken: "some-other-bearer", ObtainedAt: g0.ObtainedAt.Add(-time.Hour)}
	step := func(name string, refused *token.Grant, want bool) {
		t.Helper()
		if got := m.ClaimForbiddenRefresh(refused); got != want {
			t.Fatalf("%s: claimed %v, want %v", name, got, want)
		}
	}
	step("bearer just obtained", g0, false)
	e.clk.Advance(time.Minute)
	step("bearer exactly a minute old", g0, false)
	e.clk.Advance(time.Second)
	step("a bearer not held", other, false)
	step("bearer older than a minute", g0, true)
	step("second 403 within the minute", g0, false)
	step("second 403 within the minute, nil", nil, false)
	g1, err := m.ForceRefresh(ctx, g0)
	if err != nil || g1.AccessToken == g0.AccessToken {
		t.Fatalf("forced refresh: %v", err)
	}
	e.clk.Advance(2 * time.Minute)
	step("the replaced bearer", g0, false)
	step("the new bearer, a minute after the last claim", g1, true)

	// A 401 to the replaced bearer: the current one, no rotation.
	before := e.fake.Stats().Refreshes
	g, err := m.ForceRefresh(ctx, g0)
	if err != nil || g.AccessToken != g1.AccessToken {
		t.Fatalf("401 to a replaced bearer: %v, same as current %v", err, g != nil && g.AccessToken == g1.AccessToken)
	}
	if n := e.fake.Stats().Refreshes; n != before {
		t.Fatalf("a 401 to a replaced bearer rotated the refresh token (%d → %d refreshes)", before, n)
	}
}

func TestInvalidTokenChallenge(t *testing.T) {
	for _, tc := range []struct {
		challenges []string
		want       bool
	}{
		{nil, false},
		{[]string{`Bearer error="invalid_token"`}, true},
		{[]string{`Bearer realm="Panopto", error="invalid_token", error_description="expired"`}, true},
		{[]string{`bearer error=invalid_token`}, true},
		{[]string{`Basic realm="x"`, `Bearer error="invalid_token"`}, true},
		{[]string{`Bearer error="insufficient_scope", scope="api"`}, false},
		{[]string{`Bearer realm="Panopto"`}, false},
		{[]string{`Basic realm="invalid_token"`}, false},
	} {
		h := http.Header{}
		for _, c := range tc.challenges {
			h.Add("WWW-Authenticate", c)
		}
		if got := token.InvalidTokenChallenge(h); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.challenges, got, tc.want)
		}
	}
}
