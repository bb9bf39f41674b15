package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
)

// Webhook signing secrets of the tests.
const (
	hookSecretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	hookSecretB = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
)

// hookAttempt is one POST the receiver got.
type hookAttempt struct {
	ID       string // webhook-id
	Type     string
	Data     watch.Upload
	SignedBy string // the secret the signature verified with; "" when none did
	Status   int    // what the receiver answered
	At       time.Time
}

// hookReceiver is OnTrack's webhook endpoint: it verifies every attempt's
// signature with the standard-webhooks library against the secrets it
// knows, fails the first attempts of the types in fail, and records
// everything.
type hookReceiver struct {
	*httptest.Server
	secrets []string

	mu       sync.Mutex
	fail     map[string]int // type → attempts of each message of it to fail
	tries    map[string]int // webhook-id → attempts so far
	attempts []hookAttempt
}

func newHookReceiver(t testing.TB, fail map[string]int, secrets ...string) *hookReceiver {
	h := &hookReceiver{secrets: secrets, fail: fail, tries: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	for _, s := range secrets {
		registerSecret(s)
	}
	return h
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	a := hookAttempt{ID: r.Header.Get("webhook-id"), At: time.Now()}
	for _, s := range h.secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		if err == nil && wh.Verify(body, r.Header) == nil {
			a.SignedBy = s
			break
		}
	}
	var payload struct {
		Type string       `json:"type"`
		Data watch.Upload `json:"data"`
	}
	_ = json.Unmarshal(body, &payload)
	a.Type, a.Data = payload.Type, payload.Data
	h.mu.Lock()
	h.tries[a.ID]++
	switch {
	case a.SignedBy == "":
		a.Status = http.StatusUnauthorized
	case h.tries[a.ID] <= h.fail[a.Type]:
		a.Status = http.StatusServiceUnavailable
	default:
		a.Status = http.StatusNoContent
	}
	h.attempts = append(h.attempts, a)
	h.mu.Unlock()
	w.WriteHeader(a.Status)
}

// all returns every attempt so far.
func (h *hookReceiver) all() []hookAttempt {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookAttempt(nil), h.attempts...)
}

// delivered returns the attempts answered 2xx for upload id, in order.
func (h *hookReceiver) delivered(id string) []hookAttempt {
	var out []hookAttempt
	for _, a := range h.all() {
		if a.Status/100 == 2 && strings.EqualFold(a.Data.ID, id) {
			out = append(out, a)
		}
	}
	return out
}

// wait waits until an event of type typ for upload id was delivered, and
// returns it.
func (h *hookReceiver) wait(t testing.TB, id, typ string, timeout time.Duration) hookAttempt {
	t.Helper()
	var got hookAttempt
	testsupport.WaitFor(t, timeout, typ+" of "+id+" delivered", func() bool {
		for _, a := range h.delivered(id) {
			if a.Type == typ {
				got = a
				return true
			}
		}
		return false
	})
	return got
}

// fastWatch shortens the watch's schedule for in-process tests: polls
// 50 ms apart (at most 200 ms), scans every 200 ms, leases that run out
// 500 ms past their due time, retries after 100 ms.
func fastWatch(o *watch.Options) {
	o.PollBase, o.PollMax = 50*time.Millisecond, 200*time.Millisecond
	o.Scan, o.Grace = 200*time.Millisecond, 500*time.Millisecond
	o.Retry = func(int) time.Duration { return 100 * time.Millisecond }
}

// startWatchSidecar is startSidecar with the upload watch's options tuned.
func startWatchSidecar(t testing.TB, dir, addr, cfg string, env map[string]string, tune func(*watch.Options)) *sidecarProc {
	t.Helper()
	return startSidecarWith(t, dir, addr, cfg, env, &serveOptions{tuneWatch: tune})
}

// uploadReq is one POST /-/uploads.
type uploadReq struct {
	name     string
	body     io.Reader // default: 64 KiB of zeros
	size     int64     // Content-Length; default len of the default body
	key      string    // Idempotency-Key, if set
	metadata string    // X-Upload-Metadata, if set
	account  string    // X-Panopto-User, if set
}

// postUpload sends r to the sidecar at base and returns the status and body.
func postWatched(t testing.TB, base string, r uploadReq) (int, []byte) {
	t.Helper()
	if r.body == nil {
		r.body, r.size = bytes.NewReader(make([]byte, 64<<10)), 64<<10
	}
	u := fmt.Sprintf("%s/-/uploads?folder_id=%s&name=%s", base, "6f3c2a1e-7b4d-4c1a-9e2f-000000000002", r.name)
	req, err := http.NewRequest(http.MethodPost, u, r.body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = r.size
	req.Header.Set("Content-Type", "video/mp4")
	if r.key != "" {
		req.Header.Set("Idempotency-Key", r.key)
	}
	if r.metadata != "" {
		req.Header.Set("X-Upload-Metadata", r.metadata)
	}
	if r.account != "" {
		req.Header.Set("X-Panopto-User", r.account)
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// uploadOK posts r and returns the new upload's id.
func uploadOK(t testing.TB, base string, r uploadReq) string {
	t.Helper()
	code, body := postWatched(t, base, r)
	var res struct{ ID string }
	if code != http.StatusCreated || json.Unmarshal(body, &res) != nil || res.ID == "" {
		t.Fatalf("upload %s: %d %s", r.name, code, body)
	}
	return res.ID
}

// watchConfig is baseConfig with 5 MiB parts and webhooks to hook.
func watchConfig(upstream, dir, hook string) string {
	cfg := baseConfig(upstream, dir) + "uploads:\n  part_size: 5MiB\n"
	if hook != "" {
		cfg += "  webhook_url: " + hook + "\n"
	}
	return cfg
}
