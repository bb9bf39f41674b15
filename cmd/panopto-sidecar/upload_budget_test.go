package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

// TestUploadDeadlineHour: a unit's deadline. 24 students upload 40 MiB
// each at once through the real binary with uploads.memory_limit 160MiB
// (ten 16 MiB part buffers for 24 uploads), while OnTrack keeps calling
// the API. Every upload reaches State 4, every API call succeeds, and the
// sidecar's peak RSS stays within the budget plus 64 MiB.
func TestUploadDeadlineHour(t *testing.T) {
	t.Parallel()
	const (
		uploads = 24
		size    = 40 << 20
		budget  = 160 << 20
	)
	bin := buildSidecar(t)
	addr := childAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, S3SecretKey: "dummy"})
	rs := startRealSidecar(t, bin, addr, pan, "uploads: {memory_limit: 160MiB}\n")

	stop := make(chan struct{})
	var apiOK, apiFailed, maxWaiting atomic.Int64
	var apiTimes []time.Duration // the API goroutine's own
	var apiWG sync.WaitGroup
	apiWG.Go(func() {
		c := &http.Client{Timeout: time.Minute}
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			resp, err := c.Get(rs.base + "/Panopto/api/v1/folders?pageSize=3")
			apiTimes = append(apiTimes, time.Since(t0))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != 200 {
				apiFailed.Add(1)
				t.Logf("API call during the uploads: %v %v", err, resp)
			} else {
				apiOK.Add(1)
			}
			if m, err := c.Get(rs.base + "/metrics"); err == nil {
				b, _ := io.ReadAll(m.Body)
				m.Body.Close()
				if w := int64(metricValue(string(b), "panopto_sidecar_uploads_waiting")); w > maxWaiting.Load() {
					maxWaiting.Store(w)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	start := time.Now()
	answers := make([]uploadAnswer, uploads)
	var wg sync.WaitGroup
	for i := range uploads {
		wg.Go(func() {
			q := fmt.Sprintf("folder_id=%s&name=student-%02d.mp4", panoptofake.FolderCOS10009, i)
			answers[i] = sendUpload(rs.base, q, panoptofake.PatternReader(size), size)
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(stop)
	apiWG.Wait()
	hwm := vmHWM(t, rs.cmd.Process.Pid)

	for i, a := range answers {
		if a.Status != 201 || a.Bytes != size {
			b, _ := os.ReadFile(rs.logPath)
			t.Fatalf("upload %d: %+v\n%s", i, a, lastLines(string(b), 20))
		}
		if st := pollUpload(t, rs.base, "", a.ID); st.State != 4 {
			t.Fatalf("upload %d: state %+v", i, st)
		}
	}
	if apiFailed.Load() != 0 || apiOK.Load() == 0 {
		t.Fatalf("API calls during the uploads: %d failed, %d succeeded", apiFailed.Load(), apiOK.Load())
	}
	metrics := fetch(t, rs.base+"/metrics")
	for series, want := range map[string]float64{
		"panopto_sidecar_upload_memory_limit_bytes": budget,
		"panopto_sidecar_uploads_waiting":           0,
		"panopto_sidecar_upload_buffers_in_use":     0,
		"panopto_sidecar_uploads_completed_total":   uploads,
	} {
		if got := metricValue(metrics, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if got := metricValue(metrics, "panopto_sidecar_upload_memory_bytes_in_use"); got > budget {
		t.Errorf("upload memory in use %v, over the budget", got)
	}
	slices.Sort(apiTimes)
	t.Logf("%d uploads of %d MiB at once: %v, %.0f MB/s in all; peak RSS %.1f MiB (budget %d MiB); %d API calls meanwhile (median %v, slowest %v); up to %d uploads waited",
		uploads, size>>20, took.Round(time.Millisecond), float64(uploads*size)/1e6/took.Seconds(), float64(hwm)/(1<<20), budget>>20,
		apiOK.Load(), apiTimes[len(apiTimes)/2].Round(time.Millisecond), apiTimes[len(apiTimes)-1].Round(time.Millisecond), maxWaiting.Load())
	if hwm > budget+64<<20 {
		t.Fatalf("sidecar peak RSS %.1f MiB, want at most the budget + 64 MiB = %d MiB", float64(hwm)/(1<<20), (budget+64<<20)>>20)
	}
}

// sendUpload is postUpload for another goroutine than the test's.
func sendUpload(base, query string, body io.Reader, size int64) uploadAnswer {
	req, _ := http.NewRequest(http.MethodPost, base+"/-/uploads?"+query, body)
	req.ContentLength = size
	resp, err := (&http.Client{Timeout: 10 * time.Minute}).Do(req)
	if err != nil {
		return uploadAnswer{Error: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a uploadAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		a.Error = string(b)
	}
	a.Status = resp.StatusCode
	return a
}

// TestUploadRefusedWriteFirst: a 32 MiB upload refused for a bad folder_id,
// sent by a client that writes its whole body before it reads (as Ruby's
// Net::HTTP and Python's http.client do), reads the 400; so does one whose
// account is not connected (503). With Expect: 100-continue the refusal
// comes before any byte of the body is sent.
func TestUploadRefusedWriteFirst(t *testing.T) {
	t.Parallel()
	const size = 32 << 20
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}})
	sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir), nil)

	for _, tc := range []struct {
		name, query string
		status      int
		code        string
	}{
		{"not connected", "folder_id=" + panoptofake.FolderOnTrack + "&name=a.mp4", 503, "panopto_not_connected"},
		{"bad folder_id", "folder_id=COS10009&name=a.mp4", 400, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := uploadWriteFirst(t, addr, tc.query, size, 2*time.Minute)
			var m map[string]any
			err := json.NewDecoder(resp.Body).Decode(&m)
			if err != nil || resp.StatusCode != tc.status || m["error"] != tc.code {
				t.Fatalf("answer %d %v (%v), want %d %s", resp.StatusCode, m, err, tc.status, tc.code)
			}
		})
		if tc.status == 503 {
			logIn(t, sc.URL)
		}
	}

	t.Run("python http.client", func(t *testing.T) {
		py, err := exec.LookPath("python3")
		if err != nil {
			t.Skip("no python3")
		}
		f := filepath.Join(t.TempDir(), "video.mp4")
		out, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(out, panoptofake.PatternReader(size))
		out.Close()
		// http.client sends the whole body, then reads the answer.
		script := `
import http.client, os, sys
host, port = sys.argv[1].split(":")
c = http.client.HTTPConnection(host, int(port), timeout=120)
with open(sys.argv[2], "rb") as f:
    c.request("POST", "/-/uploads?folder_id=COS10009&name=a.mp4", body=f,
              headers={"Content-Length": str(os.path.getsize(sys.argv[2]))})
r = c.getresponse()
print(r.status, r.read().decode())
`
		res, err := exec.Command(py, "-c", script, addr, f).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(res), "400 ") || !strings.Contains(string(res), "folder_id must be a GUID") {
			t.Fatalf("python http.client: %v\n%s", err, res)
		}
	})

	t.Run("expect 100-continue", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		fmt.Fprintf(c, "POST /-/uploads?folder_id=COS10009&name=a.mp4 HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, size)
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 400 ") {
			t.Fatalf("first answer line %q (%v), want the 400 without a 100 Continue", line, err)
		}
	})
	if st := pan.Stats(); st.UploadRequests != 0 || len(pan.UploadIDs()) != 0 {
		t.Fatalf("something was created at Panopto: %+v", st)
	}
}

// TestUploadBusyWriteFirst: with room for two part buffers, two slow
// uploads hold one each; a third, sent by a client that writes its whole
// body before it reads, waits uploads.queue_timeout and reads 503
// uploads_busy with Retry-After, nothing created at Panopto for it; the two
// finish.
func TestUploadBusyWriteFirst(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, S3SecretKey: "dummy"})
	sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir)+"uploads: {memory_limit: 32MiB, queue_timeout: 1s}\n", nil)
	logIn(t, sc.URL)

	const size = 40 << 20 // about 4 s each at the pace below
	slow := make(chan uploadAnswer, 2)
	for i := range 2 {
		go func() {
			body := &pacedReader{r: panoptofake.PatternReader(size), pause: 100 * time.Millisecond, step: 1 << 20}
			slow <- sendUpload(sc.URL, fmt.Sprintf("folder_id=%s&name=slow-%d.mp4", panoptofake.FolderOnTrack, i), body, size)
		}()
	}
	testsupport.WaitFor(t, 10*time.Second, "both slow uploads admitted", func() bool {
		return metricValue(fetch(t, sc.URL+"/metrics"), "panopto_sidecar_upload_buffers_in_use") == 2
	})

	resp := uploadWriteFirst(t, addr, "folder_id="+panoptofake.FolderOnTrack+"&name=third.mp4", 20<<20, time.Minute)
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode != 503 || m["error"] != "uploads_busy" || resp.Header.Get("Retry-After") != "60" || m["id"] != nil {
		t.Fatalf("answer %d %v %v", resp.StatusCode, resp.Header, m)
	}
	for range 2 {
		if a := <-slow; a.Status != 201 || a.Bytes != size {
			t.Fatalf("slow upload: %+v", a)
		}
	}
	if n := len(pan.UploadIDs()); n != 2 {
		t.Fatalf("%d sessionUploads at Panopto, want the two slow ones", n)
	}
	metrics := fetch(t, sc.URL+"/metrics")
	if metricValue(metrics, "panopto_sidecar_uploads_busy_total") != 1 || metricValue(metrics, "panopto_sidecar_uploads_waiting") != 0 {
		t.Fatalf("metrics:\n%s", metrics)
	}
}

// uploadWriteFirst sends POST /-/uploads?query with a body of size bytes
// as Ruby's Net::HTTP and Python's http.client do: the whole body is
// written before the answer is read. The connection closes with the test.
func uploadWriteFirst(t *testing.T, addr, query string, size int64, limit time.Duration) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(limit))
	w := bufio.NewWriterSize(c, 64<<10)
	fmt.Fprintf(w, "POST /-/uploads?%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", query, addr, size)
	if _, err := io.Copy(w, panoptofake.PatternReader(size)); err != nil {
		t.Fatalf("writing the body: %v", err)
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("writing the body: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return resp
}
