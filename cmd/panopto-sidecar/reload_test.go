package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

func statusCode(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func generation(t testing.TB, base string) (int, string) {
	var st struct {
		Config struct {
			Generation      int    `json:"generation"`
			LastReloadError string `json:"last_reload_error"`
		} `json:"config"`
	}
	getJSON(t, base+"/-/status", &st)
	return st.Config.Generation, st.Config.LastReloadError
}

// TestConfigReloadUnderTraffic: valid edits apply to new requests, invalid
// ones are refused with every problem and the last good config stays,
// Kubernetes-style symlink swaps are seen, and traffic never fails.
func TestConfigReloadUnderTraffic(t *testing.T) {
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, AccessTTL: time.Hour})

	// The config lives the way a ConfigMap mounts it:
	// config.yaml -> ..data/config.yaml, ..data -> ..2026_v1
	cfgDir := filepath.Join(dir, "etc")
	v1 := filepath.Join(cfgDir, "..v1")
	os.MkdirAll(v1, 0o755)
	base := baseConfig(pan.URL, dir)
	base = strings.ReplaceAll(base, "{{LISTEN}}", addr)
	base = strings.ReplaceAll(base, "{{URL}}", "http://"+addr)
	writeFile(t, filepath.Join(v1, "config.yaml"), base)
	os.Symlink("..v1", filepath.Join(cfgDir, "..data"))
	os.Symlink("..data/config.yaml", filepath.Join(cfgDir, "config.yaml"))
	sc := startSidecarAt(t, filepath.Join(cfgDir, "config.yaml"), addr)
	logIn(t, sc.URL)

	// Traffic all along: every request must succeed.
	var bad, total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				total.Add(1)
				if c := statusCode(sc.URL + "/Panopto/api/v1/folders"); c != 200 {
					bad.Add(1)
				}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
		if bad.Load() != 0 {
			t.Errorf("%d of %d requests failed during reloads", bad.Load(), total.Load())
		}
	}()

	// 1. An edit in place (symlink swap): a new route appears.
	if c := statusCode(sc.URL + "/Panopto/Pages/Viewer.aspx"); c != 404 {
		t.Fatalf("before: %d", c)
	}
	swap := func(name, content string) {
		d := filepath.Join(cfgDir, name)
		os.MkdirAll(d, 0o755)
		writeFile(t, filepath.Join(d, "config.yaml"), content)
		tmp := filepath.Join(cfgDir, "..data_tmp")
		os.Symlink(name, tmp)
		if err := os.Rename(tmp, filepath.Join(cfgDir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	withPages := base + "routes:\n  - {prefix: /Panopto/api/, inject: true}\n  - {prefix: /Panopto/PublicAPI/, inject: true}\n  - {prefix: /Panopto/Upload/, inject: false}\n  - {prefix: /Panopto/Pages/, inject: true}\n"
	swap("..v2", withPages)
	took := testsupport.WaitFor(t, 5*time.Second, "route reload", func() bool { g, _ := generation(t, sc.URL); return g == 2 })
	t.Logf("symlink swap applied in %v", took)
	if strings.Contains(fetch(t, sc.URL+"/Panopto/Pages/Viewer.aspx"), "no_route") {
		t.Fatalf("new route not applied")
	}

	// 2. An invalid file: every problem logged, previous config kept.
	swap("..v3", strings.Replace(base, "oauth:\n  refresh_before: 2s\n", "oauth: {refresh_before: -1s, scopes: []}\n", 1)+"bogus_key: 1\n")
	testsupport.WaitFor(t, 5*time.Second, "reload error", func() bool { _, e := generation(t, sc.URL); return e != "" })
	g, e := generation(t, sc.URL)
	if g != 2 {
		t.Fatalf("generation %d after an invalid file", g)
	}
	for _, want := range []string{"oauth.refresh_before", "oauth.scopes", "bogus_key"} {
		if !strings.Contains(e, want) {
			t.Errorf("reload error lacks %s: %s", want, e)
		}
	}
	if strings.Contains(fetch(t, sc.URL+"/Panopto/Pages/Viewer.aspx"), "no_route") {
		t.Fatal("the last good config was not kept")
	}

	// 3. A restart-only change is reported, not half-applied; the rest applies.
	other := freeAddr(t)
	swap("..v4", strings.Replace(strings.Replace(base, "listen: "+addr, "listen: "+other, 1), "level: debug", "level: info", 1))
	testsupport.WaitFor(t, 5*time.Second, "generation 3", func() bool { g, _ := generation(t, sc.URL); return g == 3 })
	// Log lines are written out in batches: wait for the line.
	testsupport.WaitFor(t, 2*time.Second, "the restart-only change in the log", func() bool {
		l := sc.Logs.String()
		return strings.Contains(l, "take effect only after a restart") && strings.Contains(l, `"keys":"listen`)
	})
	if statusCode("http://"+other+"/-/healthz") != 0 {
		t.Error("listen was half-applied")
	}
	if !strings.Contains(fetch(t, sc.URL+"/Panopto/Pages/Viewer.aspx"), "no_route") {
		t.Error("the routes of the new file were not applied")
	}

	// 4. SIGHUP reloads too (same content: counted as unchanged).
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	testsupport.WaitFor(t, 5*time.Second, "SIGHUP reload", func() bool {
		return strings.Contains(fetch(t, sc.URL+"/metrics"), `panopto_sidecar_config_reloads_total{result="unchanged"}`)
	})
	m := fetch(t, sc.URL+"/metrics")
	for _, want := range []string{`panopto_sidecar_config_reloads_total{result="ok"} 2`, `panopto_sidecar_config_reloads_total{result="invalid"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestReloadLogNamesChangedKeys: the reload's log line names the keys that
// changed and holds none of their values, a secret file's path included.
func TestReloadLogNamesChangedKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}})
	base := baseConfig(pan.URL, dir)
	sc := startSidecar(t, dir, addr, base, nil)

	secretFile := filepath.Join(dir, "inbound-secret-6b1f")
	const secret = "inbound-shared-secret-value-93c4d1"
	writeFile(t, secretFile, secret+"\n")
	next := strings.NewReplacer("refresh_before: 2s", "refresh_before: 7s", "level: debug", "level: info").Replace(base) +
		"routes:\n  - {prefix: /Panopto/api/, inject: true}\n  - {prefix: /Panopto/Pages/, inject: true}\n" +
		"inbound: {shared_secret_file: " + secretFile + "}\n"
	next = strings.NewReplacer("{{LISTEN}}", addr, "{{URL}}", sc.URL).Replace(next)
	// Replaced in one step, as editors do, so no reload sees half a file.
	writeFile(t, sc.Config+".new", next)
	if err := os.Rename(sc.Config+".new", sc.Config); err != nil {
		t.Fatal(err)
	}

	var line string
	testsupport.WaitFor(t, 5*time.Second, "the reload's log line", func() bool {
		for l := range strings.Lines(sc.Logs.String()) {
			if strings.Contains(l, `"msg":"config reloaded"`) {
				line = l
				return true
			}
		}
		return false
	})
	var rec struct {
		Changed []string `json:"changed"`
	}
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("reload log line %q: %v", line, err)
	}
	want := []string{"oauth.refresh_before", "routes", "log.level", "inbound.shared_secret_file"}
	if !slices.Equal(rec.Changed, want) {
		t.Errorf("changed = %q, want %q\n%s", rec.Changed, want, line)
	}
	for _, value := range []string{"7s", "/Panopto/Pages/", `"info"`, secretFile, "inbound-secret-6b1f", secret} {
		if strings.Contains(line, value) {
			t.Errorf("the reload log line holds the value %q: %s", value, line)
		}
	}
	if strings.Contains(sc.LogsAtStop(), secret) {
		t.Error("the inbound shared secret is in the log")
	}
}

// startSidecarAt runs a sidecar on an existing config path.
func startSidecarAt(t testing.TB, path, addr string) *sidecarProc {
	t.Helper()
	return startSidecar(t, filepath.Dir(path), addr, "", nil)
}
