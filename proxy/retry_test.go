package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

// refusingUpstream answers refuse to any request carrying the bearer that
// was current at login, and 200 to any other; it records what it got.
type refusingUpstream struct {
	recordingUpstream
	mu      sync.Mutex
	refused string // Authorization value to refuse
	refuse  int
}

func newRefusingUpstream(code int) *refusingUpstream {
	u := &refusingUpstream{refuse: code}
	u.handle = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		u.mu.Lock()
		bad := r.Header.Get("Authorization") == u.refused
		u.mu.Unlock()
		if bad {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(u.refuse)
			_, _ = io.WriteString(w, `{"Message":"Authorization has been denied for this request."}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}
	return u
}

func (u *refusingUpstream) refuseBearer(token string) {
	u.mu.Lock()
	u.refused = "Bearer " + token
	u.mu.Unlock()
}

func TestRetryAfterRefusedBearer(t *testing.T) {
	const limit = 4 << 10
	small := strings.Repeat("small body ", 100) // < limit
	large := strings.Repeat("L", limit+1)
	for _, tc := range []struct {
		name      string
		refuse    int
		method    string
		path      string
		body      string
		chunked   bool // send the body without Content-Length
		wantCode  int
		wantCalls int // requests the upstream receives
		retried   bool
	}{
		{"401 GET api", 401, "GET", "/Panopto/api/v1/folders?pageSize=5", "", false, 200, 2, true},
		{"401 POST small body", 401, "POST", "/Panopto/api/v1/folders", small, false, 200, 2, true},
		{"401 POST small chunked body", 401, "POST", "/Panopto/api/v1/folders", small, true, 200, 2, true},
		{"401 POST large body", 401, "POST", "/Panopto/api/v1/folders", large, false, 401, 1, false},
		{"401 POST large chunked body", 401, "POST", "/Panopto/api/v1/folders", large, true, 401, 1, false},
		{"403 PublicAPI", 403, "POST", "/Panopto/PublicAPI/REST/sessionUpload", `{"FolderId":"x"}`, false, 200, 2, true},
		{"403 api", 403, "GET", "/Panopto/api/v1/folders", "", false, 403, 1, false},
		{"401 upload route", 401, "PUT", "/Panopto/Upload/a/b.mp4", small, false, 401, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newRefusingUpstream(tc.refuse)
			e := newEnv(t, envConfig{upstream: &up.recordingUpstream, connected: true, retry: limit})
			first, firstRefresh := e.storedTokens()
			up.refuseBearer(first)
			if tc.refuse == http.StatusForbidden {
				e.clk.Advance(2 * time.Minute) // a 403 replaces only a bearer older than a minute
			}
			if strings.Contains(tc.path, "/Upload/") {
				// Upload routes carry no bearer: refuse everything.
				up.handle = func(w http.ResponseWriter, r *http.Request, _ []byte) { w.WriteHeader(tc.refuse) }
			}
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
				if tc.chunked {
					body = io.MultiReader(body) // hides the length
				}
			}
			code, _, respBody := e.call(tc.method, tc.path, body, "Content-Type", "application/json")
			if code != tc.wantCode {
				t.Fatalf("answered %d, want %d: %s", code, tc.wantCode, respBody)
			}
			seen := up.requests()
			if len(seen) != tc.wantCalls {
				t.Fatalf("upstream received %d requests, want %d", len(seen), tc.wantCalls)
			}
			for i, s := range seen {
				if string(s.Body) != tc.body {
					t.Errorf("attempt %d carried %d bytes, want the %d sent", i+1, len(s.Body), len(tc.body))
				}
				if i > 0 && s.RequestURI != seen[0].RequestURI {
					t.Errorf("retry went to %q, first to %q", s.RequestURI, seen[0].RequestURI)
				}
			}
			if tc.chunked && !tc.retried && (len(seen[0].TransferEncoding) == 0 || seen[0].ContentLength != -1) {
				t.Errorf("a large body of unknown length reached the upstream as %v, length %d", seen[0].TransferEncoding, seen[0].ContentLength)
			}
			metrics := e.scrape()
			st := e.fake.Stats()
			if tc.retried {
				now, nowRefresh := e.storedTokens()
				if st.Refreshes != 1 || now == first || nowRefresh == firstRefresh {
					t.Fatalf("refreshes at Panopto: %d; token changed: %v", st.Refreshes, now != first)
				}
				if got := seen[1].Header.Get("Authorization"); got != "Bearer "+now {
					t.Errorf("the retry carried %q, want the new bearer", got)
				}
				if v := counter(metrics, "panopto_sidecar_upstream_auth_retries_total", "outcome", "ok"); v != 1 {
					t.Errorf("auth_retries_total{outcome=ok} = %v", v)
				}
				return
			}
			// A 401 that cannot be retried (body too large to replay) still
			// replaces the refused token before the refusal is answered;
			// other refusals (403 on /api/, the upload route) leave the
			// token alone.
			wantRefresh := 0
			if len(tc.body) > limit && tc.refuse == 401 && !strings.Contains(tc.path, "/Upload/") {
				wantRefresh = 1
				if now, _ := e.storedTokens(); now == first {
					t.Errorf("the refused token was not replaced")
				}
			}
			if st.Refreshes != wantRefresh {
				t.Errorf("the token was refreshed %d times, want %d", st.Refreshes, wantRefresh)
			}
			if !bytes.Contains(respBody, []byte("denied")) && !strings.Contains(tc.path, "/Upload/") {
				t.Errorf("the upstream's refusal did not pass through: %s", respBody)
			}
			wantUnretryable := 0.0
			if len(tc.body) > limit && tc.refuse == 401 && !strings.Contains(tc.path, "/Upload/") {
				wantUnretryable = 1
			}
			if v := counter(metrics, "panopto_sidecar_upstream_auth_unretryable_total"); v != wantUnretryable {
				t.Errorf("upstream_auth_unretryable_total = %v, want %v", v, wantUnretryable)
			}
		})
	}
}

// A retry refused again is passed through and counted; the token is
// refreshed only once.
func TestRetryRefusedAgain(t *testing.T) {
	up := &recordingUpstream{handle: func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.WriteHeader(http.StatusUnauthorized)
	}}
	e := newEnv(t, envConfig{upstream: up, connected: true, retry: 1 << 10})
	code, _, _ := e.call(http.MethodGet, "/Panopto/api/v1/folders", nil)
	if code != http.StatusUnauthorized {
		t.Fatalf("answered %d", code)
	}
	if n := up.n.Load(); n != 2 {
		t.Errorf("upstream received %d requests, want 2", n)
	}
	if r := e.fake.Stats().Refreshes; r != 1 {
		t.Errorf("refreshed %d times, want 1", r)
	}
	if v := counter(e.scrape(), "panopto_sidecar_upstream_auth_retries_total", "outcome", "refused_again"); v != 1 {
		t.Errorf("auth_retries_total{outcome=refused_again} = %v", v)
	}
}

// 429 passes through with its Retry-After, is counted, and does not touch
// the token.
func TestThrottledPassesThrough(t *testing.T) {
	up := &recordingUpstream{handle: func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Retry-After", "7")
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, "slow down")
	}}
	e := newEnv(t, envConfig{upstream: up, connected: true, retry: 1 << 10})
	code, hdr, body := e.call(http.MethodGet, "/Panopto/api/v1/folders", nil)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") != "7" || string(body) != "slow down" {
		t.Fatalf("answered %d Retry-After %q: %q", code, hdr.Get("Retry-After"), body)
	}
	if n := up.n.Load(); n != 1 {
		t.Errorf("upstream received %d requests, want 1", n)
	}
	if r := e.fake.Stats().Refreshes; r != 0 {
		t.Errorf("a 429 refreshed the token %d times", r)
	}
	m := e.scrape()
	if v := counter(m, "panopto_sidecar_upstream_throttled_total"); v != 1 {
		t.Errorf("upstream_throttled_total = %v", v)
	}
	if v := counter(m, "panopto_sidecar_requests_total", "route", "/Panopto/api/", "code", "429"); v != 1 {
		t.Errorf("requests_total{code=429} = %v", v)
	}
}

// Against the stand-in: access tokens revoked at Panopto are replaced
// transparently, on the REST API (401) and on PublicAPI (403 with an
// invalid_token challenge, however young the bearer).
func TestRetryAgainstStandIn(t *testing.T) {
	e := newEnv(t, envConfig{connected: true, retry: 1 << 20, fakeOpts: func(o *panoptofake.Options) { o.PublicAPI403 = true }})
	e.fake.ExpireAllAccessTokens()
	code, _, body := e.call(http.MethodGet, "/Panopto/api/v1/whoami", nil)
	if code != http.StatusOK || !strings.Contains(string(body), "lecturer") {
		t.Fatalf("whoami answered %d: %s", code, body)
	}
	e.fake.ExpireAllAccessTokens()
	code, _, body = e.call(http.MethodPost, "/Panopto/PublicAPI/REST/sessionUpload",
		strings.NewReader(`{"FolderId":"`+panoptofake.FolderCOS10009+`"}`), "Content-Type", "application/json")
	if code != http.StatusCreated {
		t.Fatalf("sessionUpload answered %d: %s", code, body)
	}
	st := e.fake.Stats()
	if st.Refreshes != 2 || st.Unauthorized != 1 || st.Forbidden != 1 {
		t.Errorf("stand-in saw %d refreshes, %d 401s, %d 403s; want 2, 1, 1", st.Refreshes, st.Unauthorized, st.Forbidden)
	}
}

// A PublicAPI 403 that is a permission Panopto does not grant, not an
// expired bearer: twenty in a row rotate the refresh token at most once,
// never for a bearer obtained less than a minute ago, and again only a
// minute later.
func TestForbiddenRotatesAtMostOncePerMinute(t *testing.T) {
	for _, tc := range []struct {
		name        string
		age         time.Duration // of the bearer when the 403s begin
		wantRefresh int           // during the twenty
	}{
		{"bearer just obtained", 0, 0},
		{"bearer two minutes old", 2 * time.Minute, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envConfig{connected: true, retry: 1 << 10})
			denied := make([]panoptofake.Fault, 50)
			for i := range denied {
				denied[i] = panoptofake.FaultStatus(http.StatusForbidden)
			}
			e.fake.InjectAPIFaults(denied...)
			e.clk.Advance(tc.age)
			get := func() {
				t.Helper()
				code, _, _ := e.call(http.MethodGet, "/Panopto/PublicAPI/REST/sessionUpload/"+panoptofake.FolderCOS10009, nil)
				if code != http.StatusForbidden {
					t.Fatalf("answered %d, want Panopto's 403", code)
				}
			}
			for range 20 {
				get()
			}
			st := e.fake.Stats()
			if st.Refreshes != tc.wantRefresh || st.TokenCalls["refresh_token"] != tc.wantRefresh {
				t.Fatalf("20 403s: %d refreshes (%d refresh_token calls), want %d", st.Refreshes, st.TokenCalls["refresh_token"], tc.wantRefresh)
			}
			if st.APICalls != 20+tc.wantRefresh {
				t.Errorf("Panopto saw %d calls, want %d", st.APICalls, 20+tc.wantRefresh)
			}
			// A minute on, the bearer is older than a minute and the last
			// claim a minute old: one more 403 may replace it, once.
			e.clk.Advance(time.Minute + time.Second)
			get()
			get()
			if st := e.fake.Stats(); st.Refreshes != tc.wantRefresh+1 {
				t.Errorf("a minute later: %d refreshes, want %d", st.Refreshes, tc.wantRefresh+1)
			}
		})
	}
}
