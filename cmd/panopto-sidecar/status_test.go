package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
)

// TestStatusCredentialsUnavailable: with the client credentials not in
// Vault, /-/status, /-/ready and `status` say so (not "never_connected"), and
// once they are there a login connects.
func TestStatusCredentialsUnavailable(t *testing.T) {
	t.Parallel()
	vs := vaulttest.StartDev(t)
	registerSecret(vs.RootToken())
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}})
	cfg := fmt.Sprintf(`listen: {{LISTEN}}
public_url: {{URL}}
upstream: %s
vault: {address: %s, auth: token, mount: secret}
credentials: {source: vault, path: panopto/client}
token_store: {type: file, path: %s}
log: {level: debug, format: json}
shutdown_grace: 5s
`, pan.URL, vs.Addr(), filepath.Join(dir, "panopto-token.json"))
	env := map[string]string{"VAULT_TOKEN": vs.RootToken(), "PANOPTO_CLIENT_ID": "", "PANOPTO_CLIENT_SECRET": ""}
	sc := startSidecar(t, dir, addr, cfg, env)

	var st struct {
		Connected bool   `json:"connected"`
		Reason    string `json:"reason"`
		LastError string `json:"last_error"`
	}
	testsupport.WaitFor(t, 5*time.Second, "reason credentials_unavailable", func() bool {
		st.Reason = ""
		getJSON(t, sc.URL+"/-/status", &st)
		return st.Reason == "credentials_unavailable"
	})
	if st.Connected || !strings.Contains(st.LastError, "panopto/client") {
		t.Errorf("status: %+v", st)
	}
	var ready struct{ Reason string }
	if code := getJSON(t, sc.URL+"/-/ready", &ready); code != 503 || ready.Reason != "credentials_unavailable" {
		t.Errorf("ready: %d %+v", code, ready)
	}
	out, _, code := runCLI(t, nil, "status", "-addr", sc.URL)
	if code != 3 || !strings.Contains(out, "credentials_unavailable") || !strings.Contains(out, "PANOPTO_CLIENT_ID") {
		t.Errorf("status command: exit %d\n%s", code, out)
	}

	if _, err := vs.Client(t).KVv2("secret").Put(context.Background(), "panopto/client",
		map[string]any{"client_id": testClientID, "client_secret": testClientSecret}); err != nil {
		t.Fatal(err)
	}
	logIn(t, sc.URL)
	st.Connected, st.Reason = false, "" // keys left out are not decoded
	getJSON(t, sc.URL+"/-/status", &st)
	if !st.Connected || st.Reason != "" {
		t.Errorf("after the credentials and a login: %+v", st)
	}
}
