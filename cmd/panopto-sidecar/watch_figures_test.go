package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/webhook"
)

// watchTap stands in front of the stand-in and notes, per upload, when it
// was handed over (PUT State=1), when Panopto first answered Complete,
// and how many reads the watch made.
type watchTap struct {
	h        http.Handler
	mu       sync.Mutex
	handover map[string]time.Time
	complete map[string]time.Time
	polls    map[string]int // GET sessionUpload/{id} after the hand-over
	sessions int            // GET sessions/{id}
}

func (w *watchTap) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	const su = "/Panopto/PublicAPI/REST/sessionUpload/"
	id, isUpload := strings.CutPrefix(r.URL.Path, su)
	id = strings.ToLower(id)
	if !isUpload || (r.Method != http.MethodGet && r.Method != http.MethodPut) {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/Panopto/api/v1/sessions/") {
			w.mu.Lock()
			w.sessions++
			w.mu.Unlock()
		}
		w.h.ServeHTTP(rw, r)
		return
	}
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, r)
	var st struct{ State int }
	_ = json.Unmarshal(rec.Body.Bytes(), &st)
	now := time.Now()
	w.mu.Lock()
	switch {
	case r.Method == http.MethodPut && rec.Code == 200 && st.State == panoptofake.StateUploadStarted:
		w.handover[id] = now
	case r.Method == http.MethodGet && !w.handover[id].IsZero():
		w.polls[id]++
		if st.State == panoptofake.StateComplete && w.complete[id].IsZero() {
			w.complete[id] = now
		}
	}
	w.mu.Unlock()
	maps.Copy(rw.Header(), rec.Header())
	rw.WriteHeader(rec.Code)
	_, _ = rw.Write(rec.Body.Bytes())
}

// TestWatchFigures measures, over 100 uploads through the sidecar with
// the shipped watch schedule (2 s, 4 s, 8 s …): the webhook latency after
// Panopto first answered Complete (the sidecar's own work: session read,
// record write, delivery), the latency after the upload could have been
// Complete (hand-over + processing time; adds the wait for the next
// poll), and Panopto calls per upload watched. It prints them; it asserts
// only that every upload was delivered. Skipped with -short.
//
//	go test ./cmd/panopto-sidecar -run TestWatchFigures -v -count=1
func TestWatchFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("figures: 100 uploads")
	}
	t.Parallel()
	const uploads = 100
	const processing = 3 * time.Second
	dir := t.TempDir()
	addr := holdAddr(t)
	fake := panoptofake.New(panoptofake.Options{ClientID: testClientID, ClientSecret: testClientSecret,
		RedirectURIs: []string{"http://" + addr + "/redirect"}, ProcessingPolls: 1, ProcessingDelay: processing})
	registerFake(fake)
	tap := &watchTap{h: fake, handover: map[string]time.Time{}, complete: map[string]time.Time{}, polls: map[string]int{}}
	srv := httptest.NewServer(tap)
	t.Cleanup(srv.Close)
	hook := newHookReceiver(t, nil, hookSecretA)
	sc := startWatchSidecar(t, dir, addr, watchConfig(srv.URL, dir, hook.URL), map[string]string{webhook.SecretEnv: hookSecretA}, nil)
	logIn(t, sc.URL)

	ids := make(chan string, uploads)
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			for i := w; i < uploads; i += 10 {
				ids <- uploadOK(t, sc.URL, uploadReq{name: fmt.Sprintf("video-%03d.mp4", i), body: bytes.NewReader(make([]byte, 4096)), size: 4096})
			}
		})
	}
	wg.Wait()
	close(ids)
	var all []string
	for id := range ids {
		all = append(all, strings.ToLower(id))
	}
	var afterComplete, afterReady []time.Duration
	for _, id := range all {
		done := hook.wait(t, id, webhook.TypeCompleted, 2*time.Minute)
		tap.mu.Lock()
		afterComplete = append(afterComplete, done.At.Sub(tap.complete[id]))
		afterReady = append(afterReady, done.At.Sub(tap.handover[id].Add(processing)))
		tap.mu.Unlock()
	}
	tap.mu.Lock()
	polls := 0
	for _, id := range all {
		polls += tap.polls[id]
	}
	sessions := tap.sessions
	tap.mu.Unlock()
	pct := func(d []time.Duration, p float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(p*float64(len(s))))]
	}
	t.Logf("%d uploads, processing %v, shipped poll schedule:", uploads, processing)
	t.Logf("webhook upload.completed after Panopto first answered Complete: p50 %v p99 %v",
		pct(afterComplete, 0.50).Round(100*time.Microsecond), pct(afterComplete, 0.99).Round(100*time.Microsecond))
	t.Logf("webhook upload.completed after the upload could be Complete (hand-over + processing): p50 %v p99 %v",
		pct(afterReady, 0.50).Round(time.Millisecond), pct(afterReady, 0.99).Round(time.Millisecond))
	t.Logf("Panopto calls per upload watched: %.2f (sessionUpload reads %.2f, session reads %.2f)",
		float64(polls+sessions)/uploads, float64(polls)/uploads, float64(sessions)/uploads)
}
