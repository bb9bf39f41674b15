package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/panoptofake"
)

// TestCheckExplainsIdentityClaim: check refuses accounts.mode login without
// accounts.identity_claim and says, in plain words, what could go wrong;
// identity_claim none passes with a warning saying the same.
func TestCheckExplainsIdentityClaim(t *testing.T) {
	dir := t.TempDir()
	base := "listen: 127.0.0.1:9127\nupstream: https://deakin.au.panopto.com\n" +
		"token_store: {type: file, path: " + filepath.Join(dir, "panopto-token.json") + "}\n" +
		"accounts:\n  mode: login\n  return_to: [https://ontrack.example/panopto/]\n"
	creds := map[string]string{"PANOPTO_CLIENT_ID": testClientID, "PANOPTO_CLIENT_SECRET": testClientSecret}

	missing := filepath.Join(dir, "missing.yaml")
	writeFile(t, missing, base)
	out, _, code := runCLI(t, creds, "check", "-config", missing)
	if code != 1 {
		t.Errorf("without identity_claim: exit %d, want 1", code)
	}
	for _, want := range []string{
		"accounts.identity_claim: required with accounts.mode: login",
		"sub, preferred_username, email or upn",
		"a student could send their own link to a classmate who is signed in to Panopto, and then act in Panopto as that classmate",
		"identity_claim: none",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	name := filepath.Join(dir, "name.yaml")
	writeFile(t, name, base+"  identity_claim: name\n")
	if out, _, code := runCLI(t, creds, "check", "-config", name); code != 1 || !strings.Contains(out, "names are not unique") {
		t.Errorf("identity_claim name: exit %d:\n%s", code, out)
	}

	none := filepath.Join(dir, "none.yaml")
	writeFile(t, none, base+"  identity_claim: none\n")
	out, _, code = runCLI(t, creds, "check", "-config", none)
	if code != 0 || !strings.Contains(out, none+": ok") || !strings.Contains(out, "warning: accounts.identity_claim is none") || !strings.Contains(out, "acts in Panopto as that classmate") {
		t.Errorf("identity_claim none: exit %d:\n%s", code, out)
	}
}

// TestStartWarnsIdentityUnchecked: serve with identity_claim none says at
// start that logins are not checked.
func TestStartWarnsIdentityUnchecked(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, AccessTTL: time.Hour})
	sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir)+"accounts: {mode: login, identity_claim: none}\n", nil)
	if logs := sc.LogsNow(); !strings.Contains(logs, `"level":"WARN","msg":"accounts.identity_claim is none`) {
		t.Errorf("no start-up warning:\n%s", logs)
	}
}
