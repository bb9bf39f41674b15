package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

// TestSharedSecretFileMustHoldASecret: a shared secret file that is empty,
// white space only, missing, a dangling symlink or a directory is a config
// problem: check lists it under its key, serve refuses to start and says
// why. (Before, an empty file turned inbound authentication off.)
func TestSharedSecretFileMustHoldASecret(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "")
	spaces := filepath.Join(dir, "spaces")
	writeFile(t, spaces, " \n\t\n")
	missing := filepath.Join(dir, "missing")
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "..data", "secret"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"empty", empty, empty + " is empty; put the shared secret in it (a blank file would turn authentication off)"},
		{"white space only", spaces, spaces + " holds only white space; put the shared secret in it"},
		{"missing", missing, "cannot read " + missing + ": no such file or directory"},
		{"dangling symlink", dangling, "cannot read " + dangling + ": no such file or directory"},
		{"directory", dir, dir + " is a directory; name the file that holds the shared secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			writeFile(t, path, "listen: 127.0.0.1:0\ntoken_store: {type: file, path: "+filepath.Join(dir, "tok.json")+"}\n"+
				"inbound: {shared_secret_file: "+tc.file+"}\n")
			env := map[string]string{"PANOPTO_CLIENT_ID": testClientID, "PANOPTO_CLIENT_SECRET": testClientSecret}
			want := "inbound.shared_secret_file: " + tc.want

			out, _, code := runCLI(t, env, "check", "-offline", "-config", path)
			if code != 1 || !strings.Contains(out, want) {
				t.Errorf("check: exit %d, output:\n%s\nwant a line with %q", code, out, want)
			}
			_, stderr, code := runCLI(t, env, "serve", "-config", path)
			if code != 1 || !strings.Contains(stderr, want) {
				t.Errorf("serve: exit %d, stderr:\n%s\nwant a line with %q", code, stderr, want)
			}
		})
	}
}

