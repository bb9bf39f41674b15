package main

import (
	"bufio"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

const oneShotAppKey = "7c1d2e3f-app-key-for-unilms"

// pacedReader sends r in 1 MiB steps with a pause between them, so an
// upload lasts long enough for tokens of a few seconds to expire.
type pacedReader struct {
	r     io.Reader
	pause time.Duration
	step  int64
	left  int64
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		time.Sleep(p.pause)
		p.left = p.step
	}
	b = b[:min(int64(len(b)), p.left)]
	n, err := p.r.Read(b)
	p.left -= int64(n)
	return n, err
}

// startPanoptoTLS serves the stand-in (through wrap, when not nil) over TLS
// and writes its certificate where upstream_ca_file can name it.
func startPanoptoTLS(t *testing.T, dir string, o panoptofake.Options, wrap func(*panoptofake.Server) http.Handler) (*panopto, string) {
	t.Helper()
	o.ClientID, o.ClientSecret = testClientID, testClientSecret
	f := panoptofake.New(o)
	registerFake(f)
	var h http.Handler = f
	if wrap != nil {
		h = wrap(f)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	ca := filepath.Join(dir, "upstream-ca.pem")
	writeFile(t, ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	return &panopto{Server: f, URL: srv.URL}, ca
}

// killAtProcess expires every access token at the stand-in as the first
// request to process an upload (PUT sessionUpload State=1) arrives, before
// the stand-in checks its bearer: that request carries a token killed
// behind the sidecar's back, whatever refreshes ran before.
type killAtProcess struct {
	*panoptofake.Server
	once sync.Once
}

func (k *killAtProcess) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/Panopto/PublicAPI/REST/sessionUpload/") {
		k.once.Do(k.ExpireAllAccessTokens)
	}
	k.Server.ServeHTTP(w, r)
}

type uploadAnswer struct {
	Status int
	ID     string `json:"id"`
	State  int    `json:"state"`
	Folder string `json:"folder_id"`
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	Error  string `json:"error"`
	// Failures only.
	Aborted   bool `json:"multipart_aborted"`
	Cancelled bool `json:"session_cancelled"`
}

// postUpload sends body to POST /-/uploads as account; size < 0 sends it
// chunked.
func postUpload(t *testing.T, base, account, query string, body io.Reader, size int64) uploadAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/-/uploads?"+query, body)
	req.ContentLength = size
	if account != "" {
		req.Header.Set("X-Panopto-User", account)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		t.Fatalf("POST /-/uploads: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a uploadAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("POST /-/uploads answered %d %q", resp.StatusCode, b)
	}
	a.Status = resp.StatusCode
	return a
}

type uploadState struct {
	ID        string `json:"id"`
	State     int    `json:"state"`
	StateName string `json:"state_name"`
	SessionID string `json:"session_id"` // an upload not watched
	Message   string `json:"message"`
	// A watched upload names its session here.
	Session *struct {
		ID string `json:"id"`
	} `json:"session"`
}

