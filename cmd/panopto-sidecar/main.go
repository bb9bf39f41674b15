// Command panopto-sidecar is a local reverse proxy that lets OnTrack call
// Panopto's API without handling OAuth: it injects a current bearer, refreshes
// it in place, and keeps the grant in a file or in Vault.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		printError(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}

// printError writes err with the program's name on every line: joined
// errors (several config problems, several missing variables) are one per
// line.
func printError(w io.Writer, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(w, "panopto-sidecar:", line)
	}
}
