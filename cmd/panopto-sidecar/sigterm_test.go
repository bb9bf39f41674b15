package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

// TestSIGTERMDuringLargeUpload: the real binary gets SIGTERM while a
// 512 MiB upload streams through it. It stops accepting connections, lets
// the upload finish within shutdown_grace, exits 0, and leaves the token
// store as it was.
func TestSIGTERMDuringLargeUpload(t *testing.T) {
	t.Parallel()
	size := int64(512 << 20)
	if testing.Short() {
		size = 64 << 20
	}
	bin := buildSidecar(t)
	addr := childAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, AccessTTL: time.Hour})
	rs := startRealSidecar(t, bin, addr, pan, "shutdown_grace: 60s\n")
	cmd, base, dir, logPath := rs.cmd, rs.base, rs.dir, rs.logPath
	before, _ := os.ReadFile(filepath.Join(dir, "panopto-token.json"))

	// The upload: echoed back by the stand-in and paced so it is still
	// running when the signal arrives (about 4 s at 128 MiB/s).
	src := &slowReader{r: panoptofake.PatternReader(size), pause: 8 * time.Millisecond}
	req, _ := http.NewRequest(http.MethodPost, base+"/Panopto/api/v1/echo", src)
	req.ContentLength = size
	type result struct {
		n   int64
		sum []byte
		err error
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
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		done <- result{n, h.Sum(nil), err}
	}()
	select {
	case <-echoing:
	case r := <-done:
		t.Fatalf("the upload ended before SIGTERM: %d bytes, err %v", r.n, r.err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	testsupport.WaitFor(t, 5*time.Second, "listener closed after SIGTERM", func() bool { return statusCode(base+"/-/healthz") == 0 })

	r := <-done
	want := sha256.New()
	io.Copy(want, panoptofake.PatternReader(size))
	if r.err != nil || r.n != size || string(r.sum) != string(want.Sum(nil)) {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("upload in flight at SIGTERM: %d of %d bytes, err %v\n%s", r.n, size, r.err, lastLines(string(b), 20))
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after the upload finished")
	}
	t.Logf("%d MiB upload finished %v after SIGTERM; exit 0", size>>20, time.Since(signalled).Round(time.Millisecond))
	after, _ := os.ReadFile(filepath.Join(dir, "panopto-token.json"))
	if string(after) != string(before) || len(after) == 0 {
		t.Fatal("the token store changed or was lost across shutdown")
	}
}
