package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
	fmt.Fprintf(stdout, "%s: ok (upstream %s, listen %s, token store %s, credentials %s)\n",
		path, cfg.Upstream, cfg.Listen, cfg.TokenStore.Type, cfg.Credentials.Source)
	return nil
}