// pollUpload GETs /-/uploads/{id} as account until a final state, which
// the sidecar's watch reads from Panopto 2 s and then 4 s later.
func pollUpload(t *testing.T, base, account, id string) uploadState {
	t.Helper()
	for range 300 {
		req, _ := http.NewRequest(http.MethodGet, base+"/-/uploads/"+id, nil)
		if account != "" {
			req.Header.Set("X-Panopto-User", account)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var st uploadState
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil {
			t.Fatalf("GET /-/uploads/%s: %d %v", id, resp.StatusCode, err)
		}
		if st.SessionID == "" && st.Session != nil {
			st.SessionID = st.Session.ID
		}
		switch st.State {
		case 2, 4, 5, 7, 8:
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("upload %s never reached a final state", id)
	return uploadState{}
}

// TestUploadOneRequest: two accounts (identity-provider mode) upload at the
// same time in one request each, over plain HTTP and over TLS to the
// upstream, with tokens of 2 s that expire (and are killed by the stand-in)
// while the bodies stream; one body has a Content-Length, the other is
// chunked. Each session lands as its own Panopto user and reaches State 4.
func TestUploadOneRequest(t *testing.T) {
	t.Parallel()
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[useTLS], func(t *testing.T) {
			t.Parallel()
			uploadOneRequest(t, useTLS)
		})
	}
}

func uploadOneRequest(t *testing.T, useTLS bool) {
	dir := t.TempDir()
	addr := holdAddr(t)
	o := panoptofake.Options{
		RedirectURIs:      []string{"http://" + addr + "/redirect"},
		IdentityProviders: map[string]string{"unilms": oneShotAppKey},
		AccessTTL:         2 * time.Second,
		PublicAPI403:      useTLS,
		S3SecretKey:       "dummy",
	}
	var pan *panopto
	extra := ""
	kill := func(f *panoptofake.Server) http.Handler { return &killAtProcess{Server: f} }
	if useTLS {
		var ca string
		pan, ca = startPanoptoTLS(t, dir, o, kill)
		extra = "upstream_ca_file: " + ca + "\n"
	} else {
		o.ClientID, o.ClientSecret = testClientID, testClientSecret
		f := panoptofake.New(o)
		registerFake(f)
		srv := httptest.NewServer(kill(f))
		t.Cleanup(srv.Close)
		pan = &panopto{Server: f, URL: srv.URL}
	}
	cfg := baseConfig(pan.URL, dir) + extra + "accounts: {mode: idp, provider: unilms}\nuploads: {part_size: 5MiB, concurrency: 2}\n"
	sc := startSidecar(t, dir, addr, cfg, map[string]string{"PANOPTO_APP_KEY": oneShotAppKey})

	const size = 24<<20 + 4321 // 5 parts, the last short
	type outcome struct {
		account string
		a       uploadAnswer
	}
	results := make(chan outcome, 2)
	start := time.Now()
	for i, account := range []string{"alice", "bob"} {
		go func() {
			// About 3 s per upload: past a 2 s token's life.
			body := &pacedReader{r: panoptofake.PatternReader(size), pause: 120 * time.Millisecond, step: 1 << 20}
			n := int64(size)
			if i == 1 {
				n = -1 // chunked
			}
			q := url.Values{"folder_id": {panoptofake.FolderCOS10009}, "name": {account + "'s demo & notes.mp4"}, "title": {"Task <7.2> by " + account}}
			results <- outcome{account, postUpload(t, sc.URL, account, q.Encode(), body, n)}
		}()
	}
	testsupport.WaitFor(t, 10*time.Second, "both uploads under way at Panopto", func() bool {
		return len(pan.UploadIDs()) == 2 && pan.Stats().UploadRequests >= 4 // two multipart uploads begun, two parts
	})
	atExpiry := pan.Stats()
	pan.ExpireAllAccessTokens() // behind the sidecar's back, mid-upload
	for range 2 {
		r := <-results
		a := r.a
		if a.Status != 201 || a.State != 1 || a.Bytes != size || a.Folder != panoptofake.FolderCOS10009 || a.Name != r.account+"'s demo & notes.mp4" {
			t.Fatalf("%s: answer %+v", r.account, a)
		}
		st := pollUpload(t, sc.URL, r.account, a.ID)
		info, _ := pan.Upload(a.ID)
		if st.State != 4 || st.StateName != "Complete" || st.SessionID == "" || st.SessionID != info.SessionID || st.ID != a.ID {
			t.Fatalf("%s: state %+v (%s)", r.account, st, info.Message)
		}
		if want := `unilms\` + r.account; info.CreatedBy != want {
			t.Errorf("%s's upload created by %q, want %q", r.account, info.CreatedBy, want)
		}
		obj := info.Objects[a.Name]
		if obj.Size != size || len(obj.PartSizes) != 5 || obj.ETag != panoptofake.PatternETag(size, 5<<20) {
			t.Errorf("%s: object %+v", r.account, obj)
		}
		if m := info.Manifest; m == nil || m.Title != "Task <7.2> by "+r.account || strings.Join(m.Files, ",") != a.Name {
			t.Errorf("%s: manifest %+v", r.account, m)
		}
		if info.Cancelled || info.PendingMultipart != 0 || info.AbortedMultipart != 0 {
			t.Errorf("%s: upload %+v", r.account, info)
		}
	}
	elapsed := time.Since(start)
	st := pan.Stats()
	// Every token the sidecar held died mid-upload; the uploads finished
	// with new ones.
	// Every token the sidecar held died twice: while the bodies streamed
	// (the sidecar may have refreshed before using its token again), and
	// just before the first upload was processed: that bearer was refused,
	// the sidecar refreshed and processed it with the new token.
	if refused := st.Unauthorized + st.Forbidden - atExpiry.Unauthorized - atExpiry.Forbidden; refused == 0 || st.Refreshes-atExpiry.Refreshes < refused {
		t.Errorf("after the expiries: %d refused bearers, %d refreshes; want at least one, and a refresh for each", refused, st.Refreshes-atExpiry.Refreshes)
	}
	if st.UploadBearer != 0 || st.UploadRefused != 0 || st.UploadBadSignature != 0 || st.UploadSigV2 != 2*8 {
		t.Errorf("upload target saw %d bearers, %d refused bodies, %d bad of %d SigV2 signatures", st.UploadBearer, st.UploadRefused, st.UploadBadSignature, st.UploadSigV2)
	}
	if st.RefreshReuse != 0 || st.GrantsRevoked != 0 {
		t.Errorf("refresh token reused %d, grants revoked %d", st.RefreshReuse, st.GrantsRevoked)
	}
	metrics := fetch(t, sc.URL+"/metrics")
	for series, want := range map[string]float64{
		"panopto_sidecar_uploads_started_total":   2,
		"panopto_sidecar_uploads_completed_total": 2,
		"panopto_sidecar_upload_bytes_total":      2 * size,
	} {
		if got := metricValue(metrics, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	logs := sc.LogsAtStop()
	var lines int
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"msg":"upload"`) {
			lines++
			for _, k := range []string{`"id":"`, `"account":"`, `"bytes":` + strconv.Itoa(size), `"dur":`, `"result":"completed"`} {
				if !strings.Contains(l, k) {
					t.Errorf("upload log line lacks %s: %s", k, l)
				}
			}
		}
	}
	if lines != 2 {
		t.Errorf("%d upload log lines, want one per upload", lines)
	}
	assertNoSecrets(t, append(secretsIn(t, dir), pan.Secrets()...), map[string]string{"logs": logs, "metrics": metrics})
	t.Logf("two uploads of %.1f MiB each, paced, with 2 s tokens: %v; %d token calls", float64(size)/(1<<20), elapsed.Round(time.Millisecond), st.Issued)
}

