package oauth_test

import (
	"errors"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/oauth"
)

// TestLoginFlowPendingPerAccount: one account has at most
// MaxPendingPerAccount logins waiting; a newer one evicts that account's
// oldest, never another account's, however many it starts.
func TestLoginFlowPendingPerAccount(t *testing.T) {
	clk := newClock()
	f := oauth.NewLoginFlow(0, clk.Now)
	ep := oauth.Endpoint{AuthURL: "https://p.example/Panopto/oauth2/connect/authorize", RedirectURL: redirectURI}

	bob := f.Begin(ep, "cid", "bob")
	operator := f.Begin(ep, "cid", "")
	var mallory []oauth.Login
	for range 50 {
		mallory = append(mallory, f.Begin(ep, "cid", "mallory")) // same instant: order is the order begun
	}
	if n := f.Pending(); n != 2+oauth.MaxPendingPerAccount {
		t.Fatalf("%d logins pending, want bob's, the operator's and %d of mallory's", n, oauth.MaxPendingPerAccount)
	}
	for i, l := range mallory {
		_, acct, err := f.Complete(l.State, l.Binding, true)
		kept := i >= len(mallory)-oauth.MaxPendingPerAccount
		switch {
		case kept && (err != nil || acct != "mallory"):
			t.Errorf("mallory's login %d (one of the newest): %v", i, err)
		case !kept && !errors.Is(err, oauth.ErrBadState):
			t.Errorf("mallory's login %d was not evicted: %v", i, err)
		}
	}
	for _, l := range []oauth.Login{bob, operator} {
		if _, _, err := f.Complete(l.State, l.Binding, true); err != nil {
			t.Errorf("another account's login was evicted: %v", err)
		}
	}
}
