package main

import (
	"crypto/sha256"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

// slowReader yields n pattern bytes in chunks with a pause between them.
type slowReader struct {
	r     io.Reader
	pause time.Duration // after every MiB
	sent  int64
}

func (s *slowReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if (s.sent+int64(n))>>20 != s.sent>>20 {
		time.Sleep(s.pause)
	}
	s.sent += int64(n)
	return n, err
}

// TestGracefulShutdownDuringUpload: shutdown (SIGTERM) while a streamed
// upload is in flight lets it finish, refuses new connections, and run
// returns nil (exit 0); the token store is left as it was.
func TestGracefulShutdownDuringUpload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, AccessTTL: time.Hour})
	sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir), nil)
	logIn(t, sc.URL)
	storeBefore := secretsIn(t, dir)

	const size = 48 << 20
	body := &slowReader{r: panoptofake.PatternReader(size), pause: 40 * time.Millisecond}
	req, _ := http.NewRequest(http.MethodPost, sc.URL+"/Panopto/api/v1/echo", body)
	req.ContentLength = size
	type result struct {
		n    int64
		sum  []byte
		code int
		err  error
	}
	done := make(chan result, 1)
	echoing := make(chan struct{}) // the stand-in answered: the body streams through the sidecar
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		close(echoing)
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		done <- result{n: n, sum: h.Sum(nil), code: resp.StatusCode, err: err}
	}()
	select {
	case <-echoing:
	case r := <-done:
		t.Fatalf("the upload ended before the shutdown: %+v", r)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- sc.Stop() }()
	// New connections are refused once shutdown began.
	testsupport.WaitFor(t, 5*time.Second, "listener closed", func() bool { return statusCode(sc.URL+"/-/healthz") == 0 })

	r := <-done
	want := sha256.New()
	io.Copy(want, panoptofake.PatternReader(size))
	if r.err != nil || r.code != 200 || r.n != size || string(r.sum) != string(want.Sum(nil)) {
		t.Fatalf("in-flight upload: code %d, %d of %d bytes, err %v", r.code, r.n, size, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("run returned %v, want nil (exit 0)", err)
	}
	after := secretsIn(t, dir)
	if len(after) != len(storeBefore) || after[0] != storeBefore[0] {
		t.Fatal("token store changed or was lost during shutdown")
	}
}
