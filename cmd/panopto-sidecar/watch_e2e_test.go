package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
	"github.com/doubtfire-lms/panopto-sidecar/webhook"
)

// TestWatchIdempotencyKey: the same Idempotency-Key sent while the first
// upload still streams gets 409 upload_in_progress with the upload's id,
// and once it finished the same 201 body; Panopto saw one sessionUpload.
// A bad key or bad metadata is refused before anything reaches Panopto.
func TestWatchIdempotencyKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}})
	sc := startWatchSidecar(t, dir, addr, watchConfig(pan.URL, dir, ""), nil, fastWatch)
	logIn(t, sc.URL)

	const key = "ontrack-task-7-submission-42"
	const size = 6 << 20 // a full 5 MiB first part, then more
	pr, pw := io.Pipe()
	first := make(chan []byte, 1)
	go func() {
		code, body := postWatched(t, sc.URL, uploadReq{name: "first.mp4", body: pr, size: size, key: key, metadata: `{"task_id":42}`})
		if code != http.StatusCreated {
			t.Errorf("first upload: %d %s", code, body)
		}
		first <- body
	}()
	// The first 5 MiB fill the first part: then the sessionUpload exists
	// and the key names it, while the body is still being sent.
	if _, err := pw.Write(make([]byte, 5<<20)); err != nil {
		t.Fatal(err)
	}
	var inProgress struct{ Error, ID string }
	testsupport.WaitFor(t, 10*time.Second, "409 upload_in_progress with the id", func() bool {
		code, body := postWatched(t, sc.URL, uploadReq{name: "again.mp4", key: key})
		if code != http.StatusConflict || json.Unmarshal(body, &inProgress) != nil || inProgress.Error != "upload_in_progress" {
			t.Fatalf("same key while the first streams: %d %s", code, body)
		}
		return inProgress.ID != ""
	})
	if _, err := pw.Write(make([]byte, size-5<<20)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	var b1 []byte
	select {
	case b1 = <-first:
	case <-time.After(30 * time.Second):
		t.Fatal("first upload did not finish")
	}
	var res struct{ ID string }
	if err := json.Unmarshal(b1, &res); err != nil || !strings.EqualFold(res.ID, inProgress.ID) {
		t.Fatalf("first upload answered %s; the 409 named %q", b1, inProgress.ID)
	}
	code, b2 := postWatched(t, sc.URL, uploadReq{name: "again.mp4", key: key})
	if code != http.StatusCreated || !bytes.Equal(bytes.TrimSpace(b1), bytes.TrimSpace(b2)) {
		t.Fatalf("same key after the upload: %d %s, want 201 %s", code, b2, b1)
	}

	for _, bad := range []uploadReq{
		{name: "bad-key.mp4", key: strings.Repeat("k", 256)},
		{name: "bad-meta.mp4", metadata: `[1,2]`},
		{name: "big-meta.mp4", metadata: `{"x":"` + strings.Repeat("m", 4<<10) + `"}`},
	} {
		if code, body := postWatched(t, sc.URL, bad); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", bad.name, code, body)
		}
	}
	if ids := pan.UploadIDs(); len(ids) != 1 {
		t.Errorf("the stand-in has %d sessionUploads, want 1: %v", len(ids), ids)
	}
	// The watch follows it: GET shows Complete with the session and the metadata.
	testsupport.WaitFor(t, 10*time.Second, "upload complete", func() bool {
		var up watch.Upload
		return getJSON(t, sc.URL+"/-/uploads/"+res.ID, &up) == 200 && up.State == watch.StateComplete &&
			up.Session != nil && up.Session.ViewerURL != "" && string(up.Metadata) == `{"task_id":42}`
	})
}

