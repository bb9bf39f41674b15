package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// runCLI runs the program with args as an operator would type them and
// returns what it printed and its exit code (0 when run returns nil).
func runCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut strings.Builder
	getenv := func(k string) string { return env[k] }
	err := run(ctx, args, getenv, &out, &errOut)
	if err != nil {
		code = exitCode(err)
		if code == 0 {
			t.Fatalf("run(%q) returned %v with exit code 0", args, err)
		}
		printError(&errOut, err) // as main prints it
	}
	return out.String(), errOut.String(), code
}

func TestCheckExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeTestFile(t, good, []byte("listen: 127.0.0.1:9127\nupstream: https://deakin.au.panopto.com\n"))
	bad := filepath.Join(dir, "bad.yaml")
	writeTestFile(t, bad, []byte(`listen: not-an-address
upstream: ftp://deakin.au.panopto.com
oauth: {client_auth: carrier-pigeon}
tls: {mode: acme}
no_such_key: 1
`))

	t.Run("valid", func(t *testing.T) {
		// What serve needs from the environment is checked too.
		creds := map[string]string{"PANOPTO_CLIENT_ID": testClientID, "PANOPTO_CLIENT_SECRET": testClientSecret}
		out, _, code := runCLI(t, creds, "check", "-config", good)
		if code != 0 || !strings.Contains(out, good+": ok") || !strings.Contains(out, "https://deakin.au.panopto.com") {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("every problem at once", func(t *testing.T) {
		out, stderr, code := runCLI(t, nil, "check", "-config", bad)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		for _, want := range []string{
			"invalid",
			`no_such_key: unknown key`,
			`listen: must be host:port`,
			`upstream: must be an absolute http:// or https:// URL`,
			`oauth.client_auth: must be one of basic, body; got "carrier-pigeon"`,
			`tls.acme.domains: at least one domain`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if !strings.Contains(stderr, "has problems") {
			t.Errorf("stderr: %q", stderr)
		}
	})
	t.Run("config from the environment", func(t *testing.T) {
		out, _, code := runCLI(t, map[string]string{"PANOPTO_SIDECAR_CONFIG": bad}, "check")
		if code != 1 || !strings.Contains(out, bad) {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "nope.yaml")
		out, _, code := runCLI(t, nil, "check", "-config", missing)
		if code != 1 || !strings.Contains(out, missing) {
			t.Errorf("exit %d, output:\n%s", code, out)
		}
	})
	t.Run("stray argument", func(t *testing.T) {
		_, stderr, code := runCLI(t, nil, "check", "-config", good, "extra")
		if code != 2 || !strings.Contains(stderr, "extra") {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
	})
}

// TestStatusCommand: `status` against a running sidecar, before and after
// login, printed for a person and without secrets or terminal colour.
func TestStatusCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}})
	sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir), nil)

	// stdout is a file that is not a terminal, as when piped or redirected.
	status := func(t *testing.T, env map[string]string, args ...string) (string, string, int) {
		t.Helper()
		f, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var errOut strings.Builder
		rerr := run(context.Background(), append([]string{"status"}, args...), func(k string) string { return env[k] }, f, &errOut)
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		code := 0
		if rerr != nil {
			code = exitCode(rerr)
			errOut.WriteString(rerr.Error())
		}
		return string(b), errOut.String(), code
	}

	t.Run("before login", func(t *testing.T) {
		out, stderr, code := status(t, nil, "-addr", sc.URL)
		if code != 3 {
			t.Errorf("exit %d, want 3 (not connected); stderr %q", code, stderr)
		}
		for _, want := range []string{"NOT CONNECTED", sc.URL + "/-/login", pan.URL, "never_connected", "open " + sc.URL + "/-/login in a browser"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "\x1b[") {
			t.Errorf("colour codes written to a file:\n%q", out)
		}
		// What the command reads: no zero time, no null, each field once.
		doc := fetch(t, sc.URL+"/-/status")
		if strings.Contains(doc, "0001-01-01") || strings.Contains(doc, "null") || strings.Contains(doc, `"token":`) {
			t.Errorf("/-/status before login: %s", doc)
		}
	})

	logIn(t, sc.URL)

	t.Run("after login", func(t *testing.T) {
		// The address comes from $PANOPTO_SIDECAR_ADDR, without a scheme.
		out, stderr, code := status(t, map[string]string{"PANOPTO_SIDECAR_ADDR": addr})
		if code != 0 {
			t.Fatalf("exit %d: %s\n%s", code, stderr, out)
		}
		first := strings.SplitN(out, "\n", 2)[0]
		if !strings.HasSuffix(first, ": connected") {
			t.Errorf("first line %q, want it to end in \": connected\"", first)
		}
		if strings.Contains(out, "NOT CONNECTED") || strings.Contains(out, "log in at") {
			t.Errorf("connected status still asks for a login:\n%s", out)
		}
		if !strings.Contains(out, "token expires") || !strings.Contains(out, "(in ") {
			t.Errorf("no token expiry:\n%s", out)
		}
		if strings.Contains(out, "\x1b[") {
			t.Errorf("colour codes written to a file:\n%q", out)
		}
		secrets := append(secretsIn(t, dir), testClientSecret)
		if len(secrets) < 2 {
			t.Fatalf("the token store holds no token after login")
		}
		assertNoSecrets(t, secrets, map[string]string{"status output": out, "status stderr": stderr})
	})

	t.Run("after logout", func(t *testing.T) {
		resp, err := http.Post(sc.URL+"/-/logout", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		out, stderr, code := status(t, nil, "-addr", sc.URL)
		if code != 3 {
			t.Errorf("exit %d, want 3 (not connected); stderr %q", code, stderr)
		}
		for _, want := range []string{"NOT CONNECTED", "logged_out", "open " + sc.URL + "/-/login in a browser"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "token expires") {
			t.Errorf("a dropped grant still shows an expiry:\n%s", out)
		}
		if doc := fetch(t, sc.URL+"/-/status"); strings.Contains(doc, "0001-01-01") || strings.Contains(doc, "null") {
			t.Errorf("/-/status after logout: %s", doc)
		}
	})

	// The no-colour checks above mean something: on a terminal the same
	// status is painted.
	t.Run("colour on a terminal", func(t *testing.T) {
		var b strings.Builder
		printStatus(&b, sc.URL, map[string]any{"connected": false, "login_url": sc.URL + "/-/login"}, true, time.Now())
		if !strings.Contains(b.String(), "\x1b[31mNOT CONNECTED\x1b[0m") {
			t.Errorf("not painted: %q", b.String())
		}
	})

	t.Run("nothing listening", func(t *testing.T) {
		closed := "http://" + freeAddr(t)
		_, stderr, code := status(t, nil, "-addr", closed)
		if code != 1 || !strings.Contains(stderr, "is the sidecar running at "+closed) {
			t.Errorf("exit %d: %s", code, stderr)
		}
	})

	t.Run("bad flag", func(t *testing.T) {
		_, _, code := status(t, nil, "-adr", sc.URL)
		if code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
	})
}

