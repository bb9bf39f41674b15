package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"golang.org/x/sync/errgroup"
)

func demoFlags() (*flag.FlagSet, *string, *time.Duration) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9127", "sidecar address (loopback only)")
	ttl := fs.Duration("token-ttl", 2*time.Minute, "access-token lifetime the stand-in grants (short, to show refreshes)")
	return fs, listen, ttl
}

// demo runs the built-in Panopto stand-in and a sidecar wired to it, logs
// in by itself, and prints a curl command that works. Ctrl-C stops both.
func demo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, listen, ttl := demoFlags()
	if done, err := parseFlags(fs, args, stdout, stderr); done {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("demo: -listen: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errors.New("demo: -listen must be a loopback address")
	}

	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: stand-in listener: %w", err)
	}
	upstream := "http://" + pln.Addr().String()
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	clientID, clientSecret := "panopto-sidecar-demo", hex.EncodeToString(secret)
	publicURL := "http://" + *listen
	fake := panoptofake.New(panoptofake.Options{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		RedirectURIs: []string{publicURL + "/redirect"},
		AccessTTL:    *ttl,
		DefaultUser:  "demo.lecturer",
		// An upload stays Processing for a few seconds, so GET
		// /-/uploads/{id} shows it Processing, then Complete with a session.
		ProcessingDelay: 5 * time.Second,
	})
	psrv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	// The stand-in and the sidecar are this function's goroutines: it
	// returns only once both ended, the sidecar first.
	var g errgroup.Group
	g.Go(func() error {
		if err := psrv.Serve(pln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("demo: stand-in: %w", err)
		}
		return nil
	})
	defer func() {
		psrv.Close()
		_ = g.Wait() // the stand-in's failure is the sidecar's: it is reported
	}()

	dir, err := os.MkdirTemp("", "panopto-sidecar-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`# panopto-sidecar demo: a sidecar in front of the built-in Panopto stand-in
listen: %s
public_url: %s
upstream: %s
token_store: {type: file, path: %s}
log: {level: info, format: auto}
shutdown_grace: 2s
`, *listen, publicURL, upstream, filepath.Join(dir, "panopto-token.json"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	env := func(k string) string {
		switch k {
		case "PANOPTO_CLIENT_ID":
			return clientID
		case "PANOPTO_CLIENT_SECRET":
			return clientSecret
		}
		return getenv(k)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sc := &demoSidecar{done: make(chan struct{})}
	g.Go(func() error {
		defer close(sc.done)
		sc.err = serve(ctx, cfgPath, env, stderr, serveOptions{loginItself: true})
		return nil
	})
	defer func() { cancel(); <-sc.done }()

	if err := waitHealthy(ctx, publicURL, sc); err != nil {
		return err
	}
	if err := loginLikeABrowser(ctx, publicURL); err != nil {
		return fmt.Errorf("demo: login: %w", err)
	}
	fmt.Fprintf(stdout, `
panopto-sidecar demo is running.
  Panopto stand-in: %s (access tokens last %s; watch the sidecar refresh them)
  sidecar:          %s (logged in already)

Try, with no token in hand:
  curl -s %s/Panopto/api/v1/folders
  curl -s %s/-/status
  curl -s %s/metrics | grep panopto_sidecar_

Upload a file as a video, then follow it (Processing, then Complete with a session):
  curl -s -X POST -T FILE -H 'Content-Type: video/mp4' '%s/-/uploads?folder_id=%s&name=demo.mp4'
  curl -s %s/-/uploads/ID

Ctrl-C stops both.
`, upstream, *ttl, publicURL, publicURL, publicURL, publicURL, publicURL, panoptofake.FolderCOS10009, publicURL)
	<-sc.done // serve returns when ctx ends, or when it fails
	return sc.err
}

// demoSidecar is the demo's sidecar: done is closed when serve returned err.
type demoSidecar struct {
	done chan struct{}
	err  error
}

func waitHealthy(ctx context.Context, base string, sc *demoSidecar) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-sc.done:
			if sc.err == nil {
				return errors.New("sidecar stopped")
			}
			return sc.err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := c.Get(base + "/-/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("sidecar did not become healthy at %s", base)
}

// loginLikeABrowser follows /-/login through the stand-in's authorize page
// back to /redirect, keeping cookies as a browser would.
func loginLikeABrowser(ctx context.Context, base string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 15 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/-/login", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Connected") {
		return fmt.Errorf("callback answered %d", resp.StatusCode)
	}
	return nil
}
