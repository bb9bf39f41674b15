// Command panopto-sidecar is a local reverse proxy that lets OnTrack call
// Panopto's API without handling OAuth: it injects a current bearer, refreshes
// it in place, and keeps the grant in a file or in Vault.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "panopto-sidecar:", err)
		os.Exit(exitCode(err))
	}
}
