package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

// TestStartErrorTexts: what serve prints when it cannot start says so once
// per line, each line under the program's name, without stutter.
func TestStartErrorTexts(t *testing.T) {
	dir := t.TempDir()
	t.Run("env credentials", func(t *testing.T) {
		path := filepath.Join(dir, "env.yaml")
		writeFile(t, path, "token_store: {type: file, path: "+dir+"/tok.json}\n")
		_, stderr, code := runCLI(t, nil, "serve", "-config", path)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 1 || len(lines) != 2 {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
		for i, name := range []string{"PANOPTO_CLIENT_ID", "PANOPTO_CLIENT_SECRET"} {
			if !strings.HasPrefix(lines[i], "panopto-sidecar: ") || !strings.Contains(lines[i], name) {
				t.Errorf("line %d: %q", i+1, lines[i])
			}
		}
	})
	t.Run("vault token", func(t *testing.T) {
		path := filepath.Join(dir, "vault.yaml")
		writeFile(t, path, "vault: {address: http://127.0.0.1:1}\ncredentials: {source: vault}\ntoken_store: {type: file, path: "+dir+"/tok.json}\n")
		_, stderr, code := runCLI(t, nil, "serve", "-config", path)
		if code != 1 || strings.TrimSpace(stderr) != "panopto-sidecar: vault: auth token: set token_file or $VAULT_TOKEN" {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("missing config", func(t *testing.T) {
		missing := filepath.Join(dir, "nope.yaml")
		out, stderr, code := runCLI(t, nil, "check", "-config", missing)
		if code != 1 || out != missing+": not found\n" || !strings.Contains(stderr, missing+" not found") {
			t.Errorf("check: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		_, stderr, code = runCLI(t, nil, "serve", "-config", missing)
		if code != 1 || strings.Contains(stderr, "invalid") || !strings.Contains(stderr, missing+" not found") {
			t.Errorf("serve: exit %d, stderr %q", code, stderr)
		}
	})
}

// TestVaultDownAtStartSaysNoneYet: with Vault unreachable at start there
// are no credentials to keep; the log says none are held yet.
func TestVaultDownAtStartSaysNoneYet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	cfg := `listen: {{LISTEN}}
public_url: {{URL}}
upstream: http://` + freeAddr(t) + `
vault: {address: http://` + freeAddr(t) + `}
credentials: {source: vault}
token_store: {type: file, path: ` + dir + `/tok.json}
log: {level: info, format: json}
`
	sc := startSidecar(t, dir, addr, cfg, map[string]string{"VAULT_TOKEN": "hvs.unused-token"})
	testsupport.WaitFor(t, 10*time.Second, "the credentials warning", func() bool {
		return strings.Contains(sc.Logs.String(), "vault credentials not read; none held yet")
	})
	if strings.Contains(sc.Logs.String(), "keeping the last good ones") {
		t.Errorf("log claims last good credentials that never were:\n%s", sc.Logs.String())
	}
}

// TestDemoDoesNotAskForLogin: the demo logs in itself, so its log does not
// tell the operator to open the login URL.
func TestDemoDoesNotAskForLogin(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr testsupport.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"demo", "-listen", childAddr(t)}, os.Getenv, &stdout, &stderr) }()
	testsupport.WaitFor(t, 20*time.Second, "the demo to run", func() bool {
		return strings.Contains(stdout.String(), "demo is running") || strings.Contains(stderr.String(), "panopto-sidecar:")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "not connected") {
		t.Errorf("demo log asks for a login:\n%s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "logged in already") {
		t.Errorf("demo output:\n%s", stdout.String())
	}
}
