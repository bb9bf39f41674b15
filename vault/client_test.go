package vault_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
	"github.com/hashicorp/vault/api"
)

func TestTokenFromEnv(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartDev(t)
	root := srv.Client(t)
	setupPolicy(t, root)
	tok := newToken(t, root, "1h", true)
	logger, logs := newLogger(t)
	getenv := func(k string) string {
		return map[string]string{"VAULT_ADDR": srv.Addr(), "VAULT_TOKEN": tok}[k]
	}
	c := newClient(t, vault.Config{}, getenv, logger)

	s := vault.NewStore(c, "panopto/token")
	if _, err := s.CompareAndSwap(ctxT(t), "", 0, token.Record{Dropped: "logout"}); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "token looked up", func() bool { return c.Status().Logins == 1 })
	st := c.Status()
	if !st.Authenticated || !st.Reachable || st.Sealed || st.Method != "token" || st.Address != srv.Addr() {
		t.Errorf("Status = %+v", st)
	}
	if until := time.Until(st.TokenExpiresAt); until < 50*time.Minute || until > time.Hour+time.Minute {
		t.Errorf("TokenExpiresAt in %v, want about 1h", until)
	}
	noLeak(t, logs.String(), tok)
	noLeak(t, fmt.Sprintf("%+v", st), tok)
}

func TestTokenFileChanges(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartDev(t)
	root := srv.Client(t)
	setupPolicy(t, root)
	tokenA := newToken(t, root, "1h", true)
	file := filepath.Join(t.TempDir(), "token")
	writeFile(t, file, tokenA+"\n")
	logger, logs := newLogger(t)
	c := newClient(t, vault.Config{Address: srv.Addr(), Auth: vault.Auth{Method: "token", TokenFile: file}}, nil, logger)
	s := vault.NewStore(c, "panopto/token")
	v, err := s.CompareAndSwap(ctxT(t), "", 0, token.Record{Dropped: "a"})
	if err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "first token looked up", func() bool { return c.Status().Logins == 1 })

	// Replace the token and revoke the old one: the next call uses the new
	// token without a restart.
	tokenB := newToken(t, root, "1h", true)
	writeFile(t, file, tokenB+"\n")
	if err := root.Auth().Token().RevokeTree(tokenA); err != nil {
		t.Fatal(err)
	}
	if _, err = s.CompareAndSwap(ctxT(t), "", v, token.Record{Dropped: "b"}); err != nil {
		t.Fatalf("call after the token file changed: %v", err)
	}
	testsupport.WaitFor(t, 10*time.Second, "second token looked up", func() bool { return c.Status().Logins == 2 })

	// A non-renewable token that expires: the client says so and waits for
	// a new token in the file.
	short := newToken(t, root, "2s", false)
	writeFile(t, file, short)
	testsupport.WaitFor(t, 10*time.Second, "short token in use", func() bool { return c.Status().Logins == 3 })
	testsupport.WaitFor(t, 10*time.Second, "short token expired", func() bool { return !c.Status().Authenticated })
	if _, _, err := s.Load(ctxT(t), ""); err == nil {
		t.Error("Load with an expired token succeeded")
	}
	if !strings.Contains(logs.String(), "vault token expired") {
		t.Errorf("no clear log line about the expired token:\n%s", logs.String())
	}
	tokenC := newToken(t, root, "1h", true)
	writeFile(t, file, tokenC)
	testsupport.WaitFor(t, 10*time.Second, "new token after expiry", func() bool { return c.Status().Authenticated })
	rec, _, err := s.Load(ctxT(t), "")
	if err != nil || rec.Dropped != "b" {
		t.Fatalf("Load = %+v, %v", rec, err)
	}
	noLeak(t, logs.String(), tokenA, tokenB, short, tokenC)
}

