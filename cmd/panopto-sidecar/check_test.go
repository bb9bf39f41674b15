package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
)

// TestCheckListsWhatServeNeeds: a valid config that serve would still
// refuse makes check exit 1 listing every reason at once: missing
// environment variables, no Vault token, a token file directory that cannot
// be written, TLS files that cannot be read.
func TestCheckListsWhatServeNeeds(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular-file")
	writeFile(t, regular, "not a directory")
	tlsFiles := "tls: {mode: files, cert_file: " + dir + "/missing.crt, key_file: " + dir + "/missing.key}\n"

	for _, tc := range []struct {
		name string
		cfg  string
		env  map[string]string
		want []string
	}{
		{
			name: "env credentials",
			cfg: "oauth: {grant: password}\n" + tlsFiles +
				"token_store: {type: file, path: " + regular + "/panopto-token.json}\n",
			env: map[string]string{"PANOPTO_CLIENT_SECRET": "s"},
			want: []string{
				"environment: PANOPTO_CLIENT_ID is not set (credentials.source is env)",
				"environment: PANOPTO_USERNAME is not set",
				"environment: PANOPTO_PASSWORD is not set",
				"token_store.path: cannot write in " + regular,
				"tls.cert_file, tls.key_file: open " + dir + "/missing.crt",
			},
		},
		{
			name: "vault credentials",
			cfg: "credentials: {source: vault}\n" + tlsFiles +
				"token_store: {type: file, path: " + dir + "/no-such-dir/panopto-token.json}\n",
			want: []string{
				"vault.auth: VAULT_TOKEN is not set",
				"token_store.path: cannot write in " + dir + "/no-such-dir",
				"tls.cert_file, tls.key_file: open " + dir + "/missing.crt",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			writeFile(t, path, tc.cfg)
			out, stderr, code := runCLI(t, tc.env, "check", "-config", path)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, "  "+w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if strings.Contains(out, "PANOPTO_CLIENT_SECRET") {
				t.Error("a variable that is set is reported")
			}
			if !strings.Contains(stderr, path+" has problems") {
				t.Errorf("stderr %q", stderr)
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// TestCheckVaultOnline: check logs in to Vault unless -offline; an
// unreachable Vault is a problem only online.
func TestCheckVaultOnline(t *testing.T) {
	dir := t.TempDir()
	closed := "http://" + freeAddr(t)
	path := filepath.Join(dir, "config.yaml")
	writeFile(t, path, "vault: {address: "+closed+"}\ncredentials: {source: vault}\ntoken_store: {type: vault}\n")
	env := map[string]string{"VAULT_TOKEN": "hvs.not-a-real-token"}

	out, _, code := runCLI(t, env, "check", "-config", path)
	if code != 1 || !strings.Contains(out, "vault: log in at "+closed) || !strings.Contains(out, "unreachable") {
		t.Errorf("online: exit %d, output:\n%s", code, out)
	}
	out, _, code = runCLI(t, env, "check", "-offline", "-config", path)
	if code != 0 || !strings.Contains(out, path+": ok") || !strings.Contains(out, "not contacted (-offline)") {
		t.Errorf("-offline: exit %d, output:\n%s", code, out)
	}
}

// TestCheckVaultLogin: against a real Vault, a good token and readable
// credentials pass; a token Vault refuses is reported, without the token.
func TestCheckVaultLogin(t *testing.T) {
	vs := vaulttest.StartDev(t)
	if _, err := vs.Client(t).KVv2("secret").Put(context.Background(), "panopto/client",
		map[string]any{"client_id": testClientID, "client_secret": testClientSecret}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, "vault: {address: "+vs.Addr()+"}\ncredentials: {source: vault}\ntoken_store: {type: vault}\n")

	out, stderr, code := runCLI(t, map[string]string{"VAULT_TOKEN": vs.RootToken()}, "check", "-config", path)
	if code != 0 || !strings.Contains(out, "logged in") {
		t.Errorf("good token: exit %d\n%s%s", code, out, stderr)
	}
	const bad = "hvs.refused-token-5a8c1e"
	out, stderr, code = runCLI(t, map[string]string{"VAULT_TOKEN": bad}, "check", "-config", path)
	if code != 1 || !strings.Contains(out, "vault: log in at "+vs.Addr()) || !strings.Contains(out, "403") {
		t.Errorf("refused token: exit %d, output:\n%s", code, out)
	}
	assertNoSecrets(t, []string{bad, vs.RootToken(), testClientSecret}, map[string]string{"check output": out + stderr})
}
