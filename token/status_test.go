package token_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// switchableCredentials fails while down is set, as Vault does when it
// cannot be reached and no credentials are held yet.
type switchableCredentials struct{ down atomic.Bool }

func (s *switchableCredentials) Credentials(context.Context) (token.ClientCredentials, error) {
	if s.down.Load() {
		return token.ClientCredentials{}, errors.New("vault: read panopto/client: connection refused")
	}
	return token.ClientCredentials{ID: clientID, Secret: clientSecret, Source: "vault", Version: "1"}, nil
}

// TestStatusReasons: every way of holding no usable token gives its reason,
// the same in Status and Ready, and the status holds no zero time.
func TestStatusReasons(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		// setup leaves m holding no usable token.
		setup func(t *testing.T, e *env, m *token.Manager, creds *switchableCredentials)
		want  token.Reason
		// grant: a grant (with its times) is still held.
		grant bool
	}{
		{"nothing stored", func(*testing.T, *env, *token.Manager, *switchableCredentials) {}, token.ReasonNeverConnected, false},
		{"logout", func(t *testing.T, e *env, m *token.Manager, _ *switchableCredentials) {
			e.login(m, login.NewLoginFlow(0, e.clk.Now))
			if _, err := m.Forget(ctx, "logout"); err != nil {
				t.Fatal(err)
			}
		}, token.ReasonLoggedOut, false},
		{"invalid_grant", func(t *testing.T, e *env, m *token.Manager, _ *switchableCredentials) {
			e.login(m, login.NewLoginFlow(0, e.clk.Now))
			rec, _, _ := e.store.Load(ctx, "")
			revoke(t, e, rec.Grant.RefreshToken.Reveal())
			e.clk.Advance(2 * time.Hour)
			if _, err := m.Token(ctx); !errors.Is(err, token.ErrNotConnected) {
				t.Fatalf("token after invalid_grant: %v", err)
			}
		}, token.ReasonRefreshRefused, false},
		{"credentials unreadable, nothing stored", func(t *testing.T, e *env, m *token.Manager, creds *switchableCredentials) {
			creds.down.Store(true)
			mctx, cancel := context.WithCancel(ctx)
			t.Cleanup(cancel)
			go m.Run(mctx) // reads the credentials to tell this from never_connected
			testsupport.WaitFor(t, 5*time.Second, "the credentials read", func() bool { return m.Status().LastError != "" })
		}, token.ReasonCredentialsUnavailable, false},
		{"credentials unreadable, token expired", func(t *testing.T, e *env, m *token.Manager, creds *switchableCredentials) {
			e.login(m, login.NewLoginFlow(0, e.clk.Now))
			creds.down.Store(true)
			e.clk.Advance(2 * time.Hour)
			if _, err := m.Token(ctx); err == nil {
				t.Fatal("token served without credentials to refresh it")
			}
		}, token.ReasonCredentialsUnavailable, true},
		{"token expired, refresh failing", func(t *testing.T, e *env, m *token.Manager, _ *switchableCredentials) {
			e.login(m, login.NewLoginFlow(0, e.clk.Now))
			e.fake.InjectTokenFaults(panoptofake.FaultStatus(500))
			e.clk.Advance(2 * time.Hour)
			if _, err := m.Token(ctx); err == nil {
				t.Fatal("token served although the refresh failed")
			}
		}, token.ReasonRefreshPending, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, time.Hour)
			creds := &switchableCredentials{}
			m := e.managerWith("a", e.store, creds)
			tc.setup(t, e, m, creds)

			st := m.Status()
			if st.Connected || st.Reason != tc.want {
				t.Errorf("status connected=%v reason=%q, want %q; last_error %q", st.Connected, st.Reason, tc.want, st.LastError)
			}
			if ok, r := m.Ready(); ok || r != tc.want {
				t.Errorf("ready = %v %q, want %q", ok, r, tc.want)
			}
			b, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			js := string(b)
			if strings.Contains(js, "0001-01-01") || strings.Contains(js, "null") {
				t.Errorf("status holds a zero time: %s", js)
			}
			if got := strings.Contains(js, `"expires_at"`) && strings.Contains(js, `"obtained_at"`); got != tc.grant {
				t.Errorf("status shows the grant's times: %v, want %v: %s", got, tc.grant, js)
			}
			if !strings.Contains(js, `"reason":"`+string(tc.want)+`"`) {
				t.Errorf("status JSON lacks the reason: %s", js)
			}

			// Credentials readable again and a new login: connected, no reason.
			creds.down.Store(false)
			e.login(m, login.NewLoginFlow(0, e.clk.Now))
			if st := m.Status(); !st.Connected || st.Reason != "" {
				t.Errorf("after a new login: connected=%v reason=%q", st.Connected, st.Reason)
			}
			if ok, r := m.Ready(); !ok || r != "" {
				t.Errorf("ready after a new login = %v %q", ok, r)
			}
		})
	}
}

// TestRefreshRefusedLogsOneLine: a grant dropped because Panopto refused its
// refresh token is logged once, with the account, the reason and where to
// log in, and without the token.
func TestRefreshRefusedLogsOneLine(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	m := e.manager("a", e.store)
	e.login(m, login.NewLoginFlow(0, e.clk.Now))
	rec, _, _ := e.store.Load(ctx, "")
	refresh := rec.Grant.RefreshToken.Reveal()
	revoke(t, e, refresh)
	e.clk.Advance(2 * time.Hour)
	for range 3 { // later requests find the grant gone: no more lines
		if _, err := m.Token(ctx); !errors.Is(err, token.ErrNotConnected) {
			t.Fatalf("token after invalid_grant: %v", err)
		}
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if rec["level"] == "ERROR" || rec["level"] == "WARN" {
			lines = append(lines, rec)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d warning/error lines, want 1:\n%s", len(lines), e.logs.String())
	}
	l := lines[0]
	if l["account"] != "" || l["reason"] != string(token.ReasonRefreshRefused) || l["login_url"] != e.ep.LoginURL {
		t.Errorf("log line: %v", l)
	}
	if _, ok := l["account"]; !ok {
		t.Errorf("log line has no account: %v", l)
	}
	if strings.Contains(e.logs.String(), refresh) {
		t.Error("the refresh token is in the log")
	}
}
