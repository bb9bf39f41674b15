package vault_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
)

func TestCredentials(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartDev(t)
	root := srv.Client(t)
	setupPolicy(t, root)
	token := newToken(t, root, "1h", true)
	v1 := putKV(t, root, "panopto/client", map[string]any{
		"client_id": "id-1", "client_secret": "secret-one", "username": "svc", "password": "pw-one", "app_key": "appkey-one",
	})
	logger, logs := newLogger(t)
	c := newClient(t, vault.Config{Address: srv.Addr()}, func(k string) string {
		return map[string]string{"VAULT_TOKEN": token}[k]
	}, logger)
	creds := vault.NewCredentials(c, vault.CredentialsOptions{Path: "panopto/client", PollInterval: 100 * time.Millisecond}, logger)

	// First use reads at once, with nothing started.
	got, err := creds.Credentials(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "id-1" || got.Secret.Reveal() != "secret-one" || got.Username != "svc" ||
		got.Password.Reveal() != "pw-one" || got.AppKey.Reveal() != "appkey-one" ||
		got.Source != "vault" || got.Version != fmt.Sprint(v1) {
		t.Fatalf("Credentials = %+v", got)
	}

	// Rotate while the poller runs: picked up through current_version.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	polled := make(chan struct{})
	go func() { creds.Run(ctx); close(polled) }()
	defer func() { cancel(); <-polled }()
	v2 := putKV(t, root, "panopto/client", map[string]any{"client_id": "id-2", "client_secret": "secret-two"})
	testsupport.WaitFor(t, 10*time.Second, "rotated credentials", func() bool {
		got, err := creds.Credentials(ctxT(t))
		return err == nil && got.ID == "id-2" && got.Secret.Reveal() == "secret-two" && got.Version == fmt.Sprint(v2)
	})
	if got, _ := creds.Credentials(ctxT(t)); got.Username != "" || !got.Password.IsZero() {
		t.Errorf("optional keys from the old version kept: %+v", got)
	}

	// A version missing the secret key is refused; the last good stays.
	putKV(t, root, "panopto/client", map[string]any{"client_id": "id-3"})
	testsupport.WaitFor(t, 10*time.Second, "error for the missing key", func() bool {
		return strings.Contains(creds.Status().LastError, `missing key "client_secret"`)
	})
	got, err = creds.Credentials(ctxT(t))
	if err != nil || got.ID != "id-2" || got.Version != fmt.Sprint(v2) {
		t.Fatalf("after a bad version: %+v, %v", got, err)
	}
	err = creds.Reread(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), `missing key "client_secret"`) {
		t.Errorf("Reread of a bad version: %v", err)
	}
	if strings.Contains(err.Error(), "id-3") {
		t.Errorf("error shows a value: %v", err)
	}

	// Reread picks a fixed version up at once (the poller is stopped first).
	cancel()
	v4 := putKV(t, root, "panopto/client", map[string]any{"client_id": "id-4", "client_secret": "secret-four"})
	if err := creds.Reread(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got, _ = creds.Credentials(ctxT(t))
	st := creds.Status()
	if got.ID != "id-4" || st.Version != fmt.Sprint(v4) || st.LastError != "" || st.Path != "panopto/client" || time.Since(st.LastReadAt) > time.Minute {
		t.Errorf("after Reread: %+v, status %+v", got, st)
	}
	noLeak(t, logs.String()+fmt.Sprintf("%v %+v", got, st), "secret-one", "secret-two", "secret-four", "pw-one", "appkey-one", token)
}

func TestCredentialsCustomKeysAndMissingSecret(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartDev(t)
	root := srv.Client(t)
	putKV(t, root, "custom", map[string]any{"id": "the-id", "key": "the-secret"})
	c := newClient(t, vault.Config{Address: srv.Addr()}, func(k string) string {
		return map[string]string{"VAULT_TOKEN": srv.RootToken()}[k]
	}, nil)

	creds := vault.NewCredentials(c, vault.CredentialsOptions{Path: "custom", IDKey: "id", SecretKey: "key"}, nil)
	got, err := creds.Credentials(ctxT(t))
	if err != nil || got.ID != "the-id" || got.Secret.Reveal() != "the-secret" {
		t.Fatalf("Credentials = %+v, %v", got, err)
	}

	none := vault.NewCredentials(c, vault.CredentialsOptions{Path: "nothing/here"}, nil)
	if _, err := none.Credentials(ctxT(t)); err == nil || !strings.Contains(err.Error(), "nothing/here") {
		t.Errorf("missing secret: %v", err)
	}
	if none.Status().LastError == "" {
		t.Error("missing secret not recorded in Status")
	}
}

// TestWebhookSecret: the webhook signing secret comes from its own key of
// the credentials path; a version without it says which key is missing
// (and not the values), while the client credentials stay usable.
func TestWebhookSecret(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartDev(t)
	root := srv.Client(t)
	putKV(t, root, "panopto/client", map[string]any{"client_id": "id-1", "client_secret": "secret-one"})
	c := newClient(t, vault.Config{Address: srv.Addr()}, func(k string) string {
		return map[string]string{"VAULT_TOKEN": srv.RootToken()}[k]
	}, nil)
	creds := vault.NewCredentials(c, vault.CredentialsOptions{Path: "panopto/client", WebhookSecretKey: "hook"}, nil)
	_, err := creds.WebhookSecret(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), `missing key "hook"`) || strings.Contains(err.Error(), "secret-one") {
		t.Fatalf("no webhook key: %v", err)
	}
	if got, err := creds.Credentials(ctxT(t)); err != nil || got.ID != "id-1" {
		t.Fatalf("client credentials without a webhook key: %+v, %v", got, err)
	}
	putKV(t, root, "panopto/client", map[string]any{"client_id": "id-1", "client_secret": "secret-one", "hook": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
	// Read at each use: the new version is seen without a poller running.
	testsupport.WaitFor(t, 10*time.Second, "the webhook secret", func() bool {
		s, err := creds.WebhookSecret(ctxT(t))
		return err == nil && s.Reveal() == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	})
}
