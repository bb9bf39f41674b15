package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// command is one subcommand as help describes it.
type command struct{ name, synopsis, summary string }

var commands = []command{
	{"serve", "[serve] [-config FILE]", "run the sidecar (the default command); logs to stderr"},
	{"check", "check [-config FILE] [-offline]", "check the config and what serve needs (env, files, Vault); exit 1 on any problem"},
	{"status", "status [-addr URL] [-insecure]", "show a running sidecar's /-/status (exit 3: not connected)"},
	{"healthcheck", "healthcheck [-addr URL] [-insecure]", "exit 0 if a running sidecar answers /-/healthz"},
	{"demo", "demo [-listen ADDR] [-token-ttl D]", "a Panopto stand-in and a sidecar, logged in; Ctrl-C stops both"},
	{"version", "version", "print the version, VCS revision and Go version"},
	{"help", "help [COMMAND]", "print this help, or one command's flags"},
}

// commandFlags builds the flag set the command parses, so help lists
// exactly what it accepts; nil for a command without flags.
func commandFlags(name string, getenv func(string) string) *flag.FlagSet {
	var fs *flag.FlagSet
	switch name {
	case "serve":
		fs, _ = configFlags(name, getenv)
	case "check":
		fs, _, _ = checkFlags(getenv)
	case "status", "healthcheck":
		fs, _, _ = addrFlags(name, getenv)
	case "demo":
		fs, _, _ = demoFlags()
	}
	return fs
}

func lookupCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// printUsage writes the overview of every command.
func printUsage(w io.Writer) {
	fmt.Fprint(w, "panopto-sidecar: a local reverse proxy that injects a current Panopto bearer.\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  panopto-sidecar %-36s %s\n", c.synopsis, c.summary)
	}
	fmt.Fprint(w, "\nRun 'panopto-sidecar help COMMAND' for a command's flags.\n")
}

// printCommandHelp writes one command's synopsis, summary and flags.
func printCommandHelp(w io.Writer, c command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: panopto-sidecar %s\n\n%s\n", c.synopsis, c.summary)
	if fs == nil {
		return
	}
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	if b.Len() > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s", b.String())
	}
}

// help prints the overview, or with one argument that command's help.
func help(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	switch len(args) {
	case 0:
		printUsage(stdout)
		return nil
	case 1:
		c, ok := lookupCommand(args[0])
		if !ok {
			printUsage(stderr)
			return exitStatus{2, fmt.Errorf("help: unknown command %q", args[0])}
		}
		printCommandHelp(stdout, c, commandFlags(c.name, getenv))
		return nil
	default:
		return exitStatus{2, fmt.Errorf("help: unexpected arguments %q", args[1:])}
	}
}

// parseFlags parses args into fs. -h or --help prints the command's help to
// stdout and reports done with a nil error: the command exits 0. A bad flag
// prints the help to stderr and returns an exit-2 error.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (done bool, err error) {
	// The flag package's own messages are dropped: the error is returned
	// (main prints it once) and the help is printed here.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err = fs.Parse(args)
	c, _ := lookupCommand(fs.Name())
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, flag.ErrHelp):
		printCommandHelp(stdout, c, fs)
		return true, nil
	default:
		printCommandHelp(stderr, c, fs)
		return true, exitStatus{2, err}
	}
}
