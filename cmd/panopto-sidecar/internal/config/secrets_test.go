package config

import (
	"fmt"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadReadsSecretFiles: Load reads every file that holds a secret; an
// empty, white-space-only, unreadable or missing one is a problem of its
// key, with its line, in plain words, and never its content. The shared
// secret's value comes with the config, trimmed.
func TestLoadReadsSecretFiles(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("good", "  shared-secret-5d1e\n")
	empty := file("empty", "")
	spaces := file("spaces", " \n\t\r\n")
	large := file("large", strings.Repeat("x", maxSecretFile+1))
	missing := filepath.Join(dir, "missing")
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(missing, dangling); err != nil {
		t.Fatal(err)
	}
	vaultToken := "credentials: {source: vault}\nvault: {auth: {method: token, token_file: %s}}\n"

	for _, tc := range []struct {
		name   string
		cfg    string
		want   string // the one problem; "" for none
		secret string // the shared secret loaded
	}{
		{name: "good", cfg: "inbound: {shared_secret_file: " + good + "}", secret: "shared-secret-5d1e"},
		{name: "none", cfg: ""},
		{name: "empty", cfg: "inbound: {shared_secret_file: " + empty + "}",
			want: "inbound.shared_secret_file: " + empty + " is empty; put the shared secret in it (a blank file would turn authentication off) (line 1)"},
		{name: "white space only", cfg: "listen: 0.0.0.0:9127\ninbound:\n  shared_secret_file: " + spaces,
			want: "inbound.shared_secret_file: " + spaces + " holds only white space; put the shared secret in it (a blank file would turn authentication off) (line 3)"},
		{name: "missing", cfg: "inbound: {shared_secret_file: " + missing + "}",
			want: "inbound.shared_secret_file: cannot read " + missing + ": no such file or directory (line 1)"},
		{name: "dangling symlink", cfg: "inbound: {shared_secret_file: " + dangling + "}",
			want: "inbound.shared_secret_file: cannot read " + dangling + ": no such file or directory (line 1)"},
		{name: "directory", cfg: "inbound: {shared_secret_file: " + dir + "}",
			want: "inbound.shared_secret_file: " + dir + " is a directory; name the file that holds the shared secret (line 1)"},
		{name: "too large", cfg: "inbound: {shared_secret_file: " + large + "}",
			want: "inbound.shared_secret_file: " + large + " is larger than 64 KiB, too large for one secret (line 1)"},
		{name: "vault token file", cfg: fmt.Sprintf(vaultToken, empty),
			want: "vault.auth.token_file: " + empty + " is empty; put the Vault token in it (line 2)"},
		{name: "vault token file while vault is unused", cfg: "vault: {auth: {method: token, token_file: " + empty + "}}"},
		{name: "approle files", cfg: "token_store: {type: vault}\nvault: {auth: {method: approle, role_id_file: " + good + ", secret_id_file: " + spaces + "}}",
			want: "vault.auth.secret_id_file: " + spaces + " holds only white space; put the AppRole secret_id in it (line 2)"},
		{name: "kubernetes jwt outside a pod", cfg: "token_store: {type: vault}\nvault: {auth: {method: kubernetes, role: r, jwt_file: " + missing + "}}",
			want: "vault.auth.jwt_file: cannot read " + missing + ": no such file or directory (line 2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(tc.cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path, nil)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if got := c.Secrets.SharedSecret.Reveal(); got != tc.secret {
					t.Errorf("shared secret %q, want %q", got, tc.secret)
				}
				return
			}
			if c != nil {
				t.Error("Load returned a config with a problem")
			}
			if got := problems(err); len(got) != 1 || got[0] != path+": "+tc.want {
				t.Errorf("problems = %q\nwant %q", got, path+": "+tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "shared-secret-5d1e") {
				t.Error("the problem holds a secret")
			}
		})
	}
}

// TestLoadReportsSecretFilesWithOtherProblems: a bad secret file is listed
// with the config's other problems, in line order, in one go.
func TestLoadReportsSecretFilesWithOtherProblems(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("inbound: {shared_secret_file: "+empty+"}\nlog: {level: loud}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, nil)
	got := problems(err)
	if len(got) != 2 || !strings.Contains(got[0], "inbound.shared_secret_file: ") || !strings.Contains(got[1], "log.level: ") {
		t.Errorf("problems = %q", got)
	}
}

// TestDefaultJWTFileHint: the default service account token path, absent
// outside a pod, is explained.
func TestDefaultJWTFileHint(t *testing.T) {
	if _, err := os.Stat(vault.DefaultJWTFile); err == nil {
		t.Skip("running inside a pod")
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("token_store: {type: vault}\nvault: {auth: {method: kubernetes, role: r}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, nil)
	want := path + ": vault.auth.jwt_file: cannot read " + vault.DefaultJWTFile + ": no such file or directory; Kubernetes mounts it there only inside a pod"
	if got := problems(err); len(got) != 1 || got[0] != want {
		t.Errorf("problems = %q\nwant %q", got, want)
	}
}

// TestReadSecrets: ReadSecrets reads the files again, so a rotation is seen
// and a bad new content is reported.
func TestReadSecrets(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("inbound: {shared_secret_file: "+secret+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := c.ReadSecrets()
	if err != nil || s.SharedSecret.Reveal() != "second" || c.Secrets.SharedSecret.Reveal() != "first" {
		t.Errorf("ReadSecrets = %v, %v; in the config %v", s.SharedSecret.Reveal(), err, c.Secrets.SharedSecret.Reveal())
	}
	if err := os.WriteFile(secret, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadSecrets(); err == nil || !strings.Contains(err.Error(), "inbound.shared_secret_file: "+secret+" is empty") {
		t.Errorf("ReadSecrets of an empty file: %v", err)
	}
}
