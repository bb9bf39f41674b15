package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

// chromium returns a headless Chromium's path ($CHROMIUM_BIN, else
// chromium on PATH) or skips the test (fails with
// PANOPTO_SIDECAR_REQUIRE_PEERS=1, as in .ci/run, which installs Debian's
// chromium).
func chromium(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("CHROMIUM_BIN"); bin != "" {
		return bin
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if bin, err := exec.LookPath(name); err == nil {
			return bin
		}
	}
	if os.Getenv("PANOPTO_SIDECAR_REQUIRE_PEERS") == "1" {
		t.Fatal("no Chromium on PATH (set CHROMIUM_BIN, or apt-get install chromium)")
	}
	t.Skip("no Chromium on PATH (set CHROMIUM_BIN)")
	return ""
}

// dumpDOM loads url in a fresh headless Chromium and returns the document
// it ends on, after its scripts have run.
func dumpDOM(t *testing.T, bin, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--no-default-browser-check", "--disable-extensions", "--disable-background-networking", "--disable-breakpad",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000", "--dump-dom",
	}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v", url, err)
	}
	return string(out)
}

// TestChromiumCannotDriveListen runs a real browser against the sidecar:
// the login works through Panopto's cross-site redirect back; a page of
// another site cannot log the sidecar out (fetch or form) nor upload
// through it; a name rebound to 127.0.0.1 gets 421.
func TestChromiumCannotDriveListen(t *testing.T) {
	t.Parallel()
	bin := chromium(t)
	dir := t.TempDir()
	addr := holdAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	// The browser uses localhost; Panopto and the attacker are on
	// 127.0.0.1, another site.
	public := "http://localhost:" + port
	fake := panoptofake.New(panoptofake.Options{ClientID: testClientID, ClientSecret: testClientSecret,
		RedirectURIs: []string{public + "/redirect"}, AccessTTL: time.Hour})
	registerFake(fake)
	rec := &pathRecorder{}
	up := httptest.NewServer(rec.wrap(fake))
	defer up.Close()
	cfg := strings.Replace(baseConfig(up.URL, dir), "public_url: {{URL}}", "public_url: "+public, 1)
	sc := startSidecar(t, dir, addr, cfg, nil)
	connected := func() bool {
		var st struct {
			Connected bool `json:"connected"`
		}
		getJSON(t, sc.URL+"/-/status", &st)
		return st.Connected
	}

	if page := dumpDOM(t, bin, public+"/-/login"); !strings.Contains(page, "Connected to Panopto") || !connected() {
		t.Fatalf("a browser's login did not connect:\n%s", page)
	}

	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.URL.Path {
		case "/fetch":
			fmt.Fprintf(w, `<!doctype html><body>running<script>
const s = %q, out = [];
async function send(name, url, init) {
  try { await fetch(url, init); out.push(name + ":sent"); } catch (e) { out.push(name + ":failed"); }
}
(async () => {
  await send("logout", s + "/-/logout", {method: "POST", mode: "no-cors"});
  await send("logout-text", s + "/-/logout", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: "{}"});
  await send("upload", s + "/-/uploads?folder_id=%s&name=a.mp4", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: "v".repeat(4096)});
  await send("read-status", s + "/-/status", {mode: "cors"});
  document.body.textContent = out.join(" ") + " DONE";
})();
</script></body>`, public, panoptofake.FolderOnTrack)
		case "/form":
			fmt.Fprintf(w, `<!doctype html><body><form method="POST" enctype="text/plain" action="%s/-/logout">
<input name="x" value="y"></form><script>document.forms[0].submit()</script></body>`, public)
		}
	}))
	defer attacker.Close()
	before := len(rec.all())

	page := dumpDOM(t, bin, attacker.URL+"/fetch")
	if !strings.Contains(page, "DONE") {
		t.Fatalf("the attacker's page did not finish:\n%s", page)
	}
	if !strings.Contains(page, "read-status:failed") {
		t.Errorf("a page of another site read /-/status: %s", page)
	}
	if page := dumpDOM(t, bin, attacker.URL+"/form"); !strings.Contains(page, "cross_origin_refused") {
		t.Errorf("a form posted from another site to /-/logout was not refused:\n%s", page)
	}
	// Rebinding: evil.test resolves to 127.0.0.1.
	if page := dumpDOM(t, bin, "http://evil.test:"+port+"/-/status",
		"--host-resolver-rules=MAP evil.test 127.0.0.1"); !strings.Contains(page, "misdirected_request") {
		t.Errorf("a rebound name read /-/status:\n%s", page)
	}

	if !connected() {
		t.Fatal("a page of another site logged the sidecar out")
	}
	if got := rec.all()[before:]; len(got) != 0 {
		t.Errorf("pages of another site reached Panopto: %q", got)
	}
	logs := sc.LogsAtStop()
	for _, want := range []string{
		`"method":"POST","path":"/-/logout","status":403`,
		`"method":"POST","path":"/-/uploads","status":403`,
		`"method":"GET","path":"/-/status","status":403`,
		`"status":421,"reason":"host not allowed","host":"evil.test:` + port + `"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("no refusal %s in the log", want)
		}
	}
}
