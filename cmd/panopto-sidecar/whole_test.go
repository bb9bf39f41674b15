package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

// TestWholeProgram starts the sidecar as an operator would, logs in through
// /-/login, proxies a GET and a streamed 256 MiB POST, and keeps serving
// valid tokens across three refresh cycles of a 3 s token. Nothing secret
// appears in the logs, /-/status or /metrics.
func TestWholeProgram(t *testing.T) {
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{
		RedirectURIs: []string{"http://" + addr + "/redirect"},
		AccessTTL:    3 * time.Second,
	})
	sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir), nil)

	// Not connected yet: 503 with the login URL, nothing forwarded.
	var nc map[string]string
	if code := getJSON(t, sc.URL+"/Panopto/api/v1/folders", &nc); code != 503 || nc["error"] != "panopto_not_connected" || nc["login_url"] != sc.URL+"/-/login" {
		t.Fatalf("before login: %d %v", code, nc)
	}
	if pan.Stats().APICalls != 0 {
		t.Fatal("a request was forwarded without a token")
	}
	if code := getJSON(t, sc.URL+"/-/ready", nil); code != 503 {
		t.Fatalf("ready before login: %d", code)
	}

	logIn(t, sc.URL)
	if code := getJSON(t, sc.URL+"/-/ready", nil); code != 200 {
		t.Fatalf("ready after login: %d", code)
	}
	var folders struct{ Results []map[string]any }
	if code := getJSON(t, sc.URL+"/Panopto/api/v1/folders", &folders); code != 200 || len(folders.Results) == 0 {
		t.Fatalf("folders: %d %v", code, folders)
	}

	// A streamed 256 MiB POST, echoed back: same bytes, and the proxy does
	// not hold the body (heap stays far below its size).
	const size = 256 << 20
	want := sha256.New()
	io.Copy(want, panoptofake.PatternReader(size))
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	req, _ := http.NewRequest(http.MethodPost, sc.URL+"/Panopto/api/v1/echo", io.NopCloser(panoptofake.PatternReader(size)))
	req.ContentLength = -1 // chunked: streamed from the first byte
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	close(stop)
	if err != nil || n != size || string(got.Sum(nil)) != string(want.Sum(nil)) || resp.StatusCode != 200 {
		t.Fatalf("echo: status %d, %d bytes, err %v, hash match %v", resp.StatusCode, n, err, string(got.Sum(nil)) == string(want.Sum(nil)))
	}
	if p := peak.Load(); p > 200<<20 { // the whole test process, other tests included; a buffered body alone would pass 256 MiB
		t.Errorf("heap in use peaked at %d MiB while streaming 256 MiB", p>>20)
	}

	// Three refresh cycles under concurrent traffic: every request 200.
	before := pan.Stats().Refreshes
	var wg sync.WaitGroup
	var bad atomic.Int32
	var codes sync.Map
	var traffic atomic.Bool // on until the third refresh
	traffic.Store(true)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for traffic.Load() {
				resp, err := http.Get(sc.URL + "/Panopto/api/v1/whoami")
				if err != nil {
					bad.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad.Add(1)
					codes.Store(resp.StatusCode, true)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	testsupport.WaitFor(t, 15*time.Second, "three refreshes", func() bool { return pan.Stats().Refreshes-before >= 3 })
	traffic.Store(false)
	wg.Wait()
	st := pan.Stats()
	if b := bad.Load(); b != 0 {
		var cs []string
		codes.Range(func(k, _ any) bool { cs = append(cs, fmt.Sprint(k)); return true })
		t.Fatalf("%d requests failed during refresh cycles (codes %v)", b, cs)
	}
	if st.RefreshReuse != 0 || st.GrantsRevoked != 0 {
		t.Fatalf("refresh token reused %d times, %d grants revoked", st.RefreshReuse, st.GrantsRevoked)
	}

	status := fetch(t, sc.URL+"/-/status")
	if !strings.Contains(status, `"connected":true`) || !strings.Contains(status, `"generation":1`) {
		t.Errorf("status: %s", status)
	}
	metrics := fetch(t, sc.URL+"/metrics")
	for _, m := range []string{"panopto_sidecar_requests_total{code=\"200\",route=\"/Panopto/api/\"}", "panopto_sidecar_token_refreshes_total{result=\"ok\"}", "panopto_sidecar_token_expiry_timestamp_seconds", "panopto_sidecar_request_duration_seconds_bucket"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	if err := sc.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	logs := sc.Logs.String()
	if !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, `"path":"/Panopto/api/v1/folders"`) {
		t.Error("no request log lines")
	}
	secrets := append(secretsIn(t, dir), testClientSecret)
	if len(secrets) < 3 {
		t.Fatalf("found only %d secrets to look for", len(secrets))
	}
	assertNoSecrets(t, secrets, map[string]string{"logs": logs, "status": status, "metrics": metrics})
}

// TestCheckCommand: check prints every problem and exits 1; a good file is ok.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/bad.yaml"
	good := dir + "/good.yaml"
	writeFile(t, bad, "listen: nowhere\noauth: {refresh_before: 0s, colour: red}\nroutes: [{prefix: api}]\n")
	writeFile(t, good, "upstream: https://deakin.au.panopto.com\n")
	var out strings.Builder
	err := run(t.Context(), []string{"check", "-config", bad}, func(string) string { return "" }, &out, io.Discard)
	if exitCode(err) != 1 {
		t.Fatalf("check bad: %v", err)
	}
	for _, want := range []string{"listen", "oauth.refresh_before", "oauth.colour", "routes[0].prefix"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	// What serve needs from the environment is checked too.
	creds := func(k string) string {
		return map[string]string{"PANOPTO_CLIENT_ID": testClientID, "PANOPTO_CLIENT_SECRET": testClientSecret}[k]
	}
	if err := run(t.Context(), []string{"check", "-config", good}, creds, &out, io.Discard); err != nil {
		t.Fatalf("check good: %v\n%s", err, out.String())
	}
	// The shipped config.yaml is valid.
	if err := run(t.Context(), []string{"check", "-config", "../../config.yaml"}, creds, &out, io.Discard); err != nil {
		t.Fatalf("shipped config.yaml: %v\n%s", err, out.String())
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := osWriteFile(path, content); err != nil {
		t.Fatal(err)
	}
}