func TestAppRoleRenewAndRelogin(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartDev(t)
	root := srv.Client(t)
	setupPolicy(t, root)
	if err := root.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/approle/role/sidecar", map[string]any{
		"token_policies": "sidecar", "token_ttl": "2s", "token_max_ttl": "4s",
	}); err != nil {
		t.Fatal(err)
	}
	roleID := readString(t, root, "auth/approle/role/sidecar/role-id", "role_id")
	secretID1 := writeString(t, root, "auth/approle/role/sidecar/secret-id", "secret_id")
	dir := t.TempDir()
	roleFile, secretFile := filepath.Join(dir, "role_id"), filepath.Join(dir, "secret_id")
	writeFile(t, roleFile, roleID+"\n")
	writeFile(t, secretFile, secretID1+"\n")

	logger, logs := newLogger(t)
	c := newClient(t, vault.Config{Address: srv.Addr(), Auth: vault.Auth{Method: "approle", RoleIDFile: roleFile, SecretIDFile: secretFile}}, nil, logger)
	s := vault.NewStore(c, "panopto/token")
	testsupport.WaitFor(t, 10*time.Second, "approle login", func() bool { return c.Status().Logins == 1 })
	if _, err := s.CompareAndSwap(ctxT(t), "", 0, token.Record{Dropped: "x"}); err != nil {
		t.Fatal(err)
	}

	// The 2 s token is renewed up to its 4 s maximum, then replaced by a new
	// login; calls keep working throughout.
	deadline := time.Now().Add(20 * time.Second)
	for c.Status().Logins < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no second login; status %+v", c.Status())
		}
		if _, _, err := s.Load(ctxT(t), ""); err != nil {
			t.Fatalf("Load during renewal: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := c.Status(); st.Renewals < 1 || !st.Authenticated {
		t.Errorf("after the max TTL: %+v, want renewals and authenticated", st)
	}

	// A new secret_id in the file is used at the next login; the old one is
	// destroyed, so a login with it would fail.
	secretID2 := writeString(t, root, "auth/approle/role/sidecar/secret-id", "secret_id")
	writeFile(t, secretFile, secretID2)
	if _, err := root.Logical().Write("auth/approle/role/sidecar/secret-id/destroy", map[string]any{"secret_id": secretID1}); err != nil {
		t.Fatal(err)
	}
	n := c.Status().Logins
	testsupport.WaitFor(t, 15*time.Second, "login with the new secret_id", func() bool { return c.Status().Logins > n })
	if _, _, err := s.Load(ctxT(t), ""); err != nil {
		t.Fatalf("Load after re-login: %v", err)
	}
	noLeak(t, logs.String(), roleID, secretID1, secretID2)
	noLeak(t, c.Status().LastError, roleID, secretID1, secretID2)
}

func TestAppRoleBadSecretID(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartDev(t)
	root := srv.Client(t)
	if err := root.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/approle/role/sidecar", map[string]any{"token_policies": "sidecar"}); err != nil {
		t.Fatal(err)
	}
	roleID := readString(t, root, "auth/approle/role/sidecar/role-id", "role_id")
	dir := t.TempDir()
	roleFile, secretFile := filepath.Join(dir, "role_id"), filepath.Join(dir, "secret_id")
	writeFile(t, roleFile, roleID)
	const wrong = "00000000-1111-2222-3333-444444444444"
	writeFile(t, secretFile, wrong)
	logger, logs := newLogger(t)
	c := newClient(t, vault.Config{Address: srv.Addr(), Auth: vault.Auth{Method: "approle", RoleIDFile: roleFile, SecretIDFile: secretFile}}, nil, logger)
	testsupport.WaitFor(t, 10*time.Second, "login failure recorded", func() bool { return c.Status().LastError != "" })
	st := c.Status()
	if st.Authenticated || st.Logins != 0 || !st.Reachable {
		t.Errorf("Status = %+v", st)
	}
	if !strings.Contains(st.LastError, "approle login") {
		t.Errorf("LastError = %q", st.LastError)
	}
	noLeak(t, logs.String()+st.LastError, roleID, wrong)
	if _, err := os.Stat(secretFile); err != nil {
		t.Fatal(err)
	}
}

// TestCloseWaitsForTokenRenewal: a renewable token is kept alive by the
// library's lifetime watcher on a goroutine of its own; once Close has
// returned, that goroutine has ended too. Not parallel: no other test's
// watcher may run beside it.
func TestCloseWaitsForTokenRenewal(t *testing.T) {
	srv := vaulttest.StartDev(t)
	root := srv.Client(t)
	setupPolicy(t, root)
	for range 5 {
		tok := newToken(t, root, "1h", true)
		getenv := func(k string) string {
			return map[string]string{"VAULT_ADDR": srv.Addr(), "VAULT_TOKEN": tok}[k]
		}
		logger, _ := newLogger(t)
		c := newClient(t, vault.Config{}, getenv, logger)
		testsupport.WaitFor(t, 10*time.Second, "token looked up", func() bool { return c.Status().Logins == 1 })
		testsupport.WaitFor(t, 10*time.Second, "watcher running", func() bool { return watcherFrames() > 0 })
		c.Close()
		if n := watcherFrames(); n != 0 {
			t.Fatalf("%d lifetime watcher goroutines still running after Close", n)
		}
	}
}

// watcherFrames counts the goroutines inside the Vault library's lifetime
// watcher.
func watcherFrames() int {
	buf := make([]byte, 1<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "(*LifetimeWatcher)") {
			n++
		}
	}
	return n
}
