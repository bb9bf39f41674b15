package main

import (
	"context"
	"fmt"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
)

// Where the client credentials and the tokens come from: the environment or
// Vault, a file or Vault. Every Vault use goes through s.vault, one client.

// credentialSource returns the source cfg names. newVault builds a new Vault
// client from cfg.Vault in place of the one held (a reload that changed the
// vault: section), which stays when the new one cannot be built.
func (s *sidecar) credentialSource(ctx context.Context, cfg *config.Config, newVault bool) (token.CredentialSource, error) {
	switch cfg.Credentials.Source {
	case config.CredentialsVault:
		get := s.vault.Credentials
		if newVault {
			get = s.vault.Swap
		}
		c, err := get(ctx, vaultConfig(cfg.Vault), credentialsOptions(cfg.Credentials))
		if err != nil {
			return nil, err // the vault package's errors start with "vault: "
		}
		return c, nil
	default:
		c, err := token.EnvCredentials(s.getenv)
		if err != nil {
			return nil, fmt.Errorf("credentials.source env: %w", err)
		}
		if newVault {
			// Nothing reads through the old client any more (a token
			// store in Vault keeps the vault: section until a restart).
			s.vault.Close()
		}
		return c, nil
	}
}

func (s *sidecar) tokenStore(ctx context.Context, cfg *config.Config) (token.Store, error) {
	switch cfg.TokenStore.Type {
	case config.TokenStoreVault:
		c, err := s.vault.Client(ctx, vaultConfig(cfg.Vault))
		if err != nil {
			return nil, err // the vault package's errors start with "vault: "
		}
		return vault.NewStore(c, cfg.TokenStore.Path), nil
	default:
		fs := token.NewFileStore(cfg.TokenStore.Path)
		// Read it now: a corrupt file stops the start with a clear error
		// instead of being replaced by a new login.
		if _, _, err := fs.Load(ctx, ""); err != nil {
			return nil, err
		}
		return fs, nil
	}
}

func vaultConfig(c config.Vault) vault.Config {
	return vault.Config{
		Address:       c.Address,
		Namespace:     c.Namespace,
		CACert:        c.CACert,
		TLSServerName: c.TLSServerName,
		Mount:         c.Mount,
		Auth: vault.Auth{
			Method:       string(c.Auth.Method),
			TokenFile:    c.Auth.TokenFile,
			RoleIDFile:   c.Auth.RoleIDFile,
			SecretIDFile: c.Auth.SecretIDFile,
			Role:         c.Auth.Role,
			JWTFile:      c.Auth.JWTFile,
			MountPath:    c.Auth.MountPath,
		},
	}
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

		WebhookSecretKey: c.WebhookSecretKey,
	}
}
