package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
)

// vaultCheckTimeout bounds check's Vault login and reads.
const vaultCheckTimeout = 15 * time.Second

// check validates the config and what serve needs besides it: the files it
// names, the environment, the token file's directory and, unless offline,
// a login to Vault. It prints every problem and fails if there is any.
func check(ctx context.Context, path string, offline bool, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.Load(path, getenv)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stdout, "%s: not found\n", path)
		return exitStatus{1, err}
	}
	if err != nil {
		fmt.Fprintf(stdout, "%s: invalid\n", path)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stdout, "  %s\n", line)
		}
		return exitStatus{1, fmt.Errorf("%s has problems", path)}
	}
	problems := checkFiles(cfg)
	problems = append(problems, checkEnv(cfg, getenv)...)
	problems = append(problems, checkTokenFile(ctx, cfg)...)
	if !offline && cfg.NeedsVault() && !anyPrefixed(problems, "vault.") {
		problems = append(problems, checkVault(ctx, cfg, getenv)...)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stdout, "%s: valid, but serve would not start as configured:\n", path)
		for _, p := range problems {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
		return exitStatus{1, fmt.Errorf("%s has problems", path)}
	}
	vaultNote := ""
	if cfg.NeedsVault() {
		vaultNote = ", vault " + cfg.Vault.Address
		if offline {
			vaultNote += " not contacted (-offline)"
		} else {
			vaultNote += " logged in"
		}
	}
	fmt.Fprintf(stdout, "%s: ok (upstream %s, listen %s, token store %s, credentials %s%s)\n",
		path, cfg.Upstream, cfg.Listen, cfg.TokenStore.Type, cfg.Credentials.Source, vaultNote)
	if identityCheckOff(cfg) {
		fmt.Fprintf(stdout, "  warning: %s\n", identityUnchecked)
	}
	return nil
}

func anyPrefixed(problems []string, prefix string) bool {
	for _, p := range problems {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// checkFiles opens the certificate files the config names, as serve would,
// so check catches a missing one before a deployment does. (config.Load
// has read the files holding secrets.)
func checkFiles(cfg *config.Config) []string {
	var out []string
	pemFile := func(key, path string) {
		if path == "" {
			return
		}
		b, err := os.ReadFile(path)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", key, err))
			return
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			out = append(out, fmt.Sprintf("%s: %s holds no PEM certificate", key, path))
		}
	}
	if cfg.TLS.Mode == config.TLSFiles {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			out = append(out, fmt.Sprintf("tls.cert_file, tls.key_file: %v", err))
		}
	}
	if cfg.TLS.Mode == config.TLSACME {
		for i, f := range cfg.TLS.ACME.CARoots {
			pemFile(fmt.Sprintf("tls.acme.ca_roots[%d]", i), f)
		}
	}
	pemFile("upstream_ca_file", cfg.UpstreamCAFile)
	pemFile("inbound.client_ca_file", cfg.Inbound.ClientCAFile)
	if cfg.NeedsVault() {
		pemFile("vault.ca_cert", cfg.Vault.CACert)
	}
	return out
}

// checkEnv reports the environment variables serve reads that are not set.
func checkEnv(cfg *config.Config, getenv func(string) string) []string {
	var out []string
	need := func(name, why string) {
		if strings.TrimSpace(getenv(name)) == "" {
			out = append(out, fmt.Sprintf("environment: %s is not set (%s)", name, why))
		}
	}
	if cfg.Credentials.Source == config.CredentialsEnv {
		need("PANOPTO_CLIENT_ID", "credentials.source is env")
		need("PANOPTO_CLIENT_SECRET", "credentials.source is env")
		if cfg.OAuth.Grant == config.GrantPassword {
			need("PANOPTO_USERNAME", "oauth.grant is password and credentials.source is env")
			need("PANOPTO_PASSWORD", "oauth.grant is password and credentials.source is env")
		}
		if cfg.Accounts.Mode == config.AccountsIdP {
			need("PANOPTO_APP_KEY", "accounts.mode is idp and credentials.source is env")
		}
	}
	if cfg.NeedsVault() && cfg.Vault.Auth.Method == config.VaultAuthToken && cfg.Vault.Auth.TokenFile == "" {
		if strings.TrimSpace(getenv("VAULT_TOKEN")) == "" {
			out = append(out, "vault.auth: VAULT_TOKEN is not set and vault.auth.token_file is not given (vault.auth.method is token)")
		}
	}
	return out
}

// checkTokenFile reads the file token store as serve does at start, and
// proves its directory writable by creating and removing a file in it.
func checkTokenFile(ctx context.Context, cfg *config.Config) []string {
	if cfg.TokenStore.Type != config.TokenStoreFile {
		return nil
	}
	path := cfg.TokenStore.Path
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".panopto-sidecar-check-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the test file's random name says nothing
		}
		return []string{fmt.Sprintf("token_store.path: cannot write in %s, where the token file goes: %v", dir, err)}
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return []string{fmt.Sprintf("token_store.path: remove the test file %s: %v", name, err)}
	}
	if _, _, err := token.NewFileStore(path).Load(ctx, ""); err != nil {
		return []string{fmt.Sprintf("token_store.path: %v", err)}
	}
	return nil
}

// checkVault logs in to Vault as serve would and reads what serve reads
// there: the client credentials and the default account's token record.
func checkVault(ctx context.Context, cfg *config.Config, getenv func(string) string) []string {
	ctx, cancel := context.WithTimeout(ctx, vaultCheckTimeout)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	c, err := vault.New(ctx, vaultConfig(cfg.Vault), getenv, quiet)
	if err != nil {
		return strings.Split(err.Error(), "\n")
	}
	defer c.Close()
	if err := waitVaultLogin(ctx, c); err != nil {
		return []string{fmt.Sprintf("vault: log in at %s with vault.auth.method %s: %v", cfg.Vault.Address, cfg.Vault.Auth.Method, err)}
	}
	var out []string
	if cfg.Credentials.Source == config.CredentialsVault {
		creds := vault.NewCredentials(c, credentialsOptions(cfg.Credentials), quiet)
		if _, err := creds.Credentials(ctx); err != nil {
			out = append(out, fmt.Sprintf("credentials.path: %v", err))
		}
	}
	if cfg.TokenStore.Type == config.TokenStoreVault {
		if _, _, err := vault.NewStore(c, cfg.TokenStore.Path).Load(ctx, ""); err != nil {
			out = append(out, fmt.Sprintf("token_store.path: %v", err))
		}
	}
	return out
}

// waitVaultLogin waits for the client's first login to succeed or fail.
func waitVaultLogin(ctx context.Context, c *vault.Client) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		st := c.Status()
		switch {
		case st.Authenticated:
			return nil
		case st.LastError != "":
			return errors.New(st.LastError)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer in %s", vaultCheckTimeout)
		case <-t.C:
		}
	}
}
