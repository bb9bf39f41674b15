package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// namedAccounts hands out the managers it holds by account name.
type namedAccounts map[string]*token.Manager

func (a namedAccounts) Manager(_ context.Context, account string) (*token.Manager, error) {
	if m, ok := a[account]; ok {
		return m, nil
	}
	return nil, ErrUnknownAccount
}

// checkStatusDoc fails if a status or readiness answer holds a zero time, a
// null, or the grant's fields twice (under "token").
func checkStatusDoc(t *testing.T, what string, body []byte) map[string]any {
	t.Helper()
	s := string(body)
	if strings.Contains(s, "0001-01-01") || strings.Contains(s, "null") {
		t.Errorf("%s holds a zero time or a null: %s", what, s)
	}
	m := jsonBody(t, body)
	if _, ok := m["token"]; ok {
		t.Errorf("%s repeats the grant's fields under \"token\": %s", what, s)
	}
	return m
}

// TestStatusAndReadyReasons: /-/status and /-/ready give the same reason for
// holding no usable token, show the grant's times only when there is a
// grant, and show each field once.
func TestStatusAndReadyReasons(t *testing.T) {
	e := newEnv(t, envConfig{upstream: &recordingUpstream{}})
	expect := func(stage string, connected bool, reason token.Reason) {
		t.Helper()
		_, _, body := e.call(http.MethodGet, "/-/status", nil)
		st := checkStatusDoc(t, stage+": /-/status", body)
		if st["connected"] != connected || (reason == "" && st["reason"] != nil) || (reason != "" && st["reason"] != string(reason)) {
			t.Errorf("%s: /-/status connected=%v reason=%v, want %v %q", stage, st["connected"], st["reason"], connected, reason)
		}
		_, hasExpiry := st["expires_at"]
		_, hasObtained := st["obtained_at"]
		if hasExpiry != connected || hasObtained != connected {
			t.Errorf("%s: /-/status expires_at %v obtained_at %v, want them only with a grant", stage, hasExpiry, hasObtained)
		}
		code, _, body := e.call(http.MethodGet, "/-/ready", nil)
		rd := checkStatusDoc(t, stage+": /-/ready", body)
		switch {
		case connected && code != http.StatusOK:
			t.Errorf("%s: /-/ready %d %s", stage, code, body)
		case !connected && (code != http.StatusServiceUnavailable || rd["reason"] != string(reason) || rd["login_url"] != e.srv.URL+"/-/login"):
			t.Errorf("%s: /-/ready %d %s, want 503 with reason %q", stage, code, body, reason)
		}
	}
	expect("before login", false, token.ReasonNeverConnected)
	e.login()
	expect("after login", true, "")
	if code, _, body := e.call(http.MethodPost, "/-/logout", nil, "Content-Type", "application/json"); code != http.StatusOK {
		t.Fatalf("logout: %d %s", code, body)
	}
	expect("after logout", false, token.ReasonLoggedOut)
}

// TestAccountStatus: /-/status?account= answers one account's grant with its
// fields at the top level, once, and no zero time.
func TestAccountStatus(t *testing.T) {
	e := newEnv(t, envConfig{upstream: &recordingUpstream{}})
	h := New(Deps{Accounts: namedAccounts{"": e.m, "alice": e.m}, Flow: e.flow}, *e.h.Options())
	get := func(target string) (int, []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = "127.0.0.1:9127"
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.Bytes()
	}
	code, body := get("/-/status?account=alice")
	st := checkStatusDoc(t, "account status", body)
	if code != http.StatusOK || st["account"] != "alice" || st["connected"] != false || st["reason"] != string(token.ReasonNeverConnected) {
		t.Errorf("account status before login: %d %s", code, body)
	}
	if want := e.srv.URL + "/-/login?account=alice"; st["login_url"] != want {
		t.Errorf("account login_url = %v, want %s", st["login_url"], want)
	}
	e.login()
	code, body = get("/-/status?account=alice")
	st = checkStatusDoc(t, "account status", body)
	if code != http.StatusOK || st["connected"] != true || st["reason"] != nil || st["expires_at"] == nil {
		t.Errorf("account status after login: %d %s", code, body)
	}
	if code, body := get("/-/status?account=bob"); code != http.StatusNotFound {
		t.Errorf("unknown account: %d %s", code, body)
	}
}
