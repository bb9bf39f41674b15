package upload

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

// TestStreamFirstPartErrorCancelsTheRest: part 2 is rejected while part 1
// is still uploading; part 1's request is cancelled rather than left to
// run, no later part starts, and the rejection is the answer.
func TestStreamFirstPartErrorCancelsTheRest(t *testing.T) {
	e := newTestEnv(t, false, panoptofake.Options{}, Options{PartSize: 5 * mib, Concurrency: 2})
	e.up.o.CleanupTimeout = 5 * time.Second
	held := make(chan struct{})      // part 1 reached the target
	cancelled := make(chan struct{}) // part 1's request ended unanswered
	var later atomic.Int32           // parts after 2 that started
	e.wrap = func(w http.ResponseWriter, r *http.Request) bool {
		switch r.URL.Query().Get("partNumber") {
		case "1":
			_, _ = io.Copy(io.Discard, r.Body)
			close(held)
			<-r.Context().Done()
			close(cancelled)
			return true
		case "2":
			<-held
			_, _ = io.Copy(io.Discard, r.Body)
			http.Error(w, "<Error><Code>InvalidArgument</Code></Error>", http.StatusBadRequest)
			return true
		case "":
			return false
		default:
			later.Add(1)
			return false
		}
	}
	_, err := e.up.Create(context.Background(), e.tokens, params("a.mp4", -1), io.LimitReader(panoptofake.PatternReader(1<<30), 30*mib))
	var ue *Error
	if !errors.As(err, &ue) || ue.Code != "panopto_rejected" || ue.Status != http.StatusBadRequest {
		t.Fatalf("err %v (%+v), want part 2's 400", err, ue)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("part 1's request was not cancelled")
	}
	if n := later.Load(); n != 0 {
		t.Errorf("%d parts after the failed one were uploaded", n)
	}
	if info, _ := e.pan.Upload(ue.ID); !info.Cancelled || !ue.Aborted {
		t.Fatalf("left at Panopto: %+v (error %+v)", info, ue)
	}
}
