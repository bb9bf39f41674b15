package watch

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

func newClaimer(t *testing.T, holder string, store Store, clock *testsupport.Clock) *Watcher {
	return New(Options{Store: store, Holder: holder, Now: clock.Now, KeyLease: time.Hour})
}

// TestClaimOneUploadPerKey: the same key during and after the upload gets
// the first request's state and never a second go-ahead; a key of another
// account, or another key, is a new upload.
func TestClaimOneUploadPerKey(t *testing.T) {
	ctx := t.Context()
	clock := testsupport.NewClock(time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC))
	store := token.NewFileStore(filepath.Join(t.TempDir(), "token.json"))
	a, b := newClaimer(t, "pod-a", store, clock), newClaimer(t, "pod-b", store, clock)

	first, err := a.Claim(ctx, "alice", "job-42")
	if err != nil || first.State != ClaimNew || first.Key == nil {
		t.Fatalf("first claim = %+v, %v", first, err)
	}
	// While it streams, before and after Panopto named the upload, on
	// either replica.
	if c, err := b.Claim(ctx, "alice", "job-42"); err != nil || c.State != ClaimInProgress || c.ID != "" {
		t.Errorf("during = %+v, %v", c, err)
	}
	if err := first.Key.SetUpload(ctx, "u-1"); err != nil {
		t.Fatal(err)
	}
	if c, err := a.Claim(ctx, "alice", "job-42"); err != nil || c.State != ClaimInProgress || c.ID != "u-1" {
		t.Errorf("during, id known = %+v, %v", c, err)
	}
	// Other accounts and keys are not affected.
	for _, other := range [][2]string{{"bob", "job-42"}, {"alice", "job-43"}} {
		c, err := b.Claim(ctx, other[0], other[1])
		if err != nil || c.State != ClaimNew {
			t.Errorf("%v = %+v, %v", other, c, err)
			continue
		}
		_ = c.Key.Finish(ctx, http.StatusBadRequest, []byte(`{"error":"bad_request"}`))
	}
	body := []byte(`{"id": "u-1", "state": 1, "folder_id": "f", "name": "v.mp4", "bytes": 10}`)
	if err := first.Key.Finish(ctx, http.StatusCreated, body); err != nil {
		t.Fatal(err)
	}
	if err := first.Key.Finish(ctx, http.StatusInternalServerError, []byte(`{}`)); err == nil {
		t.Error("second Finish counted")
	}
	clock.Advance(23 * time.Hour)
	c, err := b.Claim(ctx, "alice", "job-42")
	if err != nil || c.State != ClaimDone || c.Status != http.StatusCreated || c.ID != "u-1" ||
		string(c.Body) != `{"id":"u-1","state":1,"folder_id":"f","name":"v.mp4","bytes":10}` {
		t.Errorf("after = %+v (%s), %v", c, c.Body, err)
	}
	// A failure is answered again too.
	if c, _ := a.Claim(ctx, "bob", "job-42"); c.State != ClaimDone || c.Status != http.StatusBadRequest || string(c.Body) != `{"error":"bad_request"}` {
		t.Errorf("failure again = %+v (%s)", c, c.Body)
	}
	// After 24 hours the key starts a new upload.
	clock.Advance(time.Hour)
	if c, err := a.Claim(ctx, "alice", "job-42"); err != nil || c.State != ClaimNew {
		t.Errorf("a day later = %+v, %v", c, err)
	} else {
		_ = c.Key.Finish(ctx, http.StatusCreated, body)
	}
	// The client's key is not stored; its hash is.
	keys, _ := store.ListKeys(ctx, "idem/alice/", "", 0)
	if len(keys) != 2 || strings.Contains(strings.Join(keys, " "), "job-42") {
		t.Errorf("stored keys %q", keys)
	}
}

// TestClaimInterrupted: the request holding a key ended without an answer
// (its replica died): its lease runs out and the key answers
// upload_interrupted, with the upload's id, instead of starting over.
func TestClaimInterrupted(t *testing.T) {
	ctx := t.Context()
	clock := testsupport.NewClock(time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC))
	store := token.NewFileStore(filepath.Join(t.TempDir(), "token.json"))
	a := New(Options{Store: store, Holder: "pod-a", Now: clock.Now, KeyLease: 30 * time.Second})
	b := newClaimer(t, "pod-b", store, clock)
	c, err := a.Claim(ctx, "alice", "job-42")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Key.SetUpload(ctx, "u-1"); err != nil {
		t.Fatal(err)
	}
	// pod-a dies: its lease is renewed no more.
	close(c.Key.stop)
	<-c.Key.done
	clock.Advance(29 * time.Second)
	if got, _ := b.Claim(ctx, "alice", "job-42"); got.State != ClaimInProgress {
		t.Fatalf("within the lease = %+v", got)
	}
	clock.Advance(2 * time.Second)
	for range 2 {
		got, err := b.Claim(ctx, "alice", "job-42")
		var body map[string]string
		_ = json.Unmarshal(got.Body, &body)
		if err != nil || got.State != ClaimDone || got.Status != http.StatusConflict || body["error"] != "upload_interrupted" || body["id"] != "u-1" {
			t.Errorf("after the lease = %+v (%s), %v", got, got.Body, err)
		}
	}
}

// TestClaimRace: many requests with one key at once, on two replicas:
// exactly one goes ahead.
func TestClaimRace(t *testing.T) {
	clock := testsupport.NewClock(time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "token.json")
	ws := []*Watcher{newClaimer(t, "pod-a", token.NewFileStore(path), clock), newClaimer(t, "pod-b", token.NewFileStore(path), clock)}
	var mu sync.Mutex
	states := map[ClaimState]int{}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			c, err := ws[i%2].Claim(t.Context(), "alice", "job-42")
			if err != nil {
				t.Error(err)
				return
			}
			if c.Key != nil {
				defer c.Key.Finish(t.Context(), http.StatusCreated, []byte(`{}`))
			}
			mu.Lock()
			states[c.State]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if states[ClaimNew] != 1 || states[ClaimNew]+states[ClaimInProgress]+states[ClaimDone] != 40 {
		t.Errorf("claims %v, want exactly one new", states)
	}
}

func TestValidKeyAndMetadata(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"sidekiq job 42/attempt:1", true},
		{strings.Repeat("k", 255), true},
		{"", false},
		{strings.Repeat("k", 256), false},
		{"tab\there", false},
		{"é", false},
		{"del\x7f", false},
	} {
		if err := ValidKey(tc.key); (err == nil) != tc.ok {
			t.Errorf("ValidKey(%q) = %v", tc.key, err)
		}
	}
	for _, tc := range []struct {
		raw, want string
		ok        bool
	}{
		{"", "", true},
		{`{"task_id": 123, "unit": "SIT305"}`, `{"task_id":123,"unit":"SIT305"}`, true},
		{` {"a":{"b":[1,2]}}`, `{"a":{"b":[1,2]}}`, true},
		{`{"pad":"` + strings.Repeat("x", MaxMetadata-9) + `"}`, "", false},
		{`[1,2]`, "", false},
		{`"text"`, "", false},
		{`{"a":1}{"b":2}`, "", false},
		{`{"a":`, "", false},
		{`null`, "", false},
	} {
		got, err := Metadata(tc.raw)
		if (err == nil) != tc.ok || string(got) != tc.want {
			t.Errorf("Metadata(%.40q) = %s, %v", tc.raw, got, err)
		}
	}
}
