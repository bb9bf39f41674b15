package main

import (
	"strings"
	"testing"
)

// TestHelpVariants: every way of asking for help prints it to stdout and
// exits 0; the overview names every command.
func TestHelpVariants(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"-help"}, {"help"},
		{"help", "check"}, {"help", "serve"}, {"help", "version"},
		{"check", "-h"}, {"serve", "--help"}, {"-config", "x.yaml", "-h"},
		{"status", "-h"}, {"healthcheck", "-h"}, {"demo", "-h"}, {"version", "-h"},
	} {
		out, stderr, code := runCLI(t, nil, args...)
		if code != 0 || stderr != "" || !strings.Contains(out, "Usage") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, stderr)
		}
	}
	out, _, _ := runCLI(t, nil, "help")
	for _, c := range []string{"serve", "check", "status", "healthcheck", "demo", "version", "help"} {
		if !strings.Contains(out, "panopto-sidecar "+c) && !strings.Contains(out, "panopto-sidecar ["+c+"]") {
			t.Errorf("help does not list %s:\n%s", c, out)
		}
	}
	// help CMD is that command's help: its flags, not the overview.
	out, _, _ = runCLI(t, nil, "help", "check")
	if !strings.Contains(out, "-offline") || !strings.Contains(out, "-config") || strings.Contains(out, "healthcheck") {
		t.Errorf("help check:\n%s", out)
	}
	out, _, _ = runCLI(t, nil, "help", "status")
	if !strings.Contains(out, "-addr") || strings.Contains(out, "-config") {
		t.Errorf("help status:\n%s", out)
	}

	// Mistakes still exit 2, with the help on stderr.
	for _, args := range [][]string{{"help", "frobnicate"}, {"check", "-bogus"}, {"version", "extra"}} {
		out, stderr, code := runCLI(t, nil, args...)
		if code != 2 || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, stderr)
		}
	}
}