// secretStatus asks /-/status with secret in the shared secret header ("" sends
// none) and returns the answer's code and the config part of the status.
func secretStatus(t testing.TB, base, secret string) (code, generation int, lastErr string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/-/status", nil)
	if secret != "" {
		req.Header.Set("X-Sidecar-Auth", secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Config struct {
			Generation      int    `json:"generation"`
			LastReloadError string `json:"last_reload_error"`
		} `json:"config"`
	}
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, st.Config.Generation, st.Config.LastReloadError
}

// TestSharedSecretRotation: the shared secret file's content is watched. A
// new secret takes effect within 2 s, without a restart or SIGHUP, and the
// old one is refused from then on; a blank new content is refused, the
// secret in force stays and /-/status says why; a good content after it
// applies and clears the error. Rotated by rewriting the file, and as
// Kubernetes does, by swapping the ..data symlink of a secret volume.
func TestSharedSecretRotation(t *testing.T) {
	t.Parallel()
	secrets := []string{"inbound-secret-one-7c2e90", "inbound-secret-two-41b8d3", "inbound-secret-three-9e05f6"}
	for _, s := range secrets {
		registerSecret(s)
	}
	for _, tc := range []struct {
		name string
		// setup makes the secret file in dir holding content; rotate puts
		// content in it.
		setup  func(t *testing.T, dir, content string) string
		rotate func(t *testing.T, dir, content string)
	}{
		{"rewrite", func(t *testing.T, dir, content string) string {
			f := filepath.Join(dir, "secret")
			writeFile(t, f, content)
			return f
		}, func(t *testing.T, dir, content string) {
			// A new file renamed over the old one, as most tools write.
			f := filepath.Join(dir, "secret")
			writeFile(t, f+".new", content)
			if err := os.Rename(f+".new", f); err != nil {
				t.Fatal(err)
			}
		}},
		{"kubernetes volume", func(t *testing.T, dir, content string) string {
			// secret -> ..data/secret, ..data -> ..v0
			kubeVersion(t, dir, "..v0", content)
			if err := os.Symlink("..v0", filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, "secret")
			if err := os.Symlink(filepath.Join("..data", "secret"), f); err != nil {
				t.Fatal(err)
			}
			return f
		}, func(t *testing.T, dir, content string) {
			v := kubeVersion(t, dir, "", content)
			tmp := filepath.Join(dir, "..data_tmp")
			if err := os.Symlink(v, tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			addr := holdAddr(t)
			pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}})
			secretDir := filepath.Join(dir, "secrets")
			if err := os.Mkdir(secretDir, 0o700); err != nil {
				t.Fatal(err)
			}
			file := tc.setup(t, secretDir, secrets[0]+"\n")
			sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir)+"inbound: {shared_secret_file: "+file+"}\n", nil)

			for _, s := range []string{"", "wrong-secret"} {
				if code, _, _ := secretStatus(t, sc.URL, s); code != 401 {
					t.Fatalf("/-/status with secret %q: %d, want 401", s, code)
				}
			}
			if code, gen, _ := secretStatus(t, sc.URL, secrets[0]); code != 200 || gen != 1 {
				t.Fatalf("/-/status with the secret: %d, generation %d", code, gen)
			}

			// 1. A new secret: in effect within 2 s, the old one refused.
			tc.rotate(t, secretDir, secrets[1])
			took := testsupport.WaitFor(t, 2*time.Second, "the new secret", func() bool {
				code, _, _ := secretStatus(t, sc.URL, secrets[1])
				return code == 200
			})
			t.Logf("rotation in effect after %v", took)
			if code, _, _ := secretStatus(t, sc.URL, secrets[0]); code != 401 {
				t.Errorf("the old secret after the rotation: %d, want 401", code)
			}
			_, gen, _ := secretStatus(t, sc.URL, secrets[1])
			if gen != 2 {
				t.Errorf("generation %d after the rotation, want 2", gen)
			}

			// 2. A blank content: refused, the secret in force stays.
			tc.rotate(t, secretDir, "\n  \n")
			testsupport.WaitFor(t, 5*time.Second, "the reload error", func() bool {
				_, _, e := secretStatus(t, sc.URL, secrets[1])
				return e != ""
			})
			code, gen, e := secretStatus(t, sc.URL, secrets[1])
			if code != 200 || gen != 2 || !strings.Contains(e, "inbound.shared_secret_file: "+file+" holds only white space") {
				t.Errorf("after a blank content: %d, generation %d, last_reload_error %q", code, gen, e)
			}
			if code, _, _ := secretStatus(t, sc.URL, ""); code != 401 {
				t.Errorf("no secret after a blank content: %d, want 401", code)
			}

			// 3. A good content again: applied, the error cleared.
			tc.rotate(t, secretDir, secrets[2])
			testsupport.WaitFor(t, 5*time.Second, "the third secret", func() bool {
				code, _, _ := secretStatus(t, sc.URL, secrets[2])
				return code == 200
			})
			if code, gen, e := secretStatus(t, sc.URL, secrets[2]); gen != 3 || e != "" {
				t.Errorf("after the third secret: %d, generation %d, last_reload_error %q", code, gen, e)
			}
			if code, _, _ := secretStatus(t, sc.URL, secrets[1]); code != 401 {
				t.Errorf("the second secret after the third: %d, want 401", code)
			}
			assertNoSecrets(t, secrets, map[string]string{"log": sc.LogsAtStop()})
		})
	}
}

// kubeVersion writes a secret volume's version directory holding content in
// the file secret, named name or a fresh name, and returns its name.
func kubeVersion(t *testing.T, dir, name, content string) string {
	t.Helper()
	if name == "" {
		d, err := os.MkdirTemp(dir, "..v")
		if err != nil {
			t.Fatal(err)
		}
		name = filepath.Base(d)
	} else if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, name, "secret"), content)
	return name
}

