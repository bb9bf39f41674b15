package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

// writeFirst is a client like Ruby's Net::HTTP or Python's http.client: it
// writes the request head and the whole body of size bytes, and only then
// reads the answer. It fails where the server closed the connection on it.
func writeFirst(t *testing.T, addr, head string, size int64) (*http.Response, []byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute)) // a hang fails, it does not block the suite
	w := bufio.NewWriterSize(c, 64<<10)
	if _, err := io.WriteString(w, head); err != nil {
		return nil, nil, err
	}
	if _, err := io.Copy(w, panoptofake.PatternReader(size)); err != nil {
		return nil, nil, fmt.Errorf("write body: %w", err)
	}
	if err := w.Flush(); err != nil {
		return nil, nil, fmt.Errorf("write body: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("read answer: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// TestLingerRefusalsReachWriteFirstClients: every kind of refusal the
// sidecar gives before it reads a body (bad upload parameters, no route,
// not connected, no shared secret, a forward-proxy target) reaches a client
// that sends all of its 32 MiB body before it reads.
func TestLingerRefusalsReachWriteFirstClients(t *testing.T) {
	const size = 32 << 20
	e := newEnv(t, envConfig{})
	srv := httptest.NewServer(Linger(e.h))
	t.Cleanup(srv.Close)
	es := newEnv(t, envConfig{secret: "s3cr3t-for-linger"})
	srvSecret := httptest.NewServer(Linger(es.h))
	t.Cleanup(srvSecret.Close)

	for _, tc := range []struct {
		name, target string
		srv          *httptest.Server
		status       int
		code         string
	}{
		{"upload with a bad folder_id", "/-/uploads?folder_id=COS10009&name=a.mp4", srv, 400, "bad_request"},
		{"upload, not connected", "/-/uploads?folder_id=" + panoptofake.FolderCOS10009 + "&name=a.mp4", srv, 503, "panopto_not_connected"},
		{"no route", "/nowhere", srv, 404, "no_route"},
		{"proxy route, not connected", "/Panopto/PublicAPI/REST/sessionUpload", srv, 503, "panopto_not_connected"},
		{"no shared secret", "/-/uploads?folder_id=" + panoptofake.FolderCOS10009 + "&name=a.mp4", srvSecret, 401, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.srv.Listener.Addr().String()
			for _, framing := range []string{fmt.Sprintf("Content-Length: %d", size), "Transfer-Encoding: chunked"} {
				head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n", tc.target, addr, framing)
				var resp *http.Response
				var body []byte
				var err error
				if strings.HasPrefix(framing, "Transfer") {
					resp, body, err = writeFirstChunked(t, addr, head, size)
				} else {
					resp, body, err = writeFirst(t, addr, head, size)
				}
				if err != nil {
					t.Fatalf("%s: %v", framing, err)
				}
				var m map[string]any
				_ = json.Unmarshal(body, &m)
				if resp.StatusCode != tc.status || m["error"] != tc.code || resp.ContentLength != int64(len(body)) {
					t.Fatalf("%s: answer %d %q (Content-Length %d), want %d %s", framing, resp.StatusCode, body, resp.ContentLength, tc.status, tc.code)
				}
			}
		})
	}
	if st := e.fake.Stats(); st.APICalls != 0 || st.UploadRequests != 0 {
		t.Fatalf("something reached Panopto: %+v", st)
	}
}

// writeFirstChunked is writeFirst with a chunked body.
func writeFirstChunked(t *testing.T, addr, head string, size int64) (*http.Response, []byte, error) {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		cw := httputilChunked(pw)
		_, err := io.Copy(cw, panoptofake.PatternReader(size))
		if err == nil {
			err = cw.Close()
		}
		pw.CloseWithError(err)
	}()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.WriteString(c, head); err != nil {
		return nil, nil, err
	}
	if _, err := io.Copy(c, pr); err != nil {
		return nil, nil, fmt.Errorf("write body: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("read answer: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// chunkedWriter frames what is written as HTTP/1.1 chunks.
type chunkedWriter struct{ w io.Writer }

func httputilChunked(w io.Writer) *chunkedWriter { return &chunkedWriter{w} }

func (c *chunkedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if _, err := fmt.Fprintf(c.w, "%x\r\n", len(p)); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	if err == nil {
		_, err = io.WriteString(c.w, "\r\n")
	}
	return n, err
}

func (c *chunkedWriter) Close() error {
	_, err := io.WriteString(c.w, "0\r\n\r\n")
	return err
}

// TestLingerExpectContinue: a refused request with Expect: 100-continue
// gets its answer, whole and with no 100 Continue before it, while the
// client has sent no byte of the body; a client that stops waiting for the
// 100 and sends the body anyway reads the answer too.
func TestLingerExpectContinue(t *testing.T) {
	e := newEnv(t, envConfig{})
	srv := httptest.NewServer(Linger(e.h))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	head := fmt.Sprintf("POST /-/uploads?folder_id=bad&name=a.mp4 HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, 32<<20)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 400 ") {
		t.Fatalf("first line %q (%v), want the 400 and no 100 Continue", status, err)
	}
	rr := bufio.NewReader(io.MultiReader(strings.NewReader(status), br))
	resp, err := http.ReadResponse(rr, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Whole, with a Content-Length: the client needs nothing more from the
	// connection to finish reading it.
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.ContentLength != int64(len(body)) || !strings.Contains(string(body), "folder_id must be a GUID") {
		t.Fatalf("answer %q (Content-Length %d): %v", body, resp.ContentLength, err)
	}
	if !resp.Close {
		t.Errorf("the answer does not say the connection closes: %v", resp.Header)
	}
	// The client sends nothing and is done: nothing more comes, no late
	// 100 Continue either, and the server closes.
	_ = c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(rr); len(rest) != 0 {
		t.Fatalf("after the answer: %q (%v)", rest, err)
	}
	c.Close()

	// A client that gave up waiting for the 100 and sends the body.
	resp2, body2, err := writeFirst(t, addr, head, 32<<20)
	if err != nil || resp2.StatusCode != 400 || !strings.Contains(string(body2), "folder_id must be a GUID") {
		t.Fatalf("client sending after Expect: %v %q", err, body2)
	}
}

// TestLingerLeavesTheRestAlone: successful answers, refusals after the
// body was read, and bodiless requests pass through as the handler wrote
// them.
func TestLingerLeavesTheRestAlone(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("read") != "" {
			_, _ = io.Copy(io.Discard, r.Body)
		}
		code := http.StatusOK
		if r.URL.Query().Get("refuse") != "" {
			code = http.StatusConflict
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "answer")
	})
	srv := httptest.NewServer(Linger(h))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		method, query string
		status        int
	}{
		{"POST", "", 200},
		{"POST", "refuse=1&read=1", 409},
		{"POST", "refuse=1", 409},
		{"GET", "refuse=1", 409},
	} {
		var body io.Reader
		if tc.method == "POST" {
			body = strings.NewReader(strings.Repeat("x", 1<<20))
		}
		req, _ := http.NewRequest(tc.method, srv.URL+"/?"+tc.query, body)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || string(b) != "answer" || resp.Header.Get("Content-Type") != "text/plain" {
			t.Fatalf("%s %q: %d %q %v", tc.method, tc.query, resp.StatusCode, b, resp.Header)
		}
	}
}

// TestLingerBounded: a client that stops sending in the middle of its body
// is not waited for beyond the lingering time.
func TestLingerBounded(t *testing.T) {
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	})
	srv := httptest.NewServer(lingering{next: refuse, timeout: 200 * time.Millisecond, max: 1 << 20})
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 8<<20)
	_, _ = io.CopyN(c, panoptofake.PatternReader(8<<20), 512<<10) // and then nothing
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("answer %v: %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	// The server gives up on the rest and closes: the client sees the end.
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection stayed open after the lingering time")
	}
}
