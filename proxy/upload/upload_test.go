package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

const (
	clientID, clientSecret = "ontrack-sidecar", "client-secret-for-tests"
	mib                    = 1 << 20
)

// passwordTokens is a token source that logs in to the stand-in with the
// password grant; ForceRefresh logs in again.
type passwordTokens struct {
	base, user, pass string
	c                *http.Client
	mu               sync.Mutex
	g                *token.Grant
	forced           atomic.Int32
}

func (p *passwordTokens) login(ctx context.Context) (*token.Grant, error) {
	form := url.Values{"grant_type": {"password"}, "username": {p.user}, "password": {p.pass}, "scope": {"openid api"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/Panopto/oauth2/connect/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	resp, err := p.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var t struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil || t.AccessToken == "" {
		return nil, fmt.Errorf("token: %d %v", resp.StatusCode, err)
	}
	return &token.Grant{AccessToken: token.Secret(t.AccessToken), Expiry: time.Now().Add(time.Duration(t.ExpiresIn) * time.Second)}, nil
}

func (p *passwordTokens) Token(ctx context.Context) (*token.Grant, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.g.Valid(time.Now().Add(time.Second)) {
		return p.g, nil
	}
	g, err := p.login(ctx)
	if err == nil {
		p.g = g
	}
	return g, err
}

func (p *passwordTokens) ForceRefresh(ctx context.Context, refused *token.Grant) (*token.Grant, error) {
	p.forced.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.g != refused && p.g != nil {
		return p.g, nil
	}
	g, err := p.login(ctx)
	if err == nil {
		p.g = g
	}
	return g, err
}

// ClaimForbiddenRefresh takes every 403 as a refused bearer: the stand-in
// expires tokens at will here, and the Manager's own rule is tested below.
func (p *passwordTokens) ClaimForbiddenRefresh(*token.Grant) bool { return true }

type testEnv struct {
	pan    *panoptofake.Server
	ts     *httptest.Server
	up     *Uploader
	tokens *passwordTokens
	logs   *strings.Builder
	// wrap, if set, sees every request before the stand-in.
	wrap func(w http.ResponseWriter, r *http.Request) bool
}

func newTestEnv(t *testing.T, useTLS bool, o panoptofake.Options, uo Options) *testEnv {
	t.Helper()
	o.ClientID, o.ClientSecret = clientID, clientSecret
	o.Users = map[string]string{"alice": "wonderland", "bob": "builder"}
	o.S3SecretKey = "dummy"
	e := &testEnv{pan: panoptofake.New(o), logs: &strings.Builder{}}
	var logMu sync.Mutex
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.wrap != nil && e.wrap(w, r) {
			return
		}
		e.pan.ServeHTTP(w, r)
	})
	if useTLS {
		e.ts = httptest.NewTLSServer(h)
	} else {
		e.ts = httptest.NewServer(h)
	}
	t.Cleanup(e.ts.Close)
	uo.Upstream, _ = url.Parse(e.ts.URL)
	uo.Transport = e.ts.Client().Transport
	uo.Logger = slog.New(slog.NewJSONHandler(lockedWriter{&logMu, e.logs}, nil))
	e.up = New(uo)
	e.tokens = &passwordTokens{base: e.ts.URL, user: "alice", pass: "wonderland", c: e.ts.Client()}
	return e
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func params(name string, size int64) Params {
	return Params{FolderID: panoptofake.FolderCOS10009, Name: name, Title: "Task 7.2 <demo> & notes", Description: "From OnTrack", Account: "alice", Size: size}
}

func poll(t *testing.T, e *testEnv, id string) Status {
	t.Helper()
	for range 10 {
		st, err := e.up.Get(context.Background(), e.tokens, id)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if st.State != 1 && st.State != 3 {
			return st
		}
	}
	t.Fatal("no final state")
	return Status{}
}

func TestUploadReachesComplete(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[useTLS], func(t *testing.T) {
			const size = 23*mib + 12345
			e := newTestEnv(t, useTLS, panoptofake.Options{}, Options{PartSize: 5 * mib, Concurrency: 2})
			var mu sync.Mutex
			seen := map[string]int{}
			e.wrap = func(w http.ResponseWriter, r *http.Request) bool {
				if strings.HasPrefix(r.URL.Path, "/Panopto/Upload/") {
					mu.Lock()
					defer mu.Unlock()
					for _, h := range []string{"Content-Encoding", "X-Amz-Trailer", "X-Amz-Content-Sha256", "X-Amz-Checksum-Crc32", "X-Amz-Checksum-Crc32c"} {
						if r.Header.Get(h) != "" {
							seen[h]++
						}
					}
					if r.Method == http.MethodPut && r.ContentLength < 0 {
						seen["no Content-Length"]++
					}
				}
				return false
			}
			res, err := e.up.Create(context.Background(), e.tokens, params("week 3 & more.mp4", size), io.LimitReader(panoptofake.PatternReader(size), size))
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if res.State != 1 || res.Bytes != size || res.Name != "week 3 & more.mp4" || res.FolderID != panoptofake.FolderCOS10009 || !IsGUID(res.ID) {
				t.Fatalf("result %+v", res)
			}
			st := poll(t, e, res.ID)
			info, _ := e.pan.Upload(res.ID)
			if st.State != 4 || st.StateName != "Complete" || st.SessionID == "" || st.SessionID != info.SessionID {
				t.Fatalf("status %+v (%s)", st, info.Message)
			}
			obj := info.Objects["week 3 & more.mp4"]
			if obj.Size != size || obj.ETag != panoptofake.PatternETag(size, 5*mib) || len(obj.PartSizes) != 5 {
				t.Fatalf("object %+v, want ETag %s", obj, panoptofake.PatternETag(size, 5*mib))
			}
			m := info.Manifest
			if m == nil || m.Title != "Task 7.2 <demo> & notes" || m.Description != "From OnTrack" || m.Date == "" ||
				strings.Join(m.Files, ",") != "week 3 & more.mp4" {
				t.Fatalf("manifest %+v", m)
			}
			if info.CreatedBy != "alice" || info.PendingMultipart != 0 || info.AbortedMultipart != 0 || info.Cancelled {
				t.Fatalf("upload %+v", info)
			}
			ps := e.pan.Stats()
			// initiate, 5 parts, complete, manifest: all signed, none refused.
			if ps.UploadRequests != 8 || ps.UploadSigV2 != 8 || ps.UploadBadSignature != 0 || ps.UploadBearer != 0 || ps.UploadRefused != 0 {
				t.Fatalf("stand-in stats %+v", ps)
			}
			if len(seen) != 0 {
				t.Fatalf("S3 requests carried %v", seen)
			}
			if got := e.up.o.Budget.allocs.Load(); got > 3 {
				t.Fatalf("%d part buffers allocated, want at most concurrency+1 = 3", got)
			}
			if l := e.logs.String(); strings.Count(l, `"msg":"upload"`) != 1 || !strings.Contains(l, `"result":"completed"`) ||
				!strings.Contains(l, `"account":"alice"`) || !strings.Contains(l, fmt.Sprintf(`"bytes":%d`, size)) {
				t.Fatalf("log: %s", l)
			}
		})
	}
}

