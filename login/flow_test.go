package login_test

import (
	"errors"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// TestLoginFlowPendingPerAccount: one account has at most
// MaxPendingPerAccount logins waiting; a newer one evicts that account's
// oldest, never another account's, however many it starts.
func newClock() *testsupport.Clock {
	return testsupport.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
}

func TestLoginFlowPendingPerAccount(t *testing.T) {
	clk := newClock()
	f := login.NewLoginFlow(0, clk.Now)
	ep := token.Endpoint{AuthURL: "https://p.example/Panopto/oauth2/connect/authorize", RedirectURL: "http://localhost:9127/redirect"}

	bob := f.BeginReturning(ep, "cid", "bob", "")
	operator := f.BeginReturning(ep, "cid", "", "")
	var mallory []login.Login
	for range 50 {
		mallory = append(mallory, f.BeginReturning(ep, "cid", "mallory", "")) // same instant: order is the order begun
	}
	if n := f.Pending(); n != 2+login.MaxPendingPerAccount {
		t.Fatalf("%d logins pending, want bob's, the operator's and %d of mallory's", n, login.MaxPendingPerAccount)
	}
	for i, l := range mallory {
		done, err := f.Finish(l.State, l.Binding, true)
		kept := i >= len(mallory)-login.MaxPendingPerAccount
		switch {
		case kept && (err != nil || done.Account != "mallory"):
			t.Errorf("mallory's login %d (one of the newest): %v", i, err)
		case !kept && !errors.Is(err, login.ErrBadState):
			t.Errorf("mallory's login %d was not evicted: %v", i, err)
		}
	}
	for _, l := range []login.Login{bob, operator} {
		if _, err := f.Finish(l.State, l.Binding, true); err != nil {
			t.Errorf("another account's login was evicted: %v", err)
		}
	}
}
