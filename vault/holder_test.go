package vault

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
)

// TestHolderWithoutVault: an empty holder reports Vault unused; a client
// that cannot reach Vault reports down; Close empties the holder.
func TestHolderWithoutVault(t *testing.T) {
	h := NewHolder(func(k string) string { return map[string]string{"VAULT_TOKEN": "hvs.unreachable-token"}[k] }, nil)
	if up, st := h.Up(), h.Status(); up != -1 || st != nil {
		t.Fatalf("empty holder: Up = %v, Status = %+v", up, st)
	}
	addr := closedAddr(t)
	c, err := h.Client(context.Background(), Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := h.Client(context.Background(), Config{Address: "http://127.0.0.1:1"}); again != c {
		t.Error("Client built a second client while one is held")
	}
	if up := h.Up(); up != 0 {
		t.Errorf("unreachable: Up = %v, want 0", up)
	}
	if st := h.Status(); st == nil || st.Client.Address != addr || st.Credentials != nil {
		t.Errorf("Status = %+v", st)
	}
	if _, err := h.Swap(context.Background(), Config{Address: addr, Auth: Auth{Method: "bogus"}}, CredentialsOptions{}); err == nil {
		t.Error("Swap with a bad config succeeded")
	}
	if got, _ := h.Client(context.Background(), Config{}); got != c {
		t.Error("a failed Swap did not keep the client held")
	}
	h.Close()
	if up, st := h.Up(), h.Status(); up != -1 || st != nil {
		t.Errorf("after Close: Up = %v, Status = %+v", up, st)
	}
}

// TestHolder: credentials through the held client, a reload that swaps the
// client (kept when the new one cannot be built), status and the gauge.
func TestHolder(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartDev(t)
	root := srv.Client(t)
	kv := root.KVv2("secret")
	for path, id := range map[string]string{"panopto/client": "id-a", "panopto/other": "id-b"} {
		if _, err := kv.Put(context.Background(), path, map[string]any{"client_id": id, "client_secret": "secret-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	getenv := func(k string) string { return map[string]string{"VAULT_TOKEN": srv.RootToken()}[k] }
	h := NewHolder(getenv, nil)
	t.Cleanup(h.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := Config{Address: srv.Addr()}

	creds, err := h.Credentials(ctx, cfg, CredentialsOptions{Path: "panopto/client", PollInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := creds.Credentials(ctx); err != nil || got.ID != "id-a" {
		t.Fatalf("Credentials = %+v, %v", got, err)
	}
	first, _ := h.Client(ctx, cfg)
	testsupport.WaitFor(t, 10*time.Second, "vault up", func() bool { return h.Up() == 1 })
	st := h.Status()
	if st == nil || st.Credentials == nil || st.Credentials.Path != "panopto/client" || st.Credentials.Version != "1" {
		t.Fatalf("Status = %+v", st)
	}
	b, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(b), `"client":{"address":"`+srv.Addr()) || !strings.Contains(string(b), `"credentials":{"path":"panopto/client"`) {
		t.Errorf("status JSON = %s, %v", b, err)
	}
	if strings.Contains(string(b), srv.RootToken()+`"`) || strings.Contains(string(b), "secret-id-a") {
		t.Errorf("status shows a secret: %s", b)
	}

	// A reload whose client cannot be built keeps the one in force.
	bad := Config{Address: srv.Addr(), Auth: Auth{Method: MethodToken, TokenFile: filepath.Join(t.TempDir(), "missing")}}
	if _, err := h.Swap(ctx, bad, CredentialsOptions{Path: "panopto/other"}); err == nil {
		t.Fatal("Swap with an unreadable token_file succeeded")
	}
	if c, _ := h.Client(ctx, cfg); c != first || h.Up() != 1 || h.Status().Credentials.Path != "panopto/client" {
		t.Errorf("a failed Swap changed what is held: %+v", h.Status())
	}

	// A good one replaces client and credentials; the old ones are closed.
	next, err := h.Swap(ctx, cfg, CredentialsOptions{Path: "panopto/other"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := next.Credentials(ctx); err != nil || got.ID != "id-b" {
		t.Fatalf("after Swap: %+v, %v", got, err)
	}
	if c, _ := h.Client(ctx, cfg); c == first {
		t.Error("Swap kept the old client")
	}
	if st := h.Status(); st.Credentials == nil || st.Credentials.Path != "panopto/other" {
		t.Errorf("after Swap: Status = %+v", st)
	}
	testsupport.WaitFor(t, 10*time.Second, "vault up on the new client", func() bool { return h.Up() == 1 })

	// Credentials on the held client replace the held credentials.
	if _, err := h.Credentials(ctx, cfg, CredentialsOptions{Path: "panopto/client"}); err != nil {
		t.Fatal(err)
	}
	if st := h.Status(); st.Credentials == nil || st.Credentials.Path != "panopto/client" {
		t.Errorf("after Credentials: Status = %+v", st)
	}
	h.Close()
	if h.Up() != -1 || h.Status() != nil {
		t.Error("Close left a client held")
	}
}
