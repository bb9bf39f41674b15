package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

const (
	uploadPartSize = 5 << 20
	// uploadSize is a little over 100 MiB, so the last part is short.
	uploadSize = 100<<20 + 12345
)

const uploadManifest = `<?xml version="1.0" encoding="utf-8"?>
<Session xmlns="http://tempuri.org/UniversalCaptureSpecification/v1">
  <Title>Task 7.2 demonstration</Title>
  <Description>Submitted from OnTrack</Description>
  <Date>2026-03-04T05:06:07.000-00:00</Date>
  <Videos><Video><Start>PT0S</Start><File>submission.mp4</File><Type>Primary</Type></Video></Videos>
</Session>`

// TestUploadEndToEnd uploads a 100 MiB video as OnTrack would: sessionUpload
// through the sidecar without a bearer of its own, the media and manifest by
// the real aws-sdk-go-v2 S3 client in 5 MiB parts, then State=1 and polling
// to State 4. Access tokens live 3 s (background refreshes run during the
// upload, one awaited mid-upload) and the stand-in expires every token behind the sidecar's back
// before the create, mid-upload and before the PUT: the sidecar refreshes
// and retries, so OnTrack never sees a 401/403. With rewrite_upload_target
// the S3 traffic goes through the sidecar's /Panopto/Upload/ route and the
// PUT's UploadTarget is turned back; without it the bytes bypass the sidecar.
// The stand-in answers PublicAPI refusals with 403 in the rewrite=on case.
func TestUploadEndToEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		rewrite bool
		use403  bool
	}{
		{"rewrite=off", false, false},
		{"rewrite=on", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			uploadEndToEnd(t, tc.rewrite, tc.use403)
		})
	}
}

