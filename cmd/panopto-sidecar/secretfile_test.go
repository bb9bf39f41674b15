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

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/proxy/panoptofake"
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

// TestReloadToBadSharedSecretFile: a config.yaml that names a secret file
// that cannot be read, or an empty one, is refused as a reload: the config
// and the secret in force stay, the generation does not move and
// /-/status says why. (Before, an unreadable file was installed as a
// refuse-everything secret and counted as applied; an empty one turned
// authentication off.)
func TestReloadToBadSharedSecretFile(t *testing.T) {
	const secret = "inbound-secret-reload-3f7a21"
	registerSecret(secret)
	dir := t.TempDir()
	addr := freeAddr(t)
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
