//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// serveGoProxy is the "goproxy" target: the least a Go reverse proxy can
// be. net/http's server, httputil.ReverseProxy and net/http's Transport
// (pool sized as the sidecar's), a static Authorization header, and nothing
// else: no token, no routes, no log, no metrics. It shows what net/http
// itself costs on this machine, against which the sidecar's own work can be
// read. The harness runs it as a separate process: `bench serve-goproxy
// LISTEN UPSTREAM TOKEN`.
func serveGoProxy(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: bench serve-goproxy LISTEN UPSTREAM_ADDR TOKEN")
	}
	up, err := url.Parse("http://" + args[1])
	if err != nil {
		return err
	}
	bearer := "Bearer " + args[2]
	rp := &httputil.ReverseProxy{
		Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Header.Set("Authorization", bearer)
		},
	}
	srv := &http.Server{Addr: args[0], Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func startGoProxy(ctx context.Context, dir, upstreamAddr, token string) (*proc, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("goproxy: %w", err)
	}
	gd := filepath.Join(dir, "goproxy")
	if err := os.MkdirAll(gd, 0o755); err != nil {
		return nil, err
	}
	return startServing(ctx, listen, "/", 15*time.Second, "goproxy", gd, os.Environ(), self, "serve-goproxy", listen, upstreamAddr, token)
}
