package config

import (
	"errors"
	"testing"
	"time"
)

func TestKeepAliveSettings(t *testing.T) {
	for _, tc := range []struct {
		yaml    string
		problem string // "" for none
		after   time.Duration
		rate    float64
	}{
		{"accounts: {mode: login, identity_claim: sub}", "", 0, 2},
		{"accounts: {mode: login, identity_claim: sub, keep_alive: 168h, keep_alive_rate: 0.5}", "", 168 * time.Hour, 0.5},
		{"accounts: {mode: idp, provider: x, keep_alive: 168h, keep_alive_rate: 10}", "", 168 * time.Hour, 10},
		{"oauth: {refresh_before: 1s}\naccounts: {mode: login, identity_claim: sub, keep_alive: 3s}", "", 3 * time.Second, 2},
		{"accounts: {mode: login, identity_claim: sub, keep_alive: 5m}", "accounts.keep_alive", 0, 0},
		{"accounts: {mode: login, identity_claim: sub, keep_alive: 500ms}", "accounts.keep_alive", 0, 0},
		{"accounts: {mode: login, identity_claim: sub, keep_alive: -1h}", "accounts.keep_alive", 0, 0},
		{"accounts: {keep_alive: 168h}", "accounts.keep_alive", 0, 0},
		{"accounts: {mode: login, identity_claim: sub, keep_alive_rate: 0}", "accounts.keep_alive_rate", 0, 0},
		{"accounts: {mode: login, identity_claim: sub, keep_alive_rate: 1001}", "accounts.keep_alive_rate", 0, 0},
		{"accounts: {mode: login, identity_claim: sub, keep_alive_rate: fast}", "accounts.keep_alive_rate", 0, 0},
	} {
		c, err := Parse([]byte(tc.yaml), env())
		if tc.problem == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.yaml, err)
				continue
			}
			if c.Accounts.KeepAlive.D() != tc.after || c.Accounts.KeepAliveRate != tc.rate {
				t.Errorf("%q: keep_alive %s rate %g", tc.yaml, c.Accounts.KeepAlive.D(), c.Accounts.KeepAliveRate)
			}
			continue
		}
		var p *Problem
		if !errors.As(err, &p) || p.Path != tc.problem {
			t.Errorf("%q: err = %v; want a problem with %s", tc.yaml, err, tc.problem)
		}
	}
}