// TestUploadOneRequestRefusals: bad parameters are answered 400 and an
// unconnected account 503 before anything is created at Panopto.
func TestUploadOneRequestRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{
		RedirectURIs:      []string{"http://" + addr + "/redirect"},
		IdentityProviders: map[string]string{"unilms": oneShotAppKey},
	})
	sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir)+"accounts: {mode: idp, provider: unilms}\n", map[string]string{"PANOPTO_APP_KEY": oneShotAppKey})
	f := panoptofake.FolderOnTrack
	for _, tc := range []struct {
		name, account, query string
		body                 string
		status               int
	}{
		{"folder not a GUID", "alice", "folder_id=COS10009&name=a.mp4", "x", 400},
		{"no folder", "alice", "name=a.mp4", "x", 400},
		{"empty name", "alice", "folder_id=" + f + "&name=", "x", 400},
		{"no name", "alice", "folder_id=" + f, "x", 400},
		{"name with a path", "alice", "folder_id=" + f + "&name=..%2Fsecret.mp4", "x", 400},
		{"name with a backslash", "alice", "folder_id=" + f + "&name=a%5Cb.mp4", "x", 400},
		{"name with a control character", "alice", "folder_id=" + f + "&name=a%0D%0Ab.mp4", "x", 400},
		{"missing body", "alice", "folder_id=" + f + "&name=a.mp4", "", 400},
		{"unconnected account", "", "folder_id=" + f + "&name=a.mp4", "x", 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			a := postUpload(t, sc.URL, tc.account, tc.query, body, int64(len(tc.body)))
			if a.Status != tc.status || a.ID != "" {
				t.Fatalf("answer %+v, want %d", a, tc.status)
			}
		})
	}
	if code := statusCode(sc.URL + "/-/uploads/not-a-guid"); code != 400 {
		t.Errorf("GET /-/uploads/not-a-guid: %d", code)
	}
	st := pan.Stats()
	if st.APICalls != 0 || st.UploadRequests != 0 || len(pan.UploadIDs()) != 0 {
		t.Fatalf("something reached Panopto: %d API calls, %d upload requests, %d uploads", st.APICalls, st.UploadRequests, len(pan.UploadIDs()))
	}
}

