package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

// TestUploadsShareOneBudget: eight uploads at once through two Uploaders
// (as before and after a reload) with a budget of two part buffers: every
// one reaches Panopto whole, and no more than two buffers ever exist.
func TestUploadsShareOneBudget(t *testing.T) {
	const size = 12*mib + 777 // three parts of 5 MiB
	b := newWatched(2 * 5 * mib)
	e := newTestEnv(t, false, panoptofake.Options{}, Options{PartSize: 5 * mib, Concurrency: 2, Budget: b.Budget})
	o := e.up.o
	o.Concurrency = 4
	other := New(o)

	var wg sync.WaitGroup
	results := make(chan Result, 8)
	for i := range 8 {
		wg.Go(func() {
			u := map[bool]*Uploader{true: e.up, false: other}[i%2 == 0]
			res, err := u.Create(context.Background(), e.tokens, params(fmt.Sprintf("u%d.mp4", i), size), io.LimitReader(panoptofake.PatternReader(size), size))
			if err != nil {
				t.Errorf("upload %d: %v", i, err)
				return
			}
			results <- res
		})
	}
	wg.Wait()
	close(results)
	for res := range results {
		info, _ := e.pan.Upload(res.ID)
		if obj := info.Objects[res.Name]; obj.Size != size || len(obj.PartSizes) != 3 {
			t.Errorf("%s: object %+v", res.Name, obj)
		}
	}
	if p := b.peakBytes(); p > 2*5*mib {
		t.Fatalf("peak %d bytes of part buffers, budget %d", p, 2*5*mib)
	}
	if n := b.allocs.Load(); n > 2 {
		t.Fatalf("%d part buffers made, want at most 2", n)
	}
	if st := b.Stats(); st.Buffers != 0 || st.Waiting != 0 {
		t.Fatalf("budget after the uploads: %+v", st)
	}
}

// TestUploadBusy: an upload that cannot get a part buffer within the queue
// timeout is answered 503 uploads_busy with Retry-After, and nothing was
// created at Panopto.
func TestUploadBusy(t *testing.T) {
	b := newWatched(5 * mib)
	var busy int
	e := newTestEnv(t, false, panoptofake.Options{}, Options{
		PartSize: 5 * mib, Budget: b.Budget, QueueTimeout: 50 * time.Millisecond,
		Hooks: Hooks{Busy: func() { busy++ }},
	})
	held, _ := b.Admit(context.Background(), 5*mib, time.Second) // another upload's
	req := httptest.NewRequest(http.MethodPost, "/-/uploads?folder_id="+panoptofake.FolderCOS10009+"&name=a.mp4", strings.NewReader("some video"))
	p, perr := ParseParams(req)
	if perr != nil {
		t.Fatal(perr)
	}
	rec := httptest.NewRecorder()
	e.up.ServeCreate(rec, req, e.tokens, p)
	var body map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != 503 || body["error"] != "uploads_busy" || rec.Header().Get("Retry-After") != "60" || body["id"] != nil {
		t.Fatalf("answer %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	if ids := e.pan.UploadIDs(); len(ids) != 0 || busy != 1 {
		t.Fatalf("sessionUploads %v, busy hook %d", ids, busy)
	}
	if st := b.Stats(); st.Waiting != 0 || st.Buffers != 1 {
		t.Fatalf("budget %+v", st)
	}

	// The client going away while it waits is not "busy".
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.up.Create(ctx, e.tokens, params("b.mp4", 10), strings.NewReader("some video"))
	var ue *Error
	if !errors.As(err, &ue) || ue.Code != "client_gone" || busy != 1 {
		t.Fatalf("err %v, busy %d", err, busy)
	}
	b.give(held, 5*mib)
}
