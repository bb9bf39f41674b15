package vault_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
	"github.com/hashicorp/vault/api"
)

// maxOutageCall bounds how long a call may take while Vault is down.
const maxOutageCall = 5 * time.Second

// appRoleFiles enables approle on srv and writes role_id and secret_id files.
func appRoleFiles(t *testing.T, root *api.Client, ttl string) (roleFile, secretFile string) {
	t.Helper()
	if err := root.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/approle/role/sidecar", map[string]any{"token_policies": "sidecar", "token_ttl": ttl}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	roleFile, secretFile = filepath.Join(dir, "role_id"), filepath.Join(dir, "secret_id")
	writeFile(t, roleFile, readString(t, root, "auth/approle/role/sidecar/role-id", "role_id"))
	writeFile(t, secretFile, writeString(t, root, "auth/approle/role/sidecar/secret-id", "secret_id"))
	return roleFile, secretFile
}

// timed runs fn and fails the test if it took longer than maxOutageCall.
func timed(t *testing.T, what string, fn func()) {
	t.Helper()
	start := time.Now()
	fn()
	if d := time.Since(start); d > maxOutageCall {
		t.Errorf("%s took %v while Vault was unavailable", what, d)
	}
}

func TestOutageStopStart(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartPersistent(t)
	root := srv.Client(t)
	setupPolicy(t, root)
	roleFile, secretFile := appRoleFiles(t, root, "1h")
	putKV(t, root, "panopto/client", map[string]any{"client_id": "id-1", "client_secret": "secret-1"})

	c := newClient(t, vault.Config{Address: srv.Addr(), Auth: vault.Auth{Method: "approle", RoleIDFile: roleFile, SecretIDFile: secretFile}}, nil, nil)
	testsupport.WaitFor(t, 10*time.Second, "login", func() bool { return c.Status().Logins == 1 })
	creds := vault.NewCredentials(c, vault.CredentialsOptions{Path: "panopto/client", PollInterval: 200 * time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	polled := make(chan struct{})
	go func() { creds.Run(ctx); close(polled) }()
	defer func() { cancel(); <-polled }()
	testsupport.WaitFor(t, 10*time.Second, "credentials read", func() bool { return creds.Status().Version != "" })
	s := vault.NewStore(c, "panopto/token")
	v, err := s.CompareAndSwap(ctxT(t), "", 0, token.Record{Dropped: "before"})
	if err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	timed(t, "Load", func() {
		if _, _, err := s.Load(ctxT(t), ""); !errors.Is(err, vault.ErrUnavailable) {
			t.Errorf("Load with Vault down: %v, want ErrUnavailable", err)
		}
	})
	timed(t, "CompareAndSwap", func() {
		_, err := s.CompareAndSwap(ctxT(t), "", v, token.Record{Dropped: "during"})
		if !errors.Is(err, vault.ErrUnavailable) || errors.Is(err, token.ErrConflict) {
			t.Errorf("CAS with Vault down: %v", err)
		}
	})
	timed(t, "Reread", func() {
		if err := creds.Reread(ctxT(t)); !errors.Is(err, vault.ErrUnavailable) {
			t.Errorf("Reread with Vault down: %v", err)
		}
	})
	got, err := creds.Credentials(ctxT(t))
	if err != nil || got.ID != "id-1" || got.Secret.Reveal() != "secret-1" {
		t.Errorf("held credentials lost: %+v, %v", got, err)
	}
	if st := c.Status(); st.Reachable || st.LastError == "" {
		t.Errorf("Status with Vault down = %+v", st)
	}
	if creds.Status().LastError == "" {
		t.Error("credentials status shows no error")
	}

	srv.Start()
	testsupport.WaitFor(t, 20*time.Second, "Load after restart", func() bool {
		_, _, err := s.Load(ctxT(t), "")
		return err == nil
	})
	rec, lv, err := s.Load(ctxT(t), "")
	if err != nil || lv != v || rec.Dropped != "before" {
		t.Fatalf("after restart: %+v at %d, %v", rec, lv, err)
	}
	if _, err := s.CompareAndSwap(ctxT(t), "", v, token.Record{Dropped: "after"}); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); !st.Reachable || !st.Authenticated {
		t.Errorf("Status after restart = %+v", st)
	}
	putKV(t, root, "panopto/client", map[string]any{"client_id": "id-2", "client_secret": "secret-2"})
	testsupport.WaitFor(t, 10*time.Second, "credentials rotated after restart", func() bool {
		got, _ := creds.Credentials(ctxT(t))
		return got.ID == "id-2"
	})
}

func TestOutageAtStartup(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartPersistent(t)
	root := srv.Client(t)
	setupPolicy(t, root)
	roleFile, secretFile := appRoleFiles(t, root, "1h")
	srv.Stop()

	c := newClient(t, vault.Config{Address: srv.Addr(), Auth: vault.Auth{Method: "approle", RoleIDFile: roleFile, SecretIDFile: secretFile}}, nil, nil)
	testsupport.WaitFor(t, 10*time.Second, "failed login recorded", func() bool { return c.Status().LastError != "" })
	if st := c.Status(); st.Reachable || st.Authenticated || st.Logins != 0 {
		t.Fatalf("Status with Vault down at start = %+v", st)
	}
	srv.Start()
	testsupport.WaitFor(t, 30*time.Second, "login once Vault is up", func() bool { return c.Status().Authenticated })
	if _, err := vault.NewStore(c, "panopto/token").CompareAndSwap(ctxT(t), "", 0, token.Record{}); err != nil {
		t.Fatal(err)
	}
}

func TestOutageSealUnseal(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartPersistent(t)
	root := srv.Client(t)
	setupPolicy(t, root)
	tok := newToken(t, root, "1h", true)
	putKV(t, root, "panopto/client", map[string]any{"client_id": "id-1", "client_secret": "secret-1"})
	c := newClient(t, vault.Config{Address: srv.Addr()}, func(k string) string {
		return map[string]string{"VAULT_TOKEN": tok}[k]
	}, nil)
	creds := vault.NewCredentials(c, vault.CredentialsOptions{Path: "panopto/client"}, nil)
	if _, err := creds.Credentials(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	s := vault.NewStore(c, "panopto/token")
	v, err := s.CompareAndSwap(ctxT(t), "", 0, token.Record{Dropped: "before"})
	if err != nil {
		t.Fatal(err)
	}

	srv.Seal()
	timed(t, "Load", func() {
		_, _, err := s.Load(ctxT(t), "")
		if !errors.Is(err, vault.ErrSealed) || !errors.Is(err, vault.ErrUnavailable) {
			t.Errorf("Load while sealed: %v, want ErrSealed", err)
		}
	})
	if st := c.Status(); !st.Sealed || !st.Reachable {
		t.Errorf("Status while sealed = %+v", st)
	}
	timed(t, "Reread", func() {
		if err := creds.Reread(ctxT(t)); err == nil {
			t.Error("Reread while sealed succeeded")
		}
	})
	if got, err := creds.Credentials(ctxT(t)); err != nil || got.ID != "id-1" {
		t.Errorf("held credentials lost: %+v, %v", got, err)
	}

	srv.Unseal()
	rec, lv, err := s.Load(ctxT(t), "")
	if err != nil || lv != v || rec.Dropped != "before" {
		t.Fatalf("after unseal: %+v at %d, %v", rec, lv, err)
	}
	if st := c.Status(); st.Sealed || !st.Reachable {
		t.Errorf("Status after unseal = %+v", st)
	}
}
