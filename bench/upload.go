//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

// uploadRun is one upload of the upload phase.
type uploadRun struct {
	Client      string  `json:"client"` // oneshot | s3manager
	Repeat      int     `json:"repeat"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"seconds"`
	MBps        float64 `json:"mbps"`
	PeakRSSByte int64   `json:"sidecar_peak_rss_bytes"`
}

type uploadResult struct {
	PartSize    int64       `json:"part_size"`
	Concurrency int         `json:"concurrency"`
	Runs        []uploadRun `json:"runs"`
}

// uploadPhase compares, side by side against one sidecar process and the
// Panopto stand-in as the whole upstream, the sidecar's one-request upload
// (POST /-/uploads) with aws-sdk-go-v2's upload manager sending the same
// bytes in the same part size through the sidecar's /Panopto/Upload/ route
// (with sessionUpload, manifest and State=1 through the PublicAPI route, as
// OnTrack would do it without the one-request upload). Each run is timed
// from the first request to State=1 accepted.
func uploadPhase(ctx context.Context, f flags, dir string, logf func(string, ...any)) (*uploadResult, error) {
	p, fake, stop, err := standInSidecar(ctx, f, dir, "upload",
		fmt.Sprintf("uploads: {part_size: %d, concurrency: %d}\n", f.uploadPartSize, f.uploadConcurrency))
	if err != nil {
		return nil, err
	}
	defer stop()

	res := &uploadResult{PartSize: f.uploadPartSize, Concurrency: f.uploadConcurrency}
	clients := []string{"oneshot", "s3manager"}
	for rep := 0; rep < f.uploadRepeats; rep++ {
		for i := range clients {
			c := clients[(i+rep)%len(clients)] // alternate who goes first
			_ = resetPeakRSS(p.cmd.Process.Pid)
			var run timedRun
			var err error
			switch c {
			case "oneshot":
				run, err = oneShotUpload(ctx, p.url, f.uploadBytes)
			default:
				run, err = managerUpload(ctx, p.url, f.uploadBytes, f.uploadPartSize, f.uploadConcurrency)
			}
			if err != nil {
				return nil, fmt.Errorf("upload %s: %w\n%s", c, err, p.tail())
			}
			run.Client, run.Repeat, run.PeakRSSByte = c, rep, peakRSS(p.cmd.Process.Pid)
			if info, _ := fake.Upload(run.idAt); info.Objects["bench.mp4"].Size != f.uploadBytes || info.State != panoptofake.StateUploadStarted {
				return nil, fmt.Errorf("upload %s: the stand-in holds %+v", c, info)
			}
			res.Runs = append(res.Runs, run.uploadRun)
			logf("upload %s #%d: %.0f MB/s, sidecar peak RSS %s MiB", c, rep+1, run.MBps, mib(run.PeakRSSByte))
		}
	}
	return res, nil
}

type timedRun struct {
	uploadRun
	idAt string
}

// uploadBody is the bytes every client sends: the same pattern, never held.
func uploadBody(n int64) io.Reader {
	buf := make([]byte, 256<<10)
	for i := range buf {
		buf[i] = byte(i % 251)
	}
	return &patternReader{buf: buf, n: n}
}

func oneShotUpload(ctx context.Context, base string, n int64) (timedRun, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		base+"/-/uploads?folder_id="+panoptofake.FolderOnTrack+"&name=bench.mp4", uploadBody(n))
	if err != nil {
		return timedRun{}, err
	}
	req.ContentLength = n
	resp, err := streamClient().Do(req)
	if err != nil {
		return timedRun{}, err
	}
	defer resp.Body.Close()
	var a struct {
		ID    string `json:"id"`
		Bytes int64  `json:"bytes"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &a) != nil || a.Bytes != n {
		return timedRun{}, fmt.Errorf("POST /-/uploads answered %d: %.300s", resp.StatusCode, b)
	}
	d := time.Since(start)
	return timedRun{uploadRun: uploadRun{Bytes: n, Seconds: d.Seconds(), MBps: float64(n) / 1e6 / d.Seconds()}, idAt: a.ID}, nil
}

// managerUpload is OnTrack doing the protocol itself through the sidecar:
// sessionUpload, the media by the S3 upload manager through the
// /Panopto/Upload/ route, the manifest, State=1.
func managerUpload(ctx context.Context, base string, n, partSize int64, concurrency int) (timedRun, error) {
	c := streamClient()
	start := time.Now()
	call := func(method, path string, body any, want int) (map[string]any, error) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != want {
			return nil, fmt.Errorf("%s %s: %d %v", method, path, resp.StatusCode, err)
		}
		return out, nil
	}
	up, err := call(http.MethodPost, "/Panopto/PublicAPI/REST/sessionUpload", map[string]string{"FolderId": panoptofake.FolderOnTrack}, http.StatusCreated)
	if err != nil {
		return timedRun{}, err
	}
	id, _ := up["ID"].(string)
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("dummy", "dummy", ""),
		BaseEndpoint: aws.String(base), // through the sidecar's /Panopto/Upload/ route
		UsePathStyle: true,
		HTTPClient:   c,
		// What Panopto's upload server takes: no aws-chunked, no trailers.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
	})
	bucket, key := "Panopto", "Upload/"+id+"/bench.mp4"
	// The upload manager is what SDK users run today; transfermanager,
	// its successor, is not 1.0 yet. The bench compares with the former.
	//lint:ignore SA1019 the comparison is with the deprecated, widely used uploader
	u := manager.NewUploader(client, func(u *manager.Uploader) {
		u.PartSize, u.Concurrency = partSize, concurrency
	})
	//lint:ignore SA1019 as above
	if _, err := u.Upload(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: uploadBody(n)}); err != nil {
		return timedRun{}, fmt.Errorf("upload manager: %w", err)
	}
	m := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?>
<Session xmlns="http://tempuri.org/UniversalCaptureSpecification/v1"><Title>bench</Title><Description></Description><Date>%s</Date>
<Videos><Video><Start>PT0S</Start><File>bench.mp4</File><Type>Primary</Type></Video></Videos></Session>`, time.Now().UTC().Format("2006-01-02T15:04:05.000-07:00"))
	mkey := "Upload/" + id + "/upload_manifest_generated.xml"
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &mkey, Body: strings.NewReader(m), ContentLength: aws.Int64(int64(len(m)))}); err != nil {
		return timedRun{}, fmt.Errorf("manifest: %w", err)
	}
	up["State"] = 1
	if _, err := call(http.MethodPut, "/Panopto/PublicAPI/REST/sessionUpload/"+id, up, http.StatusOK); err != nil {
		return timedRun{}, err
	}
	d := time.Since(start)
	return timedRun{uploadRun: uploadRun{Bytes: n, Seconds: d.Seconds(), MBps: float64(n) / 1e6 / d.Seconds()}, idAt: id}, nil
}