// TestWatchWebhooks: a receiver that fails twice gets the event on the
// third attempt with the same webhook-id and a valid signature; the events
// of one upload arrive in order (processing before completed, although
// the processing one failed first); a processing error arrives as
// upload.failed with Panopto's message; GET shows what the events said.
func TestWatchWebhooks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, ProcessingDelay: 100 * time.Millisecond})
	const codecMsg = "Unsupported codec: the video track could not be decoded"
	pan.FailProcessing("broken.mp4", codecMsg)
	hook := newHookReceiver(t, map[string]int{webhook.TypeProcessing: 2}, hookSecretA)
	sc := startWatchSidecar(t, dir, addr, watchConfig(pan.URL, dir, hook.URL+"/api/panopto/hooks"),
		map[string]string{webhook.SecretEnv: hookSecretA}, func(o *watch.Options) {
			fastWatch(o)
			// Retries 400 ms apart: Panopto reaches Complete (about
			// 350 ms in) while upload.processing is still failing, so
			// upload.completed waits behind it.
			o.Retry = func(int) time.Duration { return 400 * time.Millisecond }
		})
	logIn(t, sc.URL)

	good := uploadOK(t, sc.URL, uploadReq{name: "good.mp4", metadata: `{"task_id":123,"unit":"SIT305"}`})
	broken := uploadOK(t, sc.URL, uploadReq{name: "broken.mp4"})

	done := hook.wait(t, good, webhook.TypeCompleted, 20*time.Second)
	failed := hook.wait(t, broken, webhook.TypeFailed, 20*time.Second)

	// Three attempts of the processing event, one webhook-id, each signed.
	var proc []hookAttempt
	for _, a := range hook.all() {
		if a.SignedBy == "" {
			t.Errorf("an attempt's signature did not verify: %+v", a)
		}
		if strings.EqualFold(a.Data.ID, good) && a.Type == webhook.TypeProcessing {
			proc = append(proc, a)
		}
	}
	if len(proc) < 3 || proc[0].Status != 503 || proc[1].Status != 503 || proc[2].Status != 204 ||
		proc[0].ID != proc[1].ID || proc[1].ID != proc[2].ID || proc[0].ID == "" {
		t.Errorf("processing attempts: %+v; want 503, 503, 204 with one webhook-id", proc)
	}
	// Order: processing delivered before completed, nothing after.
	d := hook.delivered(good)
	if len(d) != 2 || d[0].Type != webhook.TypeProcessing || d[1].Type != webhook.TypeCompleted {
		t.Errorf("delivered for the good upload: %+v; want processing then completed", d)
	}
	if s := done.Data.Session; s == nil || s.ViewerURL == "" || s.EmbedURL == "" || s.Duration == nil ||
		done.Data.State != watch.StateComplete || string(done.Data.Metadata) != `{"task_id":123,"unit":"SIT305"}` {
		t.Errorf("upload.completed data: %+v", done.Data)
	}
	if failed.Data.State != watch.StateProcessingError || failed.Data.Message != codecMsg || failed.Data.Session != nil {
		t.Errorf("upload.failed data: %+v; want ProcessingError with %q", failed.Data, codecMsg)
	}
	if d := hook.delivered(broken); len(d) != 1 {
		t.Errorf("delivered for the broken upload: %+v; want upload.failed alone", d)
	}

	var up watch.Upload
	if code := getJSON(t, sc.URL+"/-/uploads/"+strings.ToUpper(good), &up); code != 200 || up.Session == nil || up.Session.ID != done.Data.Session.ID {
		t.Errorf("GET /-/uploads/{id}: %d %+v", code, up)
	}
	var status struct {
		Uploads map[string]any `json:"uploads"`
	}
	if getJSON(t, sc.URL+"/-/status", &status); status.Uploads["completed"] != float64(1) || status.Uploads["webhooks"] != true {
		t.Errorf("/-/status uploads: %v", status.Uploads)
	}
	metrics := fetch(t, sc.URL+"/metrics")
	for _, m := range []string{"panopto_sidecar_webhooks_delivered_total 3", "panopto_sidecar_webhook_attempts_failed_total 2",
		"panopto_sidecar_upload_watch_completed_total 1", "panopto_sidecar_upload_watch_failed_total 1"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	assertNoSecrets(t, []string{hookSecretA, strings.TrimPrefix(hookSecretA, "whsec_")}, map[string]string{"sidecar log": sc.LogsAtStop()})
}

// TestWatchWebhookSecretRotation: with Vault credentials, the webhook
// secret is the key webhook_secret of the credentials path; a new one
// written to Vault signs the next delivery, without a restart (the
// credentials' own poll is an hour apart, so only the read at the attempt
// can have seen it).
func TestWatchWebhookSecretRotation(t *testing.T) {
	t.Parallel()
	vs := vaulttest.StartDev(t)
	registerSecret(vs.RootToken())
	kv := vs.Client(t).KVv2("secret")
	ctx := context.Background()
	put := func(secret string) {
		t.Helper()
		if _, err := kv.Put(ctx, "panopto/client", map[string]any{
			"client_id": testClientID, "client_secret": testClientSecret, "webhook_secret": secret}); err != nil {
			t.Fatal(err)
		}
	}
	put(hookSecretA)
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}})
	hook := newHookReceiver(t, nil, hookSecretA, hookSecretB)
	cfg := watchConfig(pan.URL, dir, hook.URL) + "vault: {address: " + vs.Addr() + ", auth: token, mount: secret}\n" +
		"credentials: {source: vault, path: panopto/client, poll_interval: 1h}\n"
	sc := startWatchSidecar(t, dir, addr, cfg, map[string]string{"VAULT_TOKEN": vs.RootToken(), "PANOPTO_CLIENT_ID": "", "PANOPTO_CLIENT_SECRET": ""}, fastWatch)
	logIn(t, sc.URL)

	one := uploadOK(t, sc.URL, uploadReq{name: "one.mp4"})
	if a := hook.wait(t, one, webhook.TypeCompleted, 20*time.Second); a.SignedBy != hookSecretA {
		t.Fatalf("first upload's completed signed by %q, want secret A", a.SignedBy)
	}
	put(hookSecretB)
	two := uploadOK(t, sc.URL, uploadReq{name: "two.mp4"})
	hook.wait(t, two, webhook.TypeCompleted, 20*time.Second)
	for _, a := range hook.all() {
		if strings.EqualFold(a.Data.ID, two) && a.SignedBy != hookSecretB {
			t.Errorf("after the rotation, %s (%s) verified with %q, want only secret B", a.Type, a.ID, a.SignedBy)
		}
	}
}