// TestUploadOneRequestClientKilled: the client dies 20 MiB into a 100 MiB
// body. The sidecar aborts the multipart upload and cancels the
// sessionUpload: the stand-in holds nothing half-done.
func TestUploadOneRequestClientKilled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}})
	sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir)+"uploads: {part_size: 5MiB}\n", nil)
	logIn(t, sc.URL)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "POST /-/uploads?folder_id=%s&name=killed.mp4 HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", panoptofake.FolderOnTrack, addr, 100<<20)
	if _, err := io.CopyN(w, panoptofake.PatternReader(100<<20), 20<<20); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	testsupport.WaitFor(t, 10*time.Second, "parts at the upload target", func() bool { return pan.Stats().UploadRequests >= 3 })
	conn.Close() // killed mid-body

	var info panoptofake.UploadInfo
	testsupport.WaitFor(t, 15*time.Second, "the upload aborted and cancelled at Panopto", func() bool {
		ids := pan.UploadIDs()
		if len(ids) != 1 {
			return false
		}
		info, _ = pan.Upload(ids[0])
		return info.Cancelled && info.AbortedMultipart == 1
	})
	if info.PendingMultipart != 0 || len(info.Objects) != 0 || info.State != panoptofake.StateUploadCancelled {
		t.Fatalf("left at Panopto: %+v", info)
	}
	testsupport.WaitFor(t, 5*time.Second, "the failure counted", func() bool {
		return strings.Contains(fetch(t, sc.URL+"/metrics"), "panopto_sidecar_uploads_failed_total{reason=")
	})
	if l := sc.LogsAtStop(); !strings.Contains(l, `"result":"failed"`) || !strings.Contains(l, `"cancelled":true`) || !strings.Contains(l, `"aborted":true`) {
		t.Fatalf("no failed upload log line:\n%s", lastLines(l, 10))
	}
}

// TestUploadOneRequest1GiB: the real binary takes a 1 GiB upload in one
// request with the default 16 MiB parts; it reaches State 4 and the
// sidecar's peak RSS (VmHWM) stays within 96 MiB.
func TestUploadOneRequest1GiB(t *testing.T) {
	t.Parallel()
	const size = 1 << 30
	bin := buildSidecar(t)
	addr := childAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, S3SecretKey: "dummy"})
	rs := startRealSidecar(t, bin, addr, pan, "")
	cmd, base, logPath := rs.cmd, rs.base, rs.logPath

	start := time.Now()
	a := postUpload(t, base, "", "folder_id="+panoptofake.FolderStaff+"&name=lecture.mp4", panoptofake.PatternReader(size), size)
	took := time.Since(start)
	hwm := vmHWM(t, cmd.Process.Pid)
	if a.Status != 201 || a.Bytes != size {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("answer %+v\n%s", a, lastLines(string(b), 10))
	}
	if st := pollUpload(t, base, "", a.ID); st.State != 4 {
		t.Fatalf("state %+v", st)
	}
	info, _ := pan.Upload(a.ID)
	if obj := info.Objects["lecture.mp4"]; obj.Size != size || len(obj.PartSizes) != 64 || obj.PartSizes[0] != 16<<20 {
		t.Fatalf("object %+v", obj)
	}
	t.Logf("1 GiB in one request: %v, %.0f MB/s; sidecar peak RSS %.1f MiB", took.Round(time.Millisecond), size/1e6/took.Seconds(), float64(hwm)/(1<<20))
	if hwm > 96<<20 {
		t.Fatalf("sidecar peak RSS %.1f MiB, want at most 96 MiB", float64(hwm)/(1<<20))
	}
}

// vmHWM reads a process's peak resident set size from /proc.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
