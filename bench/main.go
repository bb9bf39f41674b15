//go:build linux

// Command bench compares panopto-sidecar with nginx and Caddy as reverse
// proxies in front of the same upstream, on 127.0.0.1, in one run:
//
//  1. small requests (1 KiB JSON) at several concurrencies, loaded by wrk,
//     targets interleaved (direct, sidecar, nginx, caddy, direct, …) so drift
//     cancels: requests/s, added latency (p50/p99/p99.9 over direct), CPU
//     seconds per 10k requests and peak RSS of the proxy's processes;
//  2. streaming: a large upload and download through each proxy: MB/s and
//     the proxy's peak RSS while streaming;
//  3. a refresh storm: many clients against a sidecar whose access tokens
//     last seconds: token-endpoint calls per expiry, errors, and p99 inside
//     the refresh windows against outside them;
//  4. uploads: POST /-/uploads against aws-sdk-go-v2's upload manager sending
//     the same bytes in the same part size through /Panopto/Upload/, side by
//     side against the Panopto stand-in: MB/s and the sidecar's peak RSS.
//
// Run it from the module root: `go run ./bench` or `bench/run.sh`.
// Everything listens on 127.0.0.1 and every phase has a bounded duration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type flags struct {
	duration      time.Duration
	warmup        time.Duration
	repeats       int
	concurrencies []int
	targets       []string
	streamBytes   int64
	streamRepeats int
	stormTTL      time.Duration
	stormBefore   time.Duration
	stormClients  int
	stormExpiries int
	sidecarLog    string
	wrkThreads    int
	skip          map[string]bool
	workDir       string
	keep          bool
	caddyBin      string
	nginxBin      string
	wrkBin        string
	sidecarBin    string
	install       bool
	jsonOut       string

	uploadBytes       int64
	uploadPartSize    int64
	uploadConcurrency int
	uploadRepeats     int

	deadlineUploads []int
	deadlineBytes   int64
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-goproxy" {
		if err := serveGoProxy(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench serve-goproxy:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if len(os.Args) > 1 && os.Args[1] == "accounts" {
		err = accountsBench(ctx, os.Args[2:], os.Stdout, os.Stderr)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f flags
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&f.duration, "d", 5*time.Second, "load duration of one cell (one target at one concurrency, one repeat)")
	fs.DurationVar(&f.warmup, "warmup", 2*time.Second, "warm-up load per target before measuring")
	fs.IntVar(&f.repeats, "repeats", 3, "interleaved repeats of every cell")
	conc := fs.String("c", "1,16,64,256", "concurrency levels (connections)")
	targets := fs.String("targets", "direct,sidecar,nginx,caddy,goproxy", "targets, in interleaving order (goproxy: a bare net/http reverse proxy, the floor of any net/http-based proxy)")
	fs.Int64Var(&f.streamBytes, "stream-bytes", 2<<30, "bytes uploaded and downloaded per streaming run")
	fs.IntVar(&f.streamRepeats, "stream-repeats", 2, "interleaved repeats of each streaming run")
	fs.DurationVar(&f.stormTTL, "storm-ttl", 10*time.Second, "access-token lifetime at the storm's token server")
	fs.DurationVar(&f.stormBefore, "storm-refresh-before", 5*time.Second, "oauth.refresh_before of the storm's sidecar")
	fs.IntVar(&f.stormClients, "storm-clients", 256, "concurrent clients in the refresh storm")
	fs.IntVar(&f.stormExpiries, "storm-expiries", 5, "token expiries (refresh windows) the storm waits for")
	fs.StringVar(&f.sidecarLog, "sidecar-log", "info", "log.level of the benchmarked sidecar (info is the shipped default and logs every request)")
	fs.IntVar(&f.wrkThreads, "wrk-threads", 2, "wrk threads (capped at the connection count)")
	fs.Int64Var(&f.uploadBytes, "upload-bytes", 1<<30, "bytes per upload in the upload phase")
	fs.Int64Var(&f.uploadPartSize, "upload-part-size", 16<<20, "S3 part size of both upload clients (5-25 MiB)")
	fs.IntVar(&f.uploadConcurrency, "upload-concurrency", 2, "parts in flight for both upload clients")
	fs.IntVar(&f.uploadRepeats, "upload-repeats", 3, "interleaved repeats of each upload client")
	deadlineUploads := fs.String("deadline-uploads", "1,8,32", "uploads at once in the deadline phase, one run each")
	fs.Int64Var(&f.deadlineBytes, "deadline-bytes", 64<<20, "bytes per upload in the deadline phase")
	skip := fs.String("skip", "", "phases to skip: latency,stream,storm,upload,deadline")
	fs.StringVar(&f.workDir, "workdir", "", "directory for configs, logs and binaries (default: a new temp dir)")
	fs.BoolVar(&f.keep, "keep", false, "keep the work directory")
	fs.StringVar(&f.caddyBin, "caddy", "", "caddy binary (default: PATH, $GOBIN, $HOME/.cache/panopto-sidecar-bench/bin)")
	fs.StringVar(&f.nginxBin, "nginx", "", "nginx binary (default: PATH, /usr/sbin/nginx)")
	fs.StringVar(&f.wrkBin, "wrk", "", "wrk binary (default: PATH)")
	fs.StringVar(&f.sidecarBin, "sidecar", "", "prebuilt panopto-sidecar binary (default: go build ./cmd/panopto-sidecar)")
	fs.BoolVar(&f.install, "install", true, "install missing nginx/wrk (apt-get) and caddy (go install) when absent")
	fs.StringVar(&f.jsonOut, "json", "", "also write every raw cell result to this JSON file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-c: bad concurrency %q", s)
		}
		f.concurrencies = append(f.concurrencies, n)
	}
	for _, t := range strings.Split(*targets, ",") {
		t = strings.TrimSpace(t)
		switch t {
		case "direct", "sidecar", "nginx", "caddy", "goproxy":
			f.targets = append(f.targets, t)
		default:
			return fmt.Errorf("-targets: unknown target %q", t)
		}
	}
	for _, s := range strings.Split(*deadlineUploads, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-deadline-uploads: bad count %q", s)
		}
		f.deadlineUploads = append(f.deadlineUploads, n)
	}
	f.skip = map[string]bool{}
	for _, s := range strings.Split(*skip, ",") {
		if s = strings.TrimSpace(s); s != "" {
			f.skip[s] = true
		}
	}
	if f.uploadPartSize < 5<<20 || f.uploadPartSize > 25<<20 || f.uploadConcurrency < 1 || f.uploadRepeats < 1 || f.uploadBytes < 1 {
		return errors.New("-upload-part-size must be 5-25 MiB; -upload-concurrency, -upload-repeats and -upload-bytes positive")
	}
	if f.repeats < 1 || f.streamRepeats < 1 || f.duration <= 0 {
		return errors.New("-repeats, -stream-repeats and -d must be positive")
	}
	return bench(ctx, f, stdout, stderr)
}