// TestWatchAccounts: with per-account tokens, an Idempotency-Key is the
// account's own (the same key from another account is another upload),
// GET /-/uploads/{id} of another account's upload is 404 as if it did not
// exist, and an upload the sidecar does not watch (a sessionUpload made
// through the proxy) is read from Panopto as before.
func TestWatchAccounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	const appKey = "3f0e6d1c-app-key-for-unilms"
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"},
		IdentityProviders: map[string]string{"unilms": appKey}})
	cfg := watchConfig(pan.URL, dir, "") + "accounts: {mode: idp, provider: unilms}\n"
	sc := startWatchSidecar(t, dir, addr, cfg, map[string]string{"PANOPTO_APP_KEY": appKey}, fastWatch)

	const key = "same-key-two-accounts"
	alice := uploadOK(t, sc.URL, uploadReq{name: "a.mp4", key: key, account: "alice"})
	bob := uploadOK(t, sc.URL, uploadReq{name: "b.mp4", key: key, account: "bob"})
	if strings.EqualFold(alice, bob) {
		t.Fatalf("one key from two accounts made one upload %s", alice)
	}
	get := func(id, account string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, sc.URL+"/-/uploads/"+id, nil)
		req.Header.Set("X-Panopto-User", account)
		resp, err := shortClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, out := get(alice, "alice"); code != 200 || out["account"] != "alice" || out["name"] != "a.mp4" {
		t.Errorf("alice reads her upload: %d %v", code, out)
	}
	if code, out := get(alice, "bob"); code != 404 || out["id"] != nil || out["name"] != nil {
		t.Errorf("bob reads alice's upload: %d %v, want 404 naming nothing", code, out)
	}
	// A sessionUpload made through the proxy: no watch; Panopto answers.
	req, _ := http.NewRequest(http.MethodPost, sc.URL+"/Panopto/PublicAPI/REST/sessionUpload",
		strings.NewReader(`{"FolderId":"`+panoptofake.FolderCOS10009+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Panopto-User", "alice")
	resp, err := shortClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var su struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&su)
	resp.Body.Close()
	if code, out := get(su.ID, "alice"); code != 200 || !strings.EqualFold(fmt.Sprint(out["id"]), su.ID) || out["session_id"] == nil || out["account"] != nil {
		t.Errorf("an unwatched upload: %d %v, want Panopto's state", code, out)
	}
}

// TestWatchWebhookReload: uploads.webhook_url applies on reload: set in
// config.yaml while the sidecar runs, the next upload's events reach it.
func TestWatchWebhookReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}})
	hook := newHookReceiver(t, nil, hookSecretA)
	env := map[string]string{webhook.SecretEnv: hookSecretA}
	sc := startWatchSidecar(t, dir, addr, watchConfig(pan.URL, dir, ""), env, fastWatch)
	logIn(t, sc.URL)

	before := uploadOK(t, sc.URL, uploadReq{name: "before.mp4"})
	testsupport.WaitFor(t, 10*time.Second, "first upload complete", func() bool {
		var up watch.Upload
		return getJSON(t, sc.URL+"/-/uploads/"+before, &up) == 200 && up.State == watch.StateComplete
	})
	cfg := strings.ReplaceAll(strings.ReplaceAll(watchConfig(pan.URL, dir, hook.URL), "{{LISTEN}}", addr), "{{URL}}", "http://"+addr)
	writeFile(t, sc.Config, cfg)
	testsupport.WaitFor(t, 10*time.Second, "config reloaded", func() bool {
		var st struct{ Config struct{ Generation int } }
		return getJSON(t, sc.URL+"/-/status", &st) == 200 && st.Config.Generation == 2
	})
	after := uploadOK(t, sc.URL, uploadReq{name: "after.mp4"})
	hook.wait(t, after, webhook.TypeCompleted, 20*time.Second)
	if d := hook.delivered(before); len(d) != 0 {
		t.Errorf("events of the upload finished before webhooks were on: %+v", d)
	}
}