func uploadEndToEnd(t *testing.T, rewrite, use403 bool) {
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{
		RedirectURIs: []string{"http://" + addr + "/redirect"},
		AccessTTL:    3 * time.Second,
		PublicAPI403: use403,
	})
	cfg := baseConfig(pan.URL, dir) + fmt.Sprintf("rewrite_upload_target: %v\n", rewrite)
	sc := startSidecar(t, dir, addr, cfg, nil)
	logIn(t, sc.URL)

	ot := &ontrackClient{t: t, base: sc.URL, c: &http.Client{Timeout: 30 * time.Second}}
	refusals := func() int { st := pan.Stats(); return st.Unauthorized + st.Forbidden }
	uploadRoute := `panopto_sidecar_requests_total{code="200",route="/Panopto/Upload/"}`
	metricsBefore := fetch(t, sc.URL+"/metrics")
	statsBefore := pan.Stats()

	// 1. Create the sessionUpload with a token the stand-in has just killed.
	pan.ExpireAllAccessTokens()
	code, up := ot.call(http.MethodPost, "/Panopto/PublicAPI/REST/sessionUpload", map[string]any{"FolderId": panoptofake.FolderCOS10009})
	if code != http.StatusCreated {
		t.Fatalf("create sessionUpload: %d %v", code, up)
	}
	id, _ := up["ID"].(string)
	target, _ := up["UploadTarget"].(string)
	tu, err := url.Parse(target)
	if id == "" || err != nil || tu.Path != "/Panopto/Upload/"+id {
		t.Fatalf("sessionUpload answer %v", up)
	}
	origin := tu.Scheme + "://" + tu.Host
	wantOrigin := pan.URL
	if rewrite {
		wantOrigin = sc.URL
	}
	if origin != wantOrigin {
		t.Fatalf("UploadTarget %s: origin %s, want %s (rewrite=%v)", target, origin, wantOrigin, rewrite)
	}
	if info, ok := pan.Upload(id); !ok || info.UploadTarget != pan.URL+"/Panopto/Upload/"+id || info.FolderID != panoptofake.FolderCOS10009 {
		t.Fatalf("stand-in's sessionUpload %+v", info)
	}

	// 2. The media, by the S3 multipart protocol, streamed from the pattern.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDUMMYONTRACK", "dummy-secret", ""),
		BaseEndpoint: aws.String(origin),
		UsePathStyle: true,
		HTTPClient:   &http.Client{Timeout: time.Minute},
		// What s3.NewFromConfig defaults to: a CRC32 on every upload.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
	})
	bucket, key := "Panopto", "Upload/"+id+"/submission.mp4"
	refreshesBefore := pan.Stats().Refreshes
	start := time.Now()
	var paused time.Duration // waiting for a refresh, not uploading
	mu, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key, ContentType: aws.String("video/mp4")})
	if err != nil {
		t.Fatalf("create multipart upload: %v", err)
	}
	src := patternAt{n: uploadSize}
	var parts []types.CompletedPart
	var md5s []byte
	nparts := int32((uploadSize + uploadPartSize - 1) / uploadPartSize)
	for n := int32(1); n <= nparts; n++ {
		off := int64(n-1) * uploadPartSize
		size := min(int64(uploadPartSize), uploadSize-off)
		out, err := client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &bucket, Key: &key, UploadId: mu.UploadId, PartNumber: aws.Int32(n),
			Body: io.NewSectionReader(src, off, size), ContentLength: aws.Int64(size),
		})
		if err != nil {
			t.Fatalf("part %d: %v", n, err)
		}
		h := md5.New()
		io.Copy(h, io.NewSectionReader(src, off, size))
		sum := h.Sum(nil)
		md5s = append(md5s, sum...)
		if want := `"` + hex.EncodeToString(sum) + `"`; aws.ToString(out.ETag) != want {
			t.Fatalf("part %d: ETag %s, want %s", n, aws.ToString(out.ETag), want)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})

		if n == 12 {
			// A real refresh, due to the 3 s lifetime, while the multipart
			// upload is open; then the sidecar injects the new token.
			before, refusedBefore := pan.Stats().Refreshes, refusals()
			paused += testsupport.WaitFor(t, 10*time.Second, "a background token refresh mid-upload", func() bool { return pan.Stats().Refreshes > before })
			code, got := ot.call(http.MethodGet, "/Panopto/PublicAPI/REST/sessionUpload/"+id, nil)
			if code != 200 || refusals() != refusedBefore {
				t.Fatalf("status after a background refresh: %d %v, %d refusals upstream", code, got, refusals()-refusedBefore)
			}
		}
		if n == 4 {
			// 3. Mid-upload, OnTrack checks on the upload just after the
			// stand-in expired every token the sidecar holds. A background
			// refresh may win the race to a new token; try until the
			// stand-in has refused the sidecar at least once.
			refused := false
			for range 5 {
				before := refusals()
				pan.ExpireAllAccessTokens()
				code, got := ot.call(http.MethodGet, "/Panopto/PublicAPI/REST/sessionUpload/"+id, nil)
				if code != 200 || got["State"] != float64(panoptofake.StateCreated) {
					t.Fatalf("mid-upload status: %d %v", code, got)
				}
				if refusals() > before {
					refused = true
					break
				}
			}
			if !refused {
				t.Fatal("the stand-in never refused an expired bearer mid-upload: the retry went untested")
			}
		}
	}
	done, err := client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &bucket, Key: &key, UploadId: mu.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		t.Fatalf("complete multipart upload: %v", err)
	}
	elapsed := time.Since(start) - paused
	wantETag := fmt.Sprintf(`"%x-%d"`, md5.Sum(md5s), nparts)
	if aws.ToString(done.ETag) != wantETag {
		t.Fatalf("object ETag %s, want %s", aws.ToString(done.ETag), wantETag)
	}
	backgroundRefreshes := pan.Stats().Refreshes - refreshesBefore
	t.Logf("multipart upload of %.1f MiB in %d parts %s the sidecar: %v, %.1f MB/s, %d token refreshes meanwhile",
		float64(uploadSize)/(1<<20), nparts, map[bool]string{true: "through", false: "bypassing"}[rewrite],
		elapsed.Round(time.Millisecond), float64(uploadSize)/1e6/elapsed.Seconds(), backgroundRefreshes)

	mkey := "Upload/" + id + "/upload_manifest_generated.xml"
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &bucket, Key: &mkey, Body: strings.NewReader(uploadManifest),
		ContentLength: aws.Int64(int64(len(uploadManifest))), ContentType: aws.String("text/xml"),
	}); err != nil {
		t.Fatalf("put manifest: %v", err)
	}
	s3Requests := 1 + int(nparts) + 1 + 1 // create, parts, complete, manifest

	// 4. Ask for processing with the whole object as received, again with a
	// token the stand-in has just killed, then poll to a final state.
	up["State"] = panoptofake.StateUploadStarted
	pan.ExpireAllAccessTokens()
	if code, got := ot.call(http.MethodPut, "/Panopto/PublicAPI/REST/sessionUpload/"+id, up); code != 200 {
		t.Fatalf("PUT sessionUpload State=1: %d %v", code, got)
	}
	var final map[string]any
	for range 20 {
		code, got := ot.call(http.MethodGet, "/Panopto/PublicAPI/REST/sessionUpload/"+id, nil)
		if code != 200 {
			t.Fatalf("poll: %d %v", code, got)
		}
		if s, _ := got["State"].(float64); s == 2 || s == 4 || s == 5 || s == 7 || s == 8 {
			final = got
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if final == nil {
		t.Fatal("sessionUpload never reached a final state")
	}
	info, _ := pan.Upload(id)
	if final["State"] != float64(panoptofake.StateComplete) {
		t.Fatalf("final State %v (%s), want 4", final["State"], info.Message)
	}
	if sid, _ := final["SessionId"].(string); sid == "" || sid != info.SessionID {
		t.Fatalf("final SessionId %v, stand-in has %q", final["SessionId"], info.SessionID)
	}
	if rewrite && final["UploadTarget"] != target {
		t.Errorf("polled UploadTarget %v, want the sidecar's %s", final["UploadTarget"], target)
	}

	// 5. What the stand-in and the sidecar saw.
	obj, ok := info.Objects["submission.mp4"]
	if !ok || obj.Size != uploadSize || obj.ETag != wantETag || len(obj.PartSizes) != int(nparts) {
		t.Fatalf("stored object %+v (ok %v), want %d bytes, ETag %s, %d parts", obj, ok, uploadSize, wantETag, nparts)
	}
	if info.State != panoptofake.StateComplete || info.PendingMultipart != 0 || info.Manifest == nil ||
		info.Manifest.Title != "Task 7.2 demonstration" || strings.Join(info.Manifest.Files, ",") != "submission.mp4" {
		t.Fatalf("stand-in's upload %+v, manifest %+v", info, info.Manifest)
	}
	st := pan.Stats()
	if st.UploadBearer != 0 {
		t.Errorf("%d upload-target requests carried a bearer", st.UploadBearer)
	}
	if st.RefreshReuse != 0 || st.GrantsRevoked != 0 {
		t.Errorf("refresh token reused %d times, %d grants revoked", st.RefreshReuse, st.GrantsRevoked)
	}
	if got := st.UploadRequests - statsBefore.UploadRequests; got != s3Requests {
		t.Errorf("stand-in saw %d upload-target requests, want %d", got, s3Requests)
	}
	if len(ot.refused) != 0 {
		t.Errorf("OnTrack saw the bearer refused: %v", ot.refused)
	}
	refused := refusals() - (statsBefore.Unauthorized + statsBefore.Forbidden)
	if use403 && st.Forbidden == statsBefore.Forbidden {
		t.Error("the stand-in never answered 403: the 403 retry went untested")
	}
	if !use403 && st.Unauthorized == statsBefore.Unauthorized {
		t.Error("the stand-in never answered 401: the 401 retry went untested")
	}
	if st.Refreshes-statsBefore.Refreshes < refused {
		t.Errorf("%d refusals but only %d refreshes", refused, st.Refreshes-statsBefore.Refreshes)
	}
	metrics := fetch(t, sc.URL+"/metrics")
	retriedOK := metricValue(metrics, `panopto_sidecar_upstream_auth_retries_total{outcome="ok"}`) -
		metricValue(metricsBefore, `panopto_sidecar_upstream_auth_retries_total{outcome="ok"}`)
	if int(retriedOK) != refused {
		t.Errorf("the sidecar retried %v times with success, the stand-in refused %d times", retriedOK, refused)
	}
	throughSidecar := int(metricValue(metrics, uploadRoute) - metricValue(metricsBefore, uploadRoute))
	if rewrite && throughSidecar != s3Requests {
		t.Errorf("%d upload requests answered 200 through the sidecar, want %d", throughSidecar, s3Requests)
	}
	if !rewrite && throughSidecar != 0 {
		t.Errorf("%d upload requests went through the sidecar without rewrite_upload_target", throughSidecar)
	}
	t.Logf("%d PublicAPI calls by OnTrack, %d refused upstream and retried, %d refreshes in all",
		ot.calls, refused, st.Refreshes-statsBefore.Refreshes)
}

// ontrackClient calls the sidecar's PublicAPI routes as OnTrack does: JSON,
// no Authorization header, and it remembers every 401/403 it was answered.
type ontrackClient struct {
	t       *testing.T
	base    string
	c       *http.Client
	calls   int
	refused []string
}

func (o *ontrackClient) call(method, path string, body any) (int, map[string]any) {
	o.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			o.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, o.base+path, rd)
	if err != nil {
		o.t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	resp, err := o.c.Do(req)
	if err != nil {
		o.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	o.calls++
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		o.refused = append(o.refused, fmt.Sprintf("%s %s: %d", method, path, resp.StatusCode))
	}
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		return resp.StatusCode, map[string]any{"body": string(b)}
	}
	return resp.StatusCode, v
}

// patternAt is panoptofake.PatternReader as an io.ReaderAt, so each part is
// an independent io.SectionReader the S3 client may seek and re-read.
type patternAt struct{ n int64 }

func (p patternAt) ReadAt(b []byte, off int64) (int, error) {
	r := panoptofake.PatternReader(p.n)
	if _, err := r.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	n, err := io.ReadFull(r, b)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF // io.ReaderAt's contract for a short read at the end
	}
	return n, err
}

// metricValue returns the value of one series in Prometheus text, 0 if absent.
func metricValue(text, series string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}
