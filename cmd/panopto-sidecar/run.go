package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
)

const usage = `panopto-sidecar: a local reverse proxy that injects a current Panopto bearer.

Usage:
  panopto-sidecar [serve] [-config FILE]   run the sidecar (FILE: $PANOPTO_SIDECAR_CONFIG or config.yaml)
  panopto-sidecar check [-config FILE]     validate the config, print every problem, exit 1 if any
  panopto-sidecar status [-addr URL]       show a running sidecar's /-/status
  panopto-sidecar healthcheck [-addr URL]  exit 0 if a running sidecar answers /-/healthz
  panopto-sidecar demo                     run a Panopto stand-in and a sidecar against it
  panopto-sidecar version
`

// exitStatus carries a specific exit code without printing anything more.
type exitStatus struct {
	code int
	err  error
}

func (e exitStatus) Error() string { return e.err.Error() }
func (e exitStatus) Unwrap() error { return e.err }

func exitCode(err error) int {
	var es exitStatus
	if errors.As(err, &es) {
		return es.code
	}
	return 1
}

var version = "dev"

// run is the whole program; main only wires the process to it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		path, err := configFlag("serve", args, getenv, stderr)
		if err != nil {
			return err
		}
		return serve(ctx, path, getenv, stderr)
	case "check":
		path, err := configFlag("check", args, getenv, stderr)
		if err != nil {
			return err
		}
		return check(path, getenv, stdout)
	case "status":
		return status(ctx, args, getenv, stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, args, getenv, stdout, stderr)
	case "demo":
		return demo(ctx, args, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "panopto-sidecar", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return exitStatus{2, fmt.Errorf("unknown command %q", cmd)}
	}
}

func configFlag(name string, args []string, getenv func(string) string, stderr io.Writer) (string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := getenv("PANOPTO_SIDECAR_CONFIG")
	if def == "" {
		def = "config.yaml"
	}
	path := fs.String("config", def, "config file")
	if err := fs.Parse(args); err != nil {
		return "", exitStatus{2, err}
	}
	if fs.NArg() > 0 {
		return "", exitStatus{2, fmt.Errorf("%s: unexpected arguments %q", name, fs.Args())}
	}
	return *path, nil
}

func check(path string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.Load(path, getenv)
	if err != nil {
		fmt.Fprintf(stdout, "%s: invalid\n", path)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stdout, "  %s\n", line)
		}
		return exitStatus{1, fmt.Errorf("%s has problems", path)}
	}
	if problems := checkFiles(cfg); len(problems) > 0 {
		fmt.Fprintf(stdout, "%s: invalid\n", path)
		for _, p := range problems {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
		return exitStatus{1, fmt.Errorf("%s names files that cannot be used", path)}
	}
	fmt.Fprintf(stdout, "%s: ok (upstream %s, listen %s, token store %s, credentials %s)\n",
		path, cfg.Upstream, cfg.Listen, cfg.TokenStore.Type, cfg.Credentials.Source)
	return nil
}

// checkFiles opens the files the config names, as serve would, so check
// catches a missing certificate or secret file before a deployment does.
func checkFiles(cfg *config.Config) []string {
	var out []string
	readable := func(key, path string) {
		if path == "" {
			return
		}
		if _, err := os.ReadFile(path); err != nil {
			out = append(out, fmt.Sprintf("%s: %v", key, err))
		}
	}
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
	if cfg.TLS.Mode == "files" {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			out = append(out, fmt.Sprintf("tls.cert_file, tls.key_file: %v", err))
		}
	}
	if cfg.TLS.Mode == "acme" {
		for i, f := range cfg.TLS.ACME.CARoots {
			pemFile(fmt.Sprintf("tls.acme.ca_roots[%d]", i), f)
		}
	}
	pemFile("upstream_ca_file", cfg.UpstreamCAFile)
	pemFile("inbound.client_ca_file", cfg.Inbound.ClientCAFile)
	readable("inbound.shared_secret_file", cfg.Inbound.SharedSecretFile)
	if cfg.NeedsVault() {
		pemFile("vault.ca_cert", cfg.Vault.CACert)
		switch cfg.Vault.Auth.Method {
		case "token":
			readable("vault.auth.token_file", cfg.Vault.Auth.TokenFile)
		case "approle":
			readable("vault.auth.role_id_file", cfg.Vault.Auth.RoleIDFile)
			readable("vault.auth.secret_id_file", cfg.Vault.Auth.SecretIDFile)
		}
		// The Kubernetes service-account token exists only inside the pod;
		// it is not checked here.
	}
	return out
}