// TestReloadToBadSharedSecretFile: a config.yaml that names a secret file
// that cannot be read, or an empty one, is refused as a reload: the config
// and the secret in force stay, the generation does not move and
// /-/status says why. (Before, an unreadable file was installed as a
// refuse-everything secret and counted as applied; an empty one turned
// authentication off.)
func TestReloadToBadSharedSecretFile(t *testing.T) {
	t.Parallel()
	const secret = "inbound-secret-reload-3f7a21"
	registerSecret(secret)
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}})
	good := filepath.Join(dir, "secret")
	writeFile(t, good, secret)
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "")
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "gone"), dangling); err != nil {
		t.Fatal(err)
	}
	base := strings.NewReplacer("{{LISTEN}}", addr, "{{URL}}", "http://"+addr).Replace(baseConfig(pan.URL, dir))
	sc := startSidecar(t, dir, addr, base+"inbound: {shared_secret_file: "+good+"}\n", nil)

	for _, tc := range []struct{ file, want string }{
		{empty, "inbound.shared_secret_file: " + empty + " is empty"},
		{dangling, "inbound.shared_secret_file: cannot read " + dangling + ": no such file or directory"},
	} {
		writeFile(t, sc.Config+".new", base+"inbound: {shared_secret_file: "+tc.file+"}\n")
		if err := os.Rename(sc.Config+".new", sc.Config); err != nil {
			t.Fatal(err)
		}
		testsupport.WaitFor(t, 5*time.Second, "the reload error", func() bool {
			_, _, e := secretStatus(t, sc.URL, secret)
			return strings.Contains(e, tc.want)
		})
		if code, gen, _ := secretStatus(t, sc.URL, secret); code != 200 || gen != 1 {
			t.Errorf("%s: the secret in force answered %d, generation %d", tc.file, code, gen)
		}
		if code, _, _ := secretStatus(t, sc.URL, ""); code != 401 {
			t.Errorf("%s: no secret answered %d, want 401", tc.file, code)
		}
	}
	if m := fetchWith(t, sc.URL+"/metrics", secret); !strings.Contains(m, `panopto_sidecar_config_reloads_total{result="invalid"} 2`) {
		t.Errorf("metrics do not count two refused reloads")
	}
}

// fetchWith GETs url with the shared secret and returns the body.
func fetchWith(t testing.TB, url, secret string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-Sidecar-Auth", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestVaultSecretFilesChecked: while Vault is used, the files of its auth
// method are read with the config too: a blank one is listed by check
// -offline under its key, and serve says the same.
func TestVaultSecretFilesChecked(t *testing.T) {
	dir := t.TempDir()
	blank := filepath.Join(dir, "blank")
	writeFile(t, blank, "\n")
	token := filepath.Join(dir, "token")
	writeFile(t, token, "hvs.not-a-real-token-0c4b")
	for _, tc := range []struct{ name, auth, want string }{
		{"token", "{method: token, token_file: " + blank + "}",
			"vault.auth.token_file: " + blank + " holds only white space; put the Vault token in it"},
		{"approle", "{method: approle, role_id_file: " + token + ", secret_id_file: " + blank + "}",
			"vault.auth.secret_id_file: " + blank + " holds only white space; put the AppRole secret_id in it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			writeFile(t, path, "vault: {address: http://"+freeAddr(t)+", auth: "+tc.auth+"}\ncredentials: {source: vault}\n"+
				"token_store: {type: file, path: "+filepath.Join(dir, "tok.json")+"}\n")
			out, _, code := runCLI(t, nil, "check", "-offline", "-config", path)
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("check: exit %d, output:\n%s\nwant a line with %q", code, out, tc.want)
			}
			_, stderr, code := runCLI(t, nil, "serve", "-config", path)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("serve: exit %d, stderr:\n%s\nwant a line with %q", code, stderr, tc.want)
			}
		})
	}
}
