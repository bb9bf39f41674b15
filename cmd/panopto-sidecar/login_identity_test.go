package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
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
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, AccessTTL: time.Hour})
	sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir)+"accounts: {mode: login, identity_claim: none}\n", nil)
	testsupport.WaitFor(t, 5*time.Second, "the start-up warning", func() bool {
		return strings.Contains(sc.Logs.String(), `"level":"WARN","msg":"accounts.identity_claim is none`)
	})
}

// TestPublicListenOffersNoForbiddenLoginURL: with public_listen, public_url
// serves only ticketed logins; the start-up warning, GET / and /-/status
// (of the default grant and of an account) say to connect with POST
// /-/connect rather than point at a /-/login there that answers 403.
func TestPublicListenOffersNoForbiddenLoginURL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr, pubAddr := holdAddr(t), holdAddr(t)
	pub := "http://" + pubAddr
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{pub + "/redirect"}, AccessTTL: time.Hour})
	cfg := strings.Replace(baseConfig(pan.URL, dir), "public_url: {{URL}}", "public_url: "+pub, 1) +
		"public_listen: " + pubAddr + "\naccounts: {mode: login, identity_claim: sub}\n"
	sc := startSidecar(t, dir, addr, cfg, nil)

	if code := statusCode(pub + "/-/login"); code != 403 {
		t.Fatalf("public /-/login: %d; the test's premise is gone", code)
	}
	testsupport.WaitFor(t, 5*time.Second, "the start-up warning", func() bool {
		return strings.Contains(sc.Logs.String(), `"msg":"not connected to Panopto yet`)
	})
	for _, l := range strings.Split(sc.Logs.String(), "\n") {
		if strings.Contains(l, `"msg":"not connected to Panopto yet`) && (strings.Contains(l, "/-/login") || !strings.Contains(l, `"connect":"POST /-/connect"`)) {
			t.Errorf("start-up warning: %s", l)
		}
	}
	for _, path := range []string{"/", "/-/status", "/-/status?account=alice"} {
		body := fetch(t, sc.URL+path)
		if strings.Contains(body, "/-/login") || !strings.Contains(body, `"POST /-/connect"`) {
			t.Errorf("%s: %s", path, body)
		}
	}
}
