package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
)

// fakeWatcher answers Claim and Get as told and records the calls.
type fakeWatcher struct {
	mu       sync.Mutex
	claim    watch.Claimed
	claimErr error
	claims   []string // account/key
	get      watch.Upload
	getOK    bool
}

func (f *fakeWatcher) Claim(_ context.Context, account, key string) (watch.Claimed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims = append(f.claims, account+"/"+key)
	return f.claim, f.claimErr
}

func (f *fakeWatcher) Start(context.Context, watch.Upload) error { return nil }

func (f *fakeWatcher) Get(context.Context, string) (watch.Upload, bool, error) {
	return f.get, f.getOK, nil
}

func (f *fakeWatcher) claimCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.claims)
}

// TestUploadKeyAnswersWithoutPanopto: what the Idempotency-Key decides is
// answered before anything reaches Panopto — a bad key or metadata (400,
// not even claimed), a store that cannot be asked (503 store_unavailable),
// a key still running (409 with the id) and a finished one (its answer,
// byte for byte).
func TestUploadKeyAnswersWithoutPanopto(t *testing.T) {
	folder := panoptofake.FolderOnTrack
	query := "/-/uploads?folder_id=" + folder + "&name=v.mp4"
	done := json.RawMessage(`{"id":"0b4f3b1e-0000-4000-8000-000000000001","state":1,"folder_id":"` + folder + `","name":"v.mp4","bytes":5}`)
	for _, tt := range []struct {
		name       string
		claim      watch.Claimed
		claimErr   error
		target     string
		hdr        []string
		status     int
		wantBody   string // substring
		wantClaims int
	}{
		{"key not printable ASCII", watch.Claimed{}, nil, query, []string{"Idempotency-Key", "täsk"}, 400, "Idempotency-Key", 0},
		{"key too long", watch.Claimed{}, nil, query, []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, "Idempotency-Key", 0},
		{"metadata not an object", watch.Claimed{}, nil, query + "&metadata=" + url.QueryEscape(`[1,2]`), []string{"Idempotency-Key", "k1"}, 400, "metadata", 0},
		{"metadata twice", watch.Claimed{}, nil, query + "&metadata=" + url.QueryEscape(`{"a":1}`), []string{"X-Upload-Metadata", `{"a":1}`}, 400, "metadata", 0},
		{"metadata over 4 KiB", watch.Claimed{}, nil, query, []string{"X-Upload-Metadata", `{"a":"` + strings.Repeat("x", 4096) + `"}`}, 400, "metadata", 0},
		{"store unavailable", watch.Claimed{}, errors.New("vault sealed"), query, []string{"Idempotency-Key", "k1"}, 503, `"store_unavailable"`, 1},
		{"key in progress", watch.Claimed{State: watch.ClaimInProgress, ID: "0b4f3b1e-0000-4000-8000-000000000001"}, nil, query, []string{"Idempotency-Key", "k1"}, 409, `"id":"0b4f3b1e-0000-4000-8000-000000000001"`, 1},
		{"key done", watch.Claimed{State: watch.ClaimDone, Status: 201, Body: done}, nil, query, []string{"Idempotency-Key", "k1"}, 201, string(done), 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &fakeWatcher{claim: tt.claim, claimErr: tt.claimErr}
			e := newEnv(t, envConfig{connected: true, watcher: w})
			hdr := append([]string{"Content-Type", "application/octet-stream"}, tt.hdr...)
			st, _, body := e.call("POST", tt.target, strings.NewReader("video"), hdr...)
			if st != tt.status || !strings.Contains(string(body), tt.wantBody) {
				t.Fatalf("%d %s, want %d with %s", st, body, tt.status, tt.wantBody)
			}
			if n := w.claimCount(); n != tt.wantClaims {
				t.Errorf("%d claims, want %d", n, tt.wantClaims)
			}
			if ids := e.fake.UploadIDs(); len(ids) != 0 {
				t.Errorf("Panopto got %d sessionUploads", len(ids))
			}
		})
	}
}

// TestUploadStatusOtherAccount: a watched upload is answered only to the
// account that made it; to any other it does not exist.
func TestUploadStatusOtherAccount(t *testing.T) {
	const id = "0b4f3b1e-0000-4000-8000-000000000002"
	w := &fakeWatcher{get: watch.Upload{ID: id, Account: "alice", State: 4, StateName: "Complete"}, getOK: true}
	e := newEnv(t, envConfig{connected: true, watcher: w})
	st, _, body := e.call("GET", "/-/uploads/"+id, nil)
	if st != 404 || strings.Contains(string(body), "alice") || !strings.Contains(string(body), "not_found") {
		t.Fatalf("another account's upload: %d %s", st, body)
	}
	w.get.Account = "" // accounts off: the one account is ""
	st, _, body = e.call("GET", "/-/uploads/"+id, nil)
	if st != 200 || !strings.Contains(string(body), `"state_name":"Complete"`) {
		t.Fatalf("own upload: %d %s", st, body)
	}
}
