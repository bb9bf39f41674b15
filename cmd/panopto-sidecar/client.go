package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/term"
)

// addrFlags defines -addr and -insecure for the status and healthcheck
// commands. The default address is $PANOPTO_SIDECAR_ADDR, else
// http://127.0.0.1:9127.
func addrFlags(name string, getenv func(string) string) (*flag.FlagSet, *string, *bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	def := getenv("PANOPTO_SIDECAR_ADDR")
	if def == "" {
		def = "http://127.0.0.1:9127"
	}
	addr := fs.String("addr", def, "sidecar base URL ($PANOPTO_SIDECAR_ADDR)")
	insecure := fs.Bool("insecure", false, "do not verify the sidecar's TLS certificate (its certificate names a public host, not 127.0.0.1)")
	return fs, addr, insecure
}

// addrFlag parses the flags of addrFlags; done means -h was answered (err
// nil) or the flags were wrong.
func addrFlag(name string, args []string, getenv func(string) string, stdout, stderr io.Writer) (addr string, insecure, done bool, err error) {
	fs, a, ins := addrFlags(name, getenv)
	if done, err := parseFlags(fs, args, stdout, stderr); done {
		return "", false, true, err
	}
	if err := noArgs(fs); err != nil {
		return "", false, true, err
	}
	u := strings.TrimRight(*a, "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	return u, *ins, false, nil
}

func localClient(insecure bool) *http.Client {
	tr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{InsecureSkipVerify: insecure}} //nolint:gosec // operator's choice, loopback
	return &http.Client{Timeout: 5 * time.Second, Transport: tr}
}

// healthcheck exits 0 when the sidecar answers /-/healthz (Docker HEALTHCHECK).
func healthcheck(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	addr, insecure, done, err := addrFlag("healthcheck", args, getenv, stdout, stderr)
	if done {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/-/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := localClient(insecure).Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %d", addr, resp.StatusCode)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

// status prints the running sidecar's /-/status for a person.
func status(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	addr, insecure, done, err := addrFlag("status", args, getenv, stdout, stderr)
	if done {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/-/status", nil)
	if err != nil {
		return err
	}
	if h, secretFile := getenv("PANOPTO_SIDECAR_AUTH_HEADER"), getenv("PANOPTO_SIDECAR_AUTH_FILE"); secretFile != "" {
		if h == "" {
			h = "X-Sidecar-Auth"
		}
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		req.Header.Set(h, strings.TrimSpace(string(b)))
	}
	resp, err := localClient(insecure).Do(req)
	if err != nil {
		return fmt.Errorf("status: is the sidecar running at %s? %w", addr, err)
	}
	defer resp.Body.Close()
	var st map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return fmt.Errorf("status: %s answered %d with no status document", addr, resp.StatusCode)
	}
	color := false
	if f, ok := stdout.(*os.File); ok {
		color = term.IsTerminal(int(f.Fd()))
	}
	printStatus(stdout, addr, st, color, time.Now())
	if c, _ := st["connected"].(bool); !c {
		return exitStatus{3, fmt.Errorf("not connected to Panopto")}
	}
	return nil
}

func printStatus(w io.Writer, addr string, st map[string]any, color bool, now time.Time) {
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return "\x1b[" + code + "m" + s + "\x1b[0m"
	}
	connected, _ := st["connected"].(bool)
	state := paint("31", "NOT CONNECTED")
	if connected {
		state = paint("32", "connected")
	}
	fmt.Fprintf(w, "panopto-sidecar at %s: %s\n", addr, state)
	line := func(k string, v any) {
		if v == nil || v == "" {
			return
		}
		fmt.Fprintf(w, "  %-18s %v\n", k, v)
	}
	if exp, ok := st["expires_at"].(string); ok && exp != "" {
		if t, err := time.Parse(time.RFC3339Nano, exp); err == nil && !t.IsZero() && t.Year() > 1 {
			line("token expires", fmt.Sprintf("%s (in %s)", t.Local().Format(time.DateTime), t.Sub(now).Round(time.Second)))
		}
	}
	if ob, ok := st["obtained_at"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, ob); err == nil && t.Year() > 1 {
			line("token obtained", t.Local().Format(time.DateTime))
		}
	}
	line("refreshes", st["refreshes"])
	if e, _ := st["last_error"].(string); e != "" {
		line("last error", paint("33", e))
	}
	line("upstream", st["upstream"])
	if !connected {
		reason, _ := st["reason"].(string)
		login, _ := st["login_url"].(string)
		line("reason", paint("33", reason))
		line("what to do", nextStep(reason, login))
	}
	if c, ok := st["credentials"].(map[string]any); ok {
		line("credentials", strings.TrimSpace(fmt.Sprintf("%v %v", c["source"], orEmpty(c["version"]))))
	}
	if c, ok := st["config"].(map[string]any); ok {
		line("config", fmt.Sprintf("%v (generation %v)", c["path"], c["generation"]))
		if e, _ := c["last_reload_error"].(string); e != "" {
			line("config error", paint("33", strings.ReplaceAll(e, "\n", "; ")))
		}
	}
	if ts, ok := st["token_store"].(map[string]any); ok {
		line("token store", ts["type"])
	}
	if v, ok := st["vault"].(map[string]any); ok {
		if c, ok := v["client"].(map[string]any); ok {
			up := paint("32", "up")
			if a, _ := c["authenticated"].(bool); !a {
				up = paint("31", "down")
			}
			line("vault", fmt.Sprintf("%v %s", c["address"], up))
		}
	}
	if a, ok := st["accounts"].(map[string]any); ok && a["mode"] != "off" {
		keys := make([]string, 0, len(a))
		for k := range a {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%v", k, a[k]))
		}
		line("accounts", strings.Join(parts, " "))
	}
	line("uptime", fmt.Sprintf("%vs", st["uptime_seconds"]))
}

// nextStep says what an operator does about a /-/status reason; an
// unknown or missing reason (an older or newer sidecar) gets the login.
func nextStep(reason, loginURL string) string {
	switch reason {
	case "credentials_unavailable":
		return "set PANOPTO_CLIENT_ID/PANOPTO_CLIENT_SECRET or check Vault: see the sidecar's log"
	case "refresh_pending":
		return "the sidecar retries by itself; if it persists, see the last error and the sidecar's log"
	default: // never_connected, logged_out, refresh_refused
		return "open " + loginURL + " in a browser and sign in to Panopto"
	}
}

func orEmpty(v any) any {
	if v == nil {
		return ""
	}
	return v
}
