package vault_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"github.com/hashicorp/vault/api"
)

// sidecarPolicy is what the sidecar needs on KV v2 at secret/.
const sidecarPolicy = `
path "secret/data/*"     { capabilities = ["create", "read", "update"] }
path "secret/metadata/*" { capabilities = ["read", "list", "delete"] }
`

// newLogger returns a debug logger into a buffer; at the end of the test the
// buffer must contain none of the secrets registered with noLeak.
func newLogger(t *testing.T) (*slog.Logger, *testsupport.SyncBuffer) {
	b := &testsupport.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client log:\n%s", b.String())
		}
	})
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// noLeak fails the test if any secret appears in text.
func noLeak(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("secret %.6s… leaked into: %s", s, text)
		}
	}
}

// setupPolicy writes the sidecar policy with the root client.
func setupPolicy(t *testing.T, root *api.Client) {
	t.Helper()
	if err := root.Sys().PutPolicy("sidecar", sidecarPolicy); err != nil {
		t.Fatal(err)
	}
}

// newToken creates a token with the sidecar policy.
func newToken(t *testing.T, root *api.Client, ttl string, renewable bool) string {
	t.Helper()
	sec, err := root.Auth().Token().Create(&api.TokenCreateRequest{
		Policies:  []string{"sidecar"},
		TTL:       ttl,
		Renewable: &renewable,
		NoParent:  true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return sec.Auth.ClientToken
}

// writeFile replaces path's content atomically.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newClient(t *testing.T, cfg vault.Config, getenv func(string) string, logger *slog.Logger) *vault.Client {
	t.Helper()
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	c, err := vault.New(context.Background(), cfg, getenv, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// putKV writes data at secret/<path> with the root client.
func putKV(t *testing.T, root *api.Client, path string, data map[string]any) int {
	t.Helper()
	s, err := root.KVv2("secret").Put(context.Background(), path, data)
	if err != nil {
		t.Fatal(err)
	}
	return s.VersionMetadata.Version
}

// readString reads one string field with the root client.
func readString(t *testing.T, root *api.Client, path, field string) string {
	t.Helper()
	sec, err := root.Logical().Read(path)
	if err != nil || sec == nil {
		t.Fatalf("read %s: %v", path, err)
	}
	s, _ := sec.Data[field].(string)
	return s
}

// writeString writes to path with the root client and returns one field of
// the answer.
func writeString(t *testing.T, root *api.Client, path, field string) string {
	t.Helper()
	sec, err := root.Logical().Write(path, nil)
	if err != nil || sec == nil {
		t.Fatalf("write %s: %v", path, err)
	}
	s, _ := sec.Data[field].(string)
	return s
}
