//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

// deadlineRun is N students uploading at once while OnTrack calls the API.
type deadlineRun struct {
	Uploads     int     `json:"uploads"`
	Bytes       int64   `json:"bytes_each"`
	Seconds     float64 `json:"seconds"`
	MBps        float64 `json:"aggregate_mbps"`
	UploadP50   float64 `json:"upload_seconds_p50"`
	UploadMax   float64 `json:"upload_seconds_max"`
	PeakRSSByte int64   `json:"sidecar_peak_rss_bytes"`
	APICalls    int     `json:"api_calls"`
	APIFailed   int     `json:"api_failed"`
	APIP50ms    float64 `json:"api_p50_ms"`
	APIP99ms    float64 `json:"api_p99_ms"`
}

type deadlineResult struct {
	Runs []deadlineRun `json:"runs"`
}

// deadlinePhase is a unit's deadline: one sidecar with the shipped upload
// settings (16 MiB parts, 2 in flight, memory_limit 256MiB) in front of
// the Panopto stand-in takes N uploads of -deadline-bytes at once, for each
// N of -deadline-uploads, while one client calls GET /Panopto/api/v1/folders
// back to back. It reports the aggregate throughput, each upload's time,
// the sidecar's peak RSS and the API calls' latency meanwhile.
func deadlinePhase(ctx context.Context, f flags, dir string, logf func(string, ...any)) (*deadlineResult, error) {
	p, _, stop, err := standInSidecar(ctx, f, dir, "deadline", "# shipped upload settings\n")
	if err != nil {
		return nil, err
	}
	defer stop()

	res := &deadlineResult{}
	for _, n := range f.deadlineUploads {
		_ = resetPeakRSS(p.cmd.Process.Pid)
		run, err := deadlineOnce(ctx, p.url, n, f.deadlineBytes)
		if err != nil {
			return nil, fmt.Errorf("deadline %d uploads: %w\n%s", n, err, p.tail())
		}
		run.PeakRSSByte = peakRSS(p.cmd.Process.Pid)
		res.Runs = append(res.Runs, run)
		logf("deadline %d uploads of %s MiB: %.0f MB/s in all, upload p50 %.1f s max %.1f s, peak RSS %s MiB, API p50 %.1f ms p99 %.1f ms (%d calls, %d failed)",
			n, mib(f.deadlineBytes), run.MBps, run.UploadP50, run.UploadMax, mib(run.PeakRSSByte), run.APIP50ms, run.APIP99ms, run.APICalls, run.APIFailed)
	}
	return res, nil
}

func deadlineOnce(ctx context.Context, base string, n int, size int64) (deadlineRun, error) {
	run := deadlineRun{Uploads: n, Bytes: size}
	apiCtx, stopAPI := context.WithCancel(ctx)
	var api []time.Duration
	apiDone := make(chan struct{})
	go func() {
		defer close(apiDone)
		c := &http.Client{Timeout: time.Minute}
		for apiCtx.Err() == nil {
			req, _ := http.NewRequestWithContext(apiCtx, http.MethodGet, base+"/Panopto/api/v1/folders?pageSize=3", nil)
			t0 := time.Now()
			resp, err := c.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if apiCtx.Err() != nil {
				return
			}
			api = append(api, time.Since(t0))
			if err != nil || resp.StatusCode != http.StatusOK {
				run.APIFailed++
			}
		}
	}()

	start := time.Now()
	took := make([]float64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			t0 := time.Now()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost,
				fmt.Sprintf("%s/-/uploads?folder_id=%s&name=student-%03d.mp4", base, panoptofake.FolderOnTrack, i), uploadBody(size))
			if err != nil {
				errs[i] = err
				return
			}
			req.ContentLength = size
			resp, err := streamClient().Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			var a struct {
				Bytes int64 `json:"bytes"`
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &a) != nil || a.Bytes != size {
				errs[i] = fmt.Errorf("upload %d: POST /-/uploads answered %d: %.300s", i, resp.StatusCode, b)
			}
			took[i] = time.Since(t0).Seconds()
		})
	}
	wg.Wait()
	d := time.Since(start)
	stopAPI()
	<-apiDone
	for _, err := range errs {
		if err != nil {
			return run, err
		}
	}
	slices.Sort(took)
	slices.Sort(api)
	run.Seconds = d.Seconds()
	run.MBps = float64(int64(n)*size) / 1e6 / d.Seconds()
	run.UploadP50, run.UploadMax = median(took), took[len(took)-1]
	run.APICalls = len(api)
	run.APIP50ms = float64(percentile(api, 50)) / 1e6
	run.APIP99ms = float64(percentile(api, 99)) / 1e6
	return run, nil
}

func deadlineReport(w io.Writer, r *deadlineResult) {
	fmt.Fprintf(w, "\n### Deadline: N uploads at once through one sidecar (16 MiB parts, 2 in flight, memory_limit 256MiB), API calls meanwhile\n\n")
	fmt.Fprintf(w, "| uploads | MiB each | MB/s in all | upload s p50 | upload s max | sidecar peak RSS MiB | API calls | API p50 ms | API p99 ms | API failed |\n")
	fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, run := range r.Runs {
		fmt.Fprintf(w, "| %d | %s | %.0f | %.1f | %.1f | %s | %d | %.1f | %.1f | %d |\n", run.Uploads, mib(run.Bytes), run.MBps,
			run.UploadP50, run.UploadMax, mib(run.PeakRSSByte), run.APICalls, run.APIP50ms, run.APIP99ms, run.APIFailed)
	}
}
