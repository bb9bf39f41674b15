package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

func TestAccountsDisconnected(t *testing.T) {
	all := []string{"alice", "bob", "carol"}
	list := func(_ context.Context, after string, limit int) ([]string, string, error) {
		if after == "boom" {
			return nil, "", errors.New("store down")
		}
		var out []string
		for _, n := range all {
			if n > after && len(out) < limit {
				out = append(out, n)
			}
		}
		next := ""
		if len(out) == limit {
			next = out[len(out)-1]
		}
		return out, next, nil
	}
	for _, tc := range []struct {
		name   string
		mode   token.AccountsMode
		list   func(context.Context, string, int) ([]string, string, error)
		method string
		query  string
		code   int
		names  []string
		next   string
	}{
		{"all", token.AccountsLogin, list, "GET", "?state=disconnected", 200, all, ""},
		{"paged", token.AccountsLogin, list, "GET", "?state=disconnected&limit=2", 200, all[:2], "bob"},
		{"next page", token.AccountsLogin, list, "GET", "?state=disconnected&limit=2&after=bob", 200, all[2:], ""},
		{"none", token.AccountsLogin, list, "GET", "?state=disconnected&after=zed", 200, []string{}, ""},
		{"no state", token.AccountsLogin, list, "GET", "", 400, nil, ""},
		{"other state", token.AccountsLogin, list, "GET", "?state=connected", 400, nil, ""},
		{"bad limit", token.AccountsLogin, list, "GET", "?state=disconnected&limit=0", 400, nil, ""},
		{"huge limit", token.AccountsLogin, list, "GET", "?state=disconnected&limit=1001", 400, nil, ""},
		{"bad after", token.AccountsLogin, list, "GET", "?state=disconnected&after=a%2Fb", 400, nil, ""},
		{"store down", token.AccountsLogin, list, "GET", "?state=disconnected&after=boom", 502, nil, ""},
		{"post", token.AccountsLogin, list, "POST", "?state=disconnected", 405, nil, ""},
		{"accounts off", token.AccountsOff, list, "GET", "?state=disconnected", 409, nil, ""},
		{"store cannot list", token.AccountsLogin, nil, "GET", "?state=disconnected", 501, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New(Deps{Disconnected: tc.list}, Options{AccountsMode: tc.mode})
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(tc.method, "/-/accounts"+tc.query, nil)
			req.Host = "127.0.0.1:9127"
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Fatalf("code %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if tc.code != http.StatusOK {
				return
			}
			var v struct {
				Accounts []string `json:"accounts"`
				Next     string   `json:"next"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(v.Accounts, tc.names) || v.Accounts == nil || v.Next != tc.next {
				t.Errorf("got %q next %q; want %q next %q", v.Accounts, v.Next, tc.names, tc.next)
			}
		})
	}
}