func uploadReport(w io.Writer, r *uploadResult) {
	fmt.Fprintf(w, "\n### One-request upload vs the S3 upload manager (%s MiB parts, %d in flight, same bytes, same sidecar)\n\n",
		mib(r.PartSize), r.Concurrency)
	fmt.Fprintf(w, "| client | MB/s (median) | MB/s (each run) | sidecar peak RSS MiB (max) |\n|---|---:|---|---:|\n")
	med := map[string]float64{}
	for _, c := range []string{"oneshot", "s3manager"} {
		var v []float64
		var each []string
		var rss int64
		for _, run := range r.Runs {
			if run.Client == c {
				v = append(v, run.MBps)
				each = append(each, fmt.Sprintf("%.0f", run.MBps))
				rss = max(rss, run.PeakRSSByte)
			}
		}
		med[c] = median(v)
		name := map[string]string{"oneshot": "POST /-/uploads", "s3manager": "aws-sdk-go-v2 upload manager via /Panopto/Upload/"}[c]
		fmt.Fprintf(w, "| %s | %.0f | %s | %s |\n", name, med[c], strings.Join(each, ", "), mib(rss))
	}
	fmt.Fprintf(w, "\none-request ÷ upload manager throughput: %s (the issue asks for at least 0.90)\n", ratio(med["oneshot"], med["s3manager"]))
}

// standInSidecar starts the Panopto stand-in as the whole upstream and one
// sidecar process in front of it (config.yaml with extra appended), logged
// in as the stand-in's default user. stop ends both.
func standInSidecar(ctx context.Context, f flags, dir, name, extra string) (p *proc, fake *panoptofake.Server, stop func(), err error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, nil, nil, err
	}
	secret := "bench-" + name + "-secret"
	fake = panoptofake.New(panoptofake.Options{
		ClientID: "panopto-sidecar-bench", ClientSecret: secret,
		RedirectURIs: []string{"http://" + listen + "/redirect"}, DefaultUser: "bench.lecturer",
		S3SecretKey: "dummy", ProcessingPolls: 1,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, err
	}
	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)

	sdir := filepath.Join(dir, name+"-sidecar")
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		srv.Close()
		return nil, nil, nil, err
	}
	cfg := filepath.Join(sdir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`# generated by bench: a sidecar in front of the Panopto stand-in
listen: %[1]s
public_url: http://%[1]s
upstream: http://%[2]s
token_store: {type: file, path: %[3]s}
log: {level: %[4]s, format: json}
shutdown_grace: 2s
`, listen, ln.Addr(), filepath.Join(sdir, "panopto-token.json"), f.sidecarLog)+extra), 0o600); err != nil {
		srv.Close()
		return nil, nil, nil, err
	}
	env := append(os.Environ(), "PANOPTO_CLIENT_ID=panopto-sidecar-bench", "PANOPTO_CLIENT_SECRET="+secret)
	p, err = startServing(ctx, listen, "/-/healthz", 20*time.Second, name+"-sidecar", sdir, env, f.sidecarBin, "serve", "-config", cfg)
	if err != nil {
		srv.Close()
		return nil, nil, nil, err
	}
	stop = func() { p.stop(); srv.Close() }
	if err := login(ctx, p.url); err != nil {
		stop()
		return nil, nil, nil, fmt.Errorf("%s sidecar login: %w\n%s", name, err, p.tail())
	}
	return p, fake, stop, nil
}