// TestUploadTokenRefusedMidUpload: every token dies while the parts stream
// (S3 needs none); the PUT State=1 meets 403 and is retried once with a
// forced refresh, and the upload completes.
func TestUploadTokenRefusedMidUpload(t *testing.T) {
	const size = 12 * mib
	e := newTestEnv(t, false, panoptofake.Options{PublicAPI403: true}, Options{PartSize: 5 * mib})
	var once sync.Once
	e.up.o.Hooks.Bytes = func(int64) { once.Do(e.pan.ExpireAllAccessTokens) }
	res, err := e.up.Create(context.Background(), e.tokens, params("a.mp4", size), io.LimitReader(panoptofake.PatternReader(size), size))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if e.tokens.forced.Load() != 1 || e.pan.Stats().Forbidden != 1 {
		t.Fatalf("forced refreshes %d, 403s %d", e.tokens.forced.Load(), e.pan.Stats().Forbidden)
	}
	if st := poll(t, e, res.ID); st.State != 4 {
		t.Fatalf("status %+v", st)
	}
}

func TestUploadRetriesThrottledCreate(t *testing.T) {
	e := newTestEnv(t, false, panoptofake.Options{}, Options{PartSize: 5 * mib})
	e.pan.InjectAPIFaults(panoptofake.FaultStatus(http.StatusTooManyRequests))
	start := time.Now()
	res, err := e.up.Create(context.Background(), e.tokens, params("a.mp4", 100), strings.NewReader(strings.Repeat("x", 100)))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("retried after %v, Retry-After said 1s", waited)
	}
	if st := poll(t, e, res.ID); st.State != 4 {
		t.Fatalf("status %+v", st)
	}
}

