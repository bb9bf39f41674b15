package main

import (
	"context"
	"sync"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/doubtfire-lms/panopto-sidecar/proxy/oauth"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
)

// vaultState is the Vault client built from the vault: section, rebuilt when
// that section changes on reload.
type vaultState struct {
	mu     sync.Mutex
	cfg    config.Vault
	client *vault.Client
	creds  *vault.Credentials
	cancel context.CancelFunc
}

func vaultConfig(c config.Vault) vault.Config {
	return vault.Config{
		Address:       c.Address,
		Namespace:     c.Namespace,
		CACert:        c.CACert,
		TLSServerName: c.TLSServerName,
		Mount:         c.Mount,
		Auth: vault.Auth{
			Method:       c.Auth.Method,
			TokenFile:    c.Auth.TokenFile,
			RoleIDFile:   c.Auth.RoleIDFile,
			SecretIDFile: c.Auth.SecretIDFile,
			Role:         c.Auth.Role,
			JWTFile:      c.Auth.JWTFile,
			MountPath:    c.Auth.MountPath,
		},
	}
}

// vaultClient returns the client for cfg.Vault, creating it on first use.
func (s *sidecar) vaultClient(ctx context.Context, cfg *config.Config) (*vault.Client, error) {
	v := &s.extras.vault
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.client != nil {
		return v.client, nil
	}
	c, err := vault.New(ctx, vaultConfig(cfg.Vault), s.getenv, s.log)
	if err != nil {
		return nil, err // its errors start with "vault: " already
	}
	v.client, v.cfg = c, cfg.Vault
	return c, nil
}

func credentialsOptions(c config.Credentials) vault.CredentialsOptions {
	return vault.CredentialsOptions{
		Path:         c.Path,
		IDKey:        c.IDKey,
		SecretKey:    c.SecretKey,
		UsernameKey:  c.UsernameKey,
		PasswordKey:  c.PasswordKey,
		AppKeyKey:    c.AppKeyKey,
		PollInterval: c.PollInterval.D(),
	}
}

func (s *sidecar) vaultCredentials(ctx context.Context, cfg *config.Config) (oauth.CredentialSource, error) {
	c, err := s.vaultClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	creds := vault.NewCredentials(c, credentialsOptions(cfg.Credentials), s.log)
	cctx, cancel := context.WithCancel(ctx)
	creds.Start(cctx)
	v := &s.extras.vault
	v.mu.Lock()
	if v.cancel != nil {
		v.cancel()
	}
	v.creds, v.cancel = creds, cancel
	v.mu.Unlock()
	return creds, nil
}

func (s *sidecar) vaultStore(ctx context.Context, cfg *config.Config) (oauth.Store, error) {
	c, err := s.vaultClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return vault.NewStore(c, cfg.TokenStore.Path), nil
}

func (v *vaultState) status() map[string]any {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.client == nil {
		return nil
	}
	out := map[string]any{"client": v.client.Status()}
	if v.creds != nil {
		out["credentials"] = v.creds.Status()
	}
	return out
}

func (v *vaultState) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cancel != nil {
		v.cancel()
	}
	if v.client != nil {
		v.client.Close()
	}
}
