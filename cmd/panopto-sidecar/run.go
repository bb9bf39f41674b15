package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"

	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
)

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

// run is the whole program; main only wires the process to it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && slices.Contains([]string{"-h", "-help", "--help"}, args[0]) {
		printUsage(stdout)
		return nil
	}
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		fs, path := configFlags("serve", getenv)
		if done, err := parseFlags(fs, args, stdout, stderr); done {
			return err
		}
		if err := noArgs(fs); err != nil {
			return err
		}
		return serve(ctx, *path, getenv, stderr, serveOptions{})
	case "check":
		fs, path, offline := checkFlags(getenv)
		if done, err := parseFlags(fs, args, stdout, stderr); done {
			return err
		}
		if err := noArgs(fs); err != nil {
			return err
		}
		return check(ctx, *path, *offline, getenv, stdout)
	case "status":
		return status(ctx, args, getenv, stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, args, getenv, stdout, stderr)
	case "demo":
		return demo(ctx, args, getenv, stdout, stderr)
	case "version":
		fs := flag.NewFlagSet("version", flag.ContinueOnError)
		if done, err := parseFlags(fs, args, stdout, stderr); done {
			return err
		}
		if err := noArgs(fs); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "panopto-sidecar", currentVersion())
		return nil
	case "help":
		return help(args, getenv, stdout, stderr)
	default:
		printUsage(stderr)
		return exitStatus{2, fmt.Errorf("unknown command %q", cmd)}
	}
}

func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return exitStatus{2, fmt.Errorf("%s: unexpected arguments %q", fs.Name(), fs.Args())}
	}
	return nil
}

// configFlags defines -config, defaulting to $PANOPTO_SIDECAR_CONFIG, else
// config.yaml.
func configFlags(name string, getenv func(string) string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	def := getenv("PANOPTO_SIDECAR_CONFIG")
	if def == "" {
		def = "config.yaml"
	}
	return fs, fs.String("config", def, "config file ($PANOPTO_SIDECAR_CONFIG, else config.yaml)")
}

func checkFlags(getenv func(string) string) (*flag.FlagSet, *string, *bool) {
	fs, path := configFlags("check", getenv)
	offline := fs.Bool("offline", false, "skip the checks that need the network (logging in to Vault)")
	return fs, path, offline
}

// serveOptions are what the caller of serve decides, rather than config.yaml.
type serveOptions struct {
	// loginItself: the caller logs in right after the start (demo), so serve
	// does not ask the operator to open the login URL.
	loginItself bool

	// Tests only. wrapMain and wrapPublic wrap the listeners (with one
	// that fails); served is called once the servers serve, with the
	// sidecar and the listeners' addresses (public nil without one).
	wrapMain, wrapPublic func(net.Listener) net.Listener
	served               func(s *sidecar, main, public net.Addr)
	// tuneWatch changes the upload watch's options (a shorter poll
	// schedule, scan and lease) before it is made.
	tuneWatch func(*watch.Options)
	// tokenTiming shortens the token managers' waits (zero: the defaults).
	tokenTiming token.Timing
}