// brokenReader yields n pattern bytes, then fails.
type brokenReader struct {
	r io.Reader
	n int64
}

func (b *brokenReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.ErrUnexpectedEOF // what net/http says when the client hangs up
	}
	p = p[:min(int64(len(p)), b.n)]
	n, err := b.r.Read(p)
	b.n -= int64(n)
	return n, err
}

func TestUploadFailuresCleanUp(t *testing.T) {
	tests := []struct {
		name       string
		body       func() io.Reader
		size       int64
		failPart   bool
		status     int
		code       string
		nothingYet bool // nothing may be created at Panopto
	}{
		{"body breaks mid-stream", func() io.Reader { return &brokenReader{panoptofake.PatternReader(1 << 30), 12 * mib} }, -1, false, 400, "body_incomplete", false},
		{"body shorter than declared", func() io.Reader { return io.LimitReader(panoptofake.PatternReader(1<<30), 11*mib) }, 12 * mib, false, 400, "body_incomplete", false},
		{"part fails after retries", func() io.Reader { return io.LimitReader(panoptofake.PatternReader(1<<30), 12*mib) }, 12 * mib, true, 502, "upstream_failed", false},
		{"empty body", func() io.Reader { return strings.NewReader("") }, -1, false, 400, "empty_body", true},
		{"body breaks in the first part", func() io.Reader { return &brokenReader{panoptofake.PatternReader(1 << 30), mib} }, -1, false, 400, "body_incomplete", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, false, panoptofake.Options{}, Options{PartSize: 5 * mib, Concurrency: 2})
			e.up.o.CleanupTimeout = 5 * time.Second
			var partTries atomic.Int32
			if tt.failPart {
				e.wrap = func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Query().Get("partNumber") == "2" {
						partTries.Add(1)
						_, _ = io.Copy(io.Discard, r.Body)
						http.Error(w, "<Error><Code>InternalError</Code></Error>", http.StatusInternalServerError)
						return true
					}
					return false
				}
			}
			var failed []string
			e.up.o.Hooks.Failed = func(r string) { failed = append(failed, r) }
			p := params("a.mp4", tt.size)
			_, err := e.up.Create(context.Background(), e.tokens, p, tt.body())
			var ue *Error
			if !errors.As(err, &ue) || ue.Status != tt.status || ue.Code != tt.code {
				t.Fatalf("err %v (%+v), want %d %s", err, ue, tt.status, tt.code)
			}
			if tt.failPart && partTries.Load() != 3 {
				t.Errorf("part 2 tried %d times, want 3", partTries.Load())
			}
			ps := e.pan.Stats()
			if tt.nothingYet {
				if ps.APICalls != 0 || ps.UploadRequests != 0 || ue.ID != "" {
					t.Fatalf("something was created at Panopto: %+v", ps)
				}
				return
			}
			info, ok := e.pan.Upload(ue.ID)
			if !ok || !info.Cancelled || info.PendingMultipart != 0 || !ue.Cancelled || !ue.Aborted {
				t.Fatalf("left at Panopto: %+v (error %+v)", info, ue)
			}
			if tt.size < 0 && info.AbortedMultipart != 1 {
				t.Fatalf("multipart not aborted: %+v", info)
			}
			if len(failed) != 1 || failed[0] != tt.code {
				t.Fatalf("failed hook %v", failed)
			}
			if l := e.logs.String(); !strings.Contains(l, `"result":"failed"`) || !strings.Contains(l, `"cancelled":true`) {
				t.Fatalf("log %s", l)
			}
		})
	}
}

