package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
	"github.com/doubtfire-lms/panopto-sidecar/webhook"
)

// watchChild prepares the sidecar binary on addr in front of pan, with
// webhooks to hook signed with hookSecretA, store being the token_store
// (and vault) lines; it is not started.
func watchChild(t *testing.T, bin, addr string, pan *panopto, hook *hookReceiver, store string, env ...string) *childSidecar {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, fmt.Sprintf("listen: %s\npublic_url: http://%s\nupstream: %s\n%s\nlog: {format: json}\nshutdown_grace: 2s\nuploads: {part_size: 5MiB, webhook_url: %s}\n",
		addr, addr, pan.URL, store, hook.URL))
	sc := &childSidecar{t: t, bin: bin, cfg: cfg, URL: "http://" + addr, logs: filepath.Join(dir, "sidecar.log"),
		env: append([]string{
			"PATH=" + os.Getenv("PATH"), "HOSTNAME=watch-test",
			"PANOPTO_CLIENT_ID=" + testClientID, "PANOPTO_CLIENT_SECRET=" + testClientSecret,
			webhook.SecretEnv + "=" + hookSecretA,
		}, env...)}
	t.Cleanup(func() {
		sc.kill()
		b, _ := os.ReadFile(sc.logs)
		registerOutput(t.Name()+" sidecar log "+addr, string(b))
		if t.Failed() {
			t.Logf("sidecar %s logs:\n%s", addr, lastLines(string(b), 60))
		}
	})
	return sc
}

// TestWatchSurvivesKill: the sidecar binary is killed -9 while Panopto is
// still processing an upload it watches (after upload.processing went
// out) and started again on the same file store: the watch carries on and
// upload.completed arrives, with the session.
func TestWatchSurvivesKill(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("kill -9 needs a Unix")
	}
	bin := buildSidecar(t)
	addr := childAddr(t)
	// Polls come 2 s after the upload (Processing, the session named) and
	// 4 s later (Complete): the kill lands between them.
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, ProcessingDelay: 4 * time.Second})
	hook := newHookReceiver(t, nil, hookSecretA)
	store := filepath.Join(t.TempDir(), "panopto-token.json")
	sc := watchChild(t, bin, addr, pan, hook, "token_store: {type: file, path: "+store+"}")
	sc.start()
	logIn(t, sc.URL)

	id := uploadOK(t, sc.URL, uploadReq{name: "lecture.mp4", metadata: `{"task_id":7}`})
	hook.wait(t, id, webhook.TypeProcessing, 20*time.Second)
	if info, _ := pan.Upload(id); info.State != panoptofake.StateProcessing {
		t.Fatalf("state %d at the kill; the test needs the upload still processing", info.State)
	}
	sc.kill()
	sc.start()
	done := hook.wait(t, id, webhook.TypeCompleted, 30*time.Second)
	if done.Data.Session == nil || done.Data.Session.ViewerURL == "" || string(done.Data.Metadata) != `{"task_id":7}` {
		t.Errorf("upload.completed after the restart: %+v", done.Data)
	}
	var up watch.Upload
	if code := getJSON(t, sc.URL+"/-/uploads/"+id, &up); code != 200 || up.State != watch.StateComplete {
		t.Errorf("GET after the restart: %d %+v", code, up)
	}
}

// TestWatchReplicaDies: two sidecar binaries share a Vault token store;
// the one that took the upload is killed -9 while Panopto processes it.
// Once its lease has run out (30 s past the watch's next poll), the other
// replica takes the watch over and delivers upload.completed.
func TestWatchReplicaDies(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("kill -9 needs a Unix")
	}
	vs := vaulttest.StartDev(t)
	registerSecret(vs.RootToken())
	bin := buildSidecar(t)
	addrA, addrB := childAddr(t), childAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addrA + "/redirect"}, ProcessingDelay: 5 * time.Second})
	hook := newHookReceiver(t, nil, hookSecretA)
	store := fmt.Sprintf("vault: {address: %s, auth: token, mount: secret}\ntoken_store: {type: vault, path: panopto/watch}", vs.Addr())
	a := watchChild(t, bin, addrA, pan, hook, store, "VAULT_TOKEN="+vs.RootToken())
	b := watchChild(t, bin, addrB, pan, hook, store, "VAULT_TOKEN="+vs.RootToken())
	a.start()
	logIn(t, a.URL)
	b.start() // reads the grant A stored

	id := uploadOK(t, a.URL, uploadReq{name: "lecture.mp4"})
	hook.wait(t, id, webhook.TypeProcessing, 20*time.Second)
	a.kill()
	killed := time.Now()
	hook.wait(t, id, webhook.TypeCompleted, 90*time.Second)
	t.Logf("upload.completed %v after replica A was killed", time.Since(killed).Round(100*time.Millisecond))
	if m := fetch(t, b.URL+"/metrics"); !strings.Contains(m, "panopto_sidecar_upload_watch_completed_total 1") {
		t.Errorf("replica B did not see the upload complete: its metrics say\n%s", m)
	}
	var up watch.Upload
	if code := getJSON(t, b.URL+"/-/uploads/"+id, &up); code != 200 || up.State != watch.StateComplete || up.Session == nil {
		t.Errorf("GET through replica B: %d %+v", code, up)
	}
}