// TestPrintStatusReasons: each reason /-/status can give is printed with
// what to do about it, painted only on a terminal.
func TestPrintStatusReasons(t *testing.T) {
	const login = "https://sidecar.example/-/login"
	for reason, want := range map[string]string{
		"never_connected":         "open " + login + " in a browser",
		"logged_out":              "open " + login + " in a browser",
		"refresh_refused":         "open " + login + " in a browser",
		"credentials_unavailable": "set PANOPTO_CLIENT_ID/PANOPTO_CLIENT_SECRET or check Vault: see the sidecar's log",
		"refresh_pending":         "retries by itself",
	} {
		st := map[string]any{"connected": false, "reason": reason, "login_url": login}
		var plain, painted strings.Builder
		printStatus(&plain, "http://127.0.0.1:9127", st, false, time.Now())
		printStatus(&painted, "http://127.0.0.1:9127", st, true, time.Now())
		if !strings.Contains(plain.String(), "reason             "+reason+"\n") || !strings.Contains(plain.String(), want) {
			t.Errorf("%s: output lacks the reason or %q:\n%s", reason, want, plain.String())
		}
		if strings.Contains(plain.String(), "\x1b[") {
			t.Errorf("%s: colour codes without a terminal:\n%q", reason, plain.String())
		}
		if !strings.Contains(painted.String(), "\x1b[33m"+reason+"\x1b[0m") {
			t.Errorf("%s: reason not painted on a terminal:\n%q", reason, painted.String())
		}
	}
	// README.md's Troubleshooting explains every one of them.
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []token.Reason{token.ReasonNeverConnected, token.ReasonLoggedOut, token.ReasonRefreshRefused,
		token.ReasonCredentialsUnavailable, token.ReasonRefreshPending} {
		if !strings.Contains(string(readme), "| `"+string(r)+"` |") {
			t.Errorf("README.md's Troubleshooting has no row for %s", r)
		}
	}
	// Connected: no reason, nothing to do.
	var b strings.Builder
	printStatus(&b, "http://127.0.0.1:9127", map[string]any{"connected": true, "login_url": login}, false, time.Now())
	if strings.Contains(b.String(), "reason") || strings.Contains(b.String(), "what to do") {
		t.Errorf("connected status gives a reason:\n%s", b.String())
	}
}

func TestHealthcheckCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}})
	sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir), nil)

	// Healthy without a Panopto login: the process serves.
	for _, a := range []string{sc.URL, addr, sc.URL + "/"} {
		out, stderr, code := runCLI(t, nil, "healthcheck", "-addr", a)
		if code != 0 || strings.TrimSpace(out) != "ok" {
			t.Errorf("healthcheck -addr %s: exit %d, %q %q", a, code, out, stderr)
		}
	}

	closed := freeAddr(t)
	_, stderr, code := runCLI(t, map[string]string{"PANOPTO_SIDECAR_ADDR": closed}, "healthcheck")
	if code == 0 {
		t.Errorf("healthcheck against a closed port exited 0")
	}
	if !strings.Contains(stderr, "healthcheck") {
		t.Errorf("stderr %q", stderr)
	}

	// A sidecar that stopped is unhealthy.
	sc.Stop()
	if _, _, code := runCLI(t, nil, "healthcheck", "-addr", sc.URL); code == 0 {
		t.Error("healthcheck against a stopped sidecar exited 0")
	}
}

func TestVersionHelpAndUnknownCommands(t *testing.T) {
	out, _, code := runCLI(t, nil, "version")
	if code != 0 || out != "panopto-sidecar "+currentVersion().String()+"\n" {
		t.Errorf("version: exit %d, %q", code, out)
	}

	out, _, code = runCLI(t, nil, "help")
	if code != 0 || !strings.Contains(out, "Usage:") {
		t.Errorf("help: exit %d, %q", code, out)
	}

	out, stderr, code := runCLI(t, nil, "frobnicate")
	if code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	if out != "" || !strings.Contains(stderr, "Usage:") || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: stdout %q, stderr %q", out, stderr)
	}
}

// TestCheckOpensNamedFiles: check refuses a config whose certificate or
// secret files cannot be used, as serve would.
func TestCheckOpensNamedFiles(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/config.yaml"
	writeFile(t, path, "tls: {mode: files, cert_file: "+dir+"/nope.crt, key_file: "+dir+"/nope.key}\nupstream_ca_file: "+dir+"/missing-ca.pem\n")
	var out strings.Builder
	err := run(t.Context(), []string{"check", "-config", path}, func(string) string { return "" }, &out, &strings.Builder{})
	if exitCode(err) != 1 {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	for _, want := range []string{"tls.cert_file", "upstream_ca_file"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %s:\n%s", want, out.String())
		}
	}
}