// TestUploadClientGone: the request's context ends mid-body (the client
// disconnected): the parts in flight stop, the multipart upload is aborted
// and the sessionUpload cancelled anyway.
func TestUploadClientGone(t *testing.T) {
	e := newTestEnv(t, false, panoptofake.Options{}, Options{PartSize: 5 * mib})
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	e.up.o.Hooks.Bytes = func(int64) { once.Do(cancel) }
	_, err := e.up.Create(ctx, e.tokens, params("a.mp4", -1), panoptofake.PatternReader(1<<30))
	var ue *Error
	if !errors.As(err, &ue) || ue.Code != "client_gone" || !ue.Aborted || !ue.Cancelled {
		t.Fatalf("err %v %+v", err, ue)
	}
	info, _ := e.pan.Upload(ue.ID)
	if !info.Cancelled || info.AbortedMultipart != 1 || info.PendingMultipart != 0 {
		t.Fatalf("left at Panopto: %+v", info)
	}
}

func TestManifestEscapes(t *testing.T) {
	m := string(manifest(`a <b> & "c"`, "x\ny & z", `f&<>.mp4`, time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)))
	for _, want := range []string{
		"<Title>a &lt;b&gt; &amp; &#34;c&#34;</Title>", "<Description>x&#xA;y &amp; z</Description>",
		"<Date>2026-01-02T03:04:05.006+00:00</Date>", "<File>f&amp;&lt;&gt;.mp4</File>",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("manifest lacks %s:\n%s", want, m)
		}
	}
}

func TestParseParams(t *testing.T) {
	const f = panoptofake.FolderOnTrack
	tests := []struct {
		query string
		body  string
		chunk bool
		ok    bool
	}{
		{"folder_id=" + f + "&name=a.mp4", "x", false, true},
		{"folder_id=" + strings.ToUpper(f) + "&name=Week%201%20(final).mp4&title=T&description=D", "x", false, true},
		{"folder_id=" + f + "&name=a.mp4", "x", true, true},
		{"folder_id=not-a-guid&name=a.mp4", "x", false, false},
		{"name=a.mp4", "x", false, false},
		{"folder_id=" + f, "x", false, false},
		{"folder_id=" + f + "&name=", "x", false, false},
		{"folder_id=" + f + "&name=../a.mp4", "x", false, false},
		{"folder_id=" + f + "&name=a/b.mp4", "x", false, false},
		{"folder_id=" + f + "&name=a%5Cb.mp4", "x", false, false},
		{"folder_id=" + f + "&name=a%00.mp4", "x", false, false},
		{"folder_id=" + f + "&name=a%0Ab.mp4", "x", false, false},
		{"folder_id=" + f + "&name=.hidden", "x", false, false},
		{"folder_id=" + f + "&name=a.mp4.", "x", false, false},
		{"folder_id=" + f + "&name=a%3Fb.mp4", "x", false, false},
		{"folder_id=" + f + "&name=" + manifestName, "x", false, false},
		{"folder_id=" + f + "&name=" + strings.Repeat("a", 201), "x", false, false},
		{"folder_id=" + f + "&name=a.mp4", "", false, false},
	}
	for _, tt := range tests {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
			if tt.chunk {
				body = io.MultiReader(body)
			}
		}
		r := httptest.NewRequest(http.MethodPost, "/-/uploads?"+tt.query, body)
		if tt.chunk {
			r.ContentLength = -1
		}
		_, err := ParseParams(r)
		if (err == nil) != tt.ok {
			t.Errorf("%q body %q: err %v, want ok=%v", tt.query, tt.body, err, tt.ok)
		}
	}
}

func TestSigV2MatchesTheStandIn(t *testing.T) {
	req := httptest.NewRequest(http.MethodPut, "http://h/Panopto/Upload/abc/a%20b.mp4?uploadId=U%2B1&partNumber=2", nil)
	req.Header.Set("Date", "Tue, 27 Mar 2007 21:15:45 +0000")
	req.Header.Set("Content-Type", "video/mp4")
	req.Header.Set("X-Amz-Meta-B", " 2 ")
	want := "PUT\n\nvideo/mp4\nTue, 27 Mar 2007 21:15:45 +0000\nx-amz-meta-b:2\n/Panopto/Upload/abc/a%20b.mp4?partNumber=2&uploadId=U+1"
	if got := stringToSignV2(req.Method, req.Header, req.URL); got != want || got != panoptofake.SigV2StringToSign(req.Method, req.Header, req.URL) {
		t.Fatalf("string to sign %q, want %q", got, want)
	}
}
