package panoptofake

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

const testManifest = `<?xml version="1.0" encoding="utf-8"?>
<Session xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns="http://tempuri.org/UniversalCaptureSpecification/v1">
  <Title>Task 3.1 walkthrough</Title>
  <Description>Submitted from OnTrack</Description>
  <Date>2026-01-02T03:04:05.000-00:00</Date>
  <Videos>
    <Video>
      <Start>PT0S</Start>
      <File>%s</File>
      <Type>Primary</Type>
    </Video>
  </Videos>
</Session>`

// createUpload returns the sessionUpload object as a map (the whole object,
// for PUTting back).
func (e *env) createUpload(tok string) map[string]any {
	e.t.Helper()
	st, b := e.do(http.MethodPost, "/Panopto/PublicAPI/REST/sessionUpload", tok, strings.NewReader(`{"FolderId":"`+FolderOnTrack+`"}`))
	if st != http.StatusCreated {
		e.t.Fatalf("create upload: %d %s", st, b)
	}
	var u map[string]any
	if err := json.Unmarshal(b, &u); err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *env) getUpload(tok, id string) map[string]any {
	e.t.Helper()
	st, b := e.do(http.MethodGet, "/Panopto/PublicAPI/REST/sessionUpload/"+id, tok, nil)
	if st != 200 {
		e.t.Fatalf("get upload: %d %s", st, b)
	}
	var u map[string]any
	_ = json.Unmarshal(b, &u)
	return u
}

func (e *env) putUpload(tok string, u map[string]any) (int, []byte) {
	e.t.Helper()
	return e.putUploadAt(tok, u["ID"].(string), u)
}

func (e *env) putUploadAt(tok, id string, u map[string]any) (int, []byte) {
	e.t.Helper()
	b, _ := json.Marshal(u)
	return e.do(http.MethodPut, "/Panopto/PublicAPI/REST/sessionUpload/"+id, tok, bytes.NewReader(b))
}

// putObject PUTs a whole object to the upload target with plain HTTP.
func (e *env) putObject(target, key string, body []byte, hdr map[string]string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPut, target+"/"+key, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSessionUploadStateMachine(t *testing.T) {
	media := []byte("not really an mp4")
	tests := []struct {
		name       string
		polls      int
		objects    map[string]string // key -> body ("" = media)
		wantStates []float64
		wantMsg    string
	}{
		{"complete", 0, map[string]string{"file.mp4": "", "manifest.xml": fmt.Sprintf(testManifest, "file.mp4")}, []float64{3, 4, 4}, ""},
		{"complete after 3 polls", 3, map[string]string{"file.mp4": "", "manifest.xml": fmt.Sprintf(testManifest, "file.mp4")}, []float64{3, 3, 4}, ""},
		{"source attribute", 0, map[string]string{"a.mp4": "", "m.xml": `<Session><Title>T</Title><Videos><File Source="a.mp4"/></Videos></Session>`}, []float64{3, 4}, ""},
		{"no manifest", 0, map[string]string{"file.mp4": ""}, []float64{3, 5, 5}, "ManifestMissing"},
		{"manifest names a missing file", 0, map[string]string{"file.mp4": "", "manifest.xml": fmt.Sprintf(testManifest, "other.mp4")}, []float64{3, 5}, "MediaFileMissing: other.mp4"},
		{"manifest not xml", 0, map[string]string{"file.mp4": "", "manifest.xml": "{}"}, []float64{3, 5}, "ManifestInvalid"},
		{"manifest without media", 0, map[string]string{"manifest.xml": "<Session><Title>x</Title></Session>"}, []float64{3, 5}, "ManifestHasNoMedia"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.ProcessingPolls = tt.polls })
			tok := e.login().str("access_token")
			u := e.createUpload(tok)
			id := u["ID"].(string)
			if u["State"] != float64(0) || u["SessionId"] != nil || u["FolderId"] != FolderOnTrack ||
				u["UploadTarget"] != e.ts.URL+"/Panopto/Upload/"+id {
				t.Fatalf("created %v", u)
			}
			for k, v := range tt.objects {
				body := []byte(v)
				if v == "" {
					body = media
				}
				if st, b := e.putObject(u["UploadTarget"].(string), k, body, nil); st != 200 {
					t.Fatalf("put %s: %d %s", k, st, b)
				}
			}
			if got := e.getUpload(tok, id); got["State"] != float64(0) {
				t.Fatalf("state before PUT %v", got["State"])
			}
			u["State"] = 1
			if st, b := e.putUpload(tok, u); st != 200 {
				t.Fatalf("put state 1: %d %s", st, b)
			}
			var last map[string]any
			for i, want := range tt.wantStates {
				last = e.getUpload(tok, id)
				if last["State"] != want {
					t.Fatalf("poll %d: State %v, want %v", i+1, last["State"], want)
				}
			}
			info, _ := e.s.Upload(id)
			if info.Message != tt.wantMsg {
				t.Fatalf("message %q, want %q", info.Message, tt.wantMsg)
			}
			if msg, _ := last["Message"].(string); msg != tt.wantMsg || (tt.wantMsg != "") != (last["MessageID"] != nil) {
				t.Fatalf("Message %v MessageID %v, want %q", last["Message"], last["MessageID"], tt.wantMsg)
			}
			if tt.wantMsg != "" && last["SessionId"] != nil {
				t.Fatalf("a failed upload has SessionId %v", last["SessionId"])
			}
			if tt.wantMsg == "" {
				sid, _ := last["SessionId"].(string)
				if sid == "" || info.SessionID != sid {
					t.Fatalf("SessionId %v", last["SessionId"])
				}
				if st, _ := e.do(http.MethodGet, "/Panopto/api/v1/sessions/"+sid, tok, nil); st != 200 {
					t.Fatalf("completed session not listed: %d", st)
				}
			}
			// The target is closed once processing was requested.
			if st, _ := e.putObject(u["UploadTarget"].(string), "late.mp4", media, nil); st != 403 {
				t.Fatalf("late upload: %d", st)
			}
		})
	}
}

// TestProcessingDelay: with a processing delay the upload stays Processing
// however often it is polled, its SessionId is known from the first poll,
// and the session reads as Panopto's does: URLs at once, Duration only once
// processing completed.
func TestProcessingDelay(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ProcessingDelay = 90 * time.Second })
	tok := e.login().str("access_token")
	u := e.createUpload(tok)
	id := u["ID"].(string)
	target := u["UploadTarget"].(string)
	media := make([]byte, 3<<20)
	for k, body := range map[string][]byte{"file.mp4": media, "manifest.xml": []byte(fmt.Sprintf(testManifest, "file.mp4"))} {
		if st, b := e.putObject(target, k, body, nil); st != 200 {
			t.Fatalf("put %s: %d %s", k, st, b)
		}
	}
	u["State"] = 1
	if st, b := e.putUpload(tok, u); st != 200 {
		t.Fatalf("put state 1: %d %s", st, b)
	}
	session := func(sid string) map[string]any {
		t.Helper()
		st, b := e.do(http.MethodGet, "/Panopto/api/v1/sessions/"+sid, tok, nil)
		var m map[string]any
		if st != 200 || json.Unmarshal(b, &m) != nil {
			t.Fatalf("GET session %s: %d %s", sid, st, b)
		}
		return m
	}
	var sid string
	for i := range 5 {
		got := e.getUpload(tok, id)
		s, _ := got["SessionId"].(string)
		if got["State"] != float64(3) || s == "" || sid != "" && s != sid {
			t.Fatalf("poll %d before the delay: State %v SessionId %v", i+1, got["State"], got["SessionId"])
		}
		sid = s
		e.clock.Advance(10 * time.Second)
	}
	m := session(sid)
	urls, _ := m["Urls"].(map[string]any)
	origin := e.ts.URL + "/Panopto/"
	for _, k := range []string{"ViewerUrl", "EmbedUrl", "ThumbnailUrl"} {
		if v, _ := urls[k].(string); !strings.HasPrefix(v, origin) || !strings.Contains(v, sid) {
			t.Errorf("processing session %s = %v", k, urls[k])
		}
	}
	if m["Duration"] != nil || m["Name"] != "Task 3.1 walkthrough" {
		t.Errorf("processing session Duration %v Name %v, want null and the manifest's title", m["Duration"], m["Name"])
	}
	e.clock.Advance(40 * time.Second) // 90 s after the hand-over
	if got := e.getUpload(tok, id); got["State"] != float64(4) || got["SessionId"] != sid {
		t.Fatalf("after the delay: State %v SessionId %v, want 4 %s", got["State"], got["SessionId"], sid)
	}
	if d, _ := session(sid)["Duration"].(float64); d != 12 {
		t.Errorf("completed session Duration %v, want 12 (3 MiB at 256 KiB a second)", d)
	}
}

func TestSessionUploadPutChecks(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(u map[string]any)
		status int
	}{
		{"ok", func(u map[string]any) { u["State"] = 1 }, 200},
		{"cancel", func(u map[string]any) { u["State"] = 2 }, 200},
		{"rewritten UploadTarget", func(u map[string]any) {
			u["State"] = 1
			u["UploadTarget"] = "http://127.0.0.1:9127/Panopto/Upload/" + u["ID"].(string)
		}, 400},
		{"no UploadTarget", func(u map[string]any) { u["State"] = 1; delete(u, "UploadTarget") }, 400},
		{"no ID", func(u map[string]any) { u["State"] = 1; delete(u, "ID") }, 400},
		{"other FolderId", func(u map[string]any) { u["State"] = 1; u["FolderId"] = FolderStaff }, 400},
		{"state 0", func(u map[string]any) {}, 400},
		{"state 4", func(u map[string]any) { u["State"] = 4 }, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tok := e.login().str("access_token")
			u := e.createUpload(tok)
			id := u["ID"].(string)
			tt.mod(u)
			if st, b := e.putUploadAt(tok, id, u); st != tt.status {
				t.Fatalf("got %d %s, want %d", st, b, tt.status)
			}
		})
	}

	e := newEnv(t, nil)
	tok := e.login().str("access_token")
	u := e.createUpload(tok)
	u["State"] = 2
	e.putUpload(tok, u)
	if st, _ := e.putUpload(tok, u); st != 200 {
		t.Fatalf("idempotent retry: %d", st)
	}
	u["State"] = 1
	if st, _ := e.putUpload(tok, u); st != http.StatusConflict {
		t.Fatalf("process after cancel: %d", st)
	}
	if got := e.getUpload(tok, u["ID"].(string)); got["State"] != float64(2) {
		t.Fatalf("cancelled upload moved: %v", got["State"])
	}
	for _, body := range []string{`{"FolderId":"not-a-guid"}`, `nope`, `{}`} {
		if st, _ := e.do(http.MethodPost, "/Panopto/PublicAPI/REST/sessionUpload", tok, strings.NewReader(body)); st != 400 {
			t.Fatalf("create with %s: %d", body, st)
		}
	}
	if st, _ := e.do(http.MethodGet, "/Panopto/PublicAPI/REST/sessionUpload/"+newGUID(), tok, nil); st != 404 {
		t.Fatalf("unknown upload: %d", st)
	}
}

func TestUploadTargetOrigin(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PublicOrigin = "https://deakin.au.panopto.com/" })
	tok := e.login().str("access_token")
	u := e.createUpload(tok)
	if u["UploadTarget"] != "https://deakin.au.panopto.com/Panopto/Upload/"+u["ID"].(string) {
		t.Fatalf("UploadTarget %v", u["UploadTarget"])
	}

	tls := httptest.NewTLSServer(New(Options{ClientID: testClientID, ClientSecret: testSecret, Users: map[string]string{"a": "b"}}))
	defer tls.Close()
	resp, err := tls.Client().PostForm(tls.URL+"/Panopto/oauth2/connect/token", url.Values{
		"grant_type": {"password"}, "username": {"a"}, "password": {"b"}, "client_id": {testClientID}, "client_secret": {testSecret},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tr map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	req, _ := http.NewRequest(http.MethodPost, tls.URL+"/Panopto/PublicAPI/REST/sessionUpload", strings.NewReader(`{"FolderId":"`+FolderStaff+`"}`))
	req.Header.Set("Authorization", "Bearer "+tr["access_token"].(string))
	resp, err = tls.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var up map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&up)
	resp.Body.Close()
	if !strings.HasPrefix(up["UploadTarget"].(string), "https://127.0.0.1:") {
		t.Fatalf("UploadTarget over TLS %v", up["UploadTarget"])
	}
}

func s3Code(t *testing.T, body string) string {
	t.Helper()
	var e s3Error
	if err := xml.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not S3 error XML: %q", body)
	}
	return e.Code
}

func TestS3ProtocolErrors(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.login().str("access_token")
	target := e.createUpload(tok)["UploadTarget"].(string)

	do := func(t *testing.T, method, rawURL string, body io.Reader, hdr map[string]string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, rawURL, body)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if v, ok := hdr["Content-Length"]; ok {
			req.ContentLength, _ = strconv.ParseInt(v, 10, 64)
		}
		if r, ok := body.(interface{ Len() int }); ok && body != nil {
			req.ContentLength = int64(r.Len())
		}
		resp, err := e.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	initiate := func(t *testing.T, key string) string {
		st, b, _ := do(t, http.MethodPost, target+"/"+key+"?uploads", nil, nil)
		var r struct{ UploadId string }
		if err := xml.Unmarshal([]byte(b), &r); st != 200 || err != nil || r.UploadId == "" {
			t.Fatalf("initiate: %d %s", st, b)
		}
		return r.UploadId
	}
	part := func(t *testing.T, key, id string, n int, size int64) string {
		st, b, h := do(t, http.MethodPut, fmt.Sprintf("%s/%s?partNumber=%d&uploadId=%s", target, key, n, id), io.LimitReader(PatternReader(size), size), map[string]string{"Content-Length": strconv.FormatInt(size, 10)})
		if st != 200 {
			t.Fatalf("part: %d %s", st, b)
		}
		return h.Get("ETag")
	}
	complete := func(t *testing.T, key, id string, parts ...any) (int, string) {
		var sb strings.Builder
		sb.WriteString("<CompleteMultipartUpload>")
		for i := 0; i < len(parts); i += 2 {
			fmt.Fprintf(&sb, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", parts[i], parts[i+1])
		}
		sb.WriteString("</CompleteMultipartUpload>")
		st, b, _ := do(t, http.MethodPost, target+"/"+key+"?uploadId="+id, strings.NewReader(sb.String()), nil)
		return st, b
	}

	t.Run("entity too small", func(t *testing.T) {
		id := initiate(t, "a.mp4")
		e1 := part(t, "a.mp4", id, 1, 1024)
		e2 := part(t, "a.mp4", id, 2, 10)
		st, b := complete(t, "a.mp4", id, 1, e1, 2, e2)
		if st != 400 || s3Code(t, b) != "EntityTooSmall" {
			t.Fatalf("%d %s", st, b)
		}
	})
	t.Run("wrong etag", func(t *testing.T) {
		id := initiate(t, "b.mp4")
		part(t, "b.mp4", id, 1, 10)
		st, b := complete(t, "b.mp4", id, 1, `"0123456789abcdef0123456789abcdef"`)
		if st != 400 || s3Code(t, b) != "InvalidPart" {
			t.Fatalf("%d %s", st, b)
		}
	})
	t.Run("part order", func(t *testing.T) {
		id := initiate(t, "c.mp4")
		e1 := part(t, "c.mp4", id, 1, 10)
		e2 := part(t, "c.mp4", id, 2, 10)
		st, b := complete(t, "c.mp4", id, 2, e2, 1, e1)
		if st != 400 || s3Code(t, b) != "InvalidPartOrder" {
			t.Fatalf("%d %s", st, b)
		}
	})
	t.Run("no such upload", func(t *testing.T) {
		st, b := complete(t, "d.mp4", "nope", 1, `"x"`)
		if st != 404 || s3Code(t, b) != "NoSuchUpload" {
			t.Fatalf("%d %s", st, b)
		}
		id := initiate(t, "d.mp4")
		if st, b := complete(t, "other.mp4", id, 1, `"x"`); st != 404 || s3Code(t, b) != "NoSuchUpload" {
			t.Fatalf("upload id used for another key: %d %s", st, b)
		}
	})
	t.Run("abort", func(t *testing.T) {
		id := initiate(t, "e.mp4")
		if st, _, _ := do(t, http.MethodDelete, target+"/e.mp4?uploadId="+id, nil, nil); st != 204 {
			t.Fatalf("abort: %d", st)
		}
		if st, b := complete(t, "e.mp4", id, 1, `"x"`); st != 404 || s3Code(t, b) != "NoSuchUpload" {
			t.Fatalf("after abort: %d %s", st, b)
		}
	})
	t.Run("malformed complete", func(t *testing.T) {
		id := initiate(t, "f.mp4")
		if st, b, _ := do(t, http.MethodPost, target+"/f.mp4?uploadId="+id, strings.NewReader("<x"), nil); st != 400 || s3Code(t, b) != "MalformedXML" {
			t.Fatalf("%d %s", st, b)
		}
	})
	t.Run("missing content length", func(t *testing.T) {
		// A reader without Len makes the client send chunked transfer encoding.
		st, b, _ := do(t, http.MethodPut, target+"/g.mp4", io.MultiReader(strings.NewReader("abc")), nil)
		if st != http.StatusLengthRequired || s3Code(t, b) != "MissingContentLength" {
			t.Fatalf("%d %s", st, b)
		}
	})
	t.Run("content-md5 mismatch", func(t *testing.T) {
		sum := md5.Sum([]byte("other"))
		st, b, _ := do(t, http.MethodPut, target+"/h.mp4", strings.NewReader("abc"), map[string]string{"Content-MD5": base64.StdEncoding.EncodeToString(sum[:])})
		if st != 400 || s3Code(t, b) != "BadDigest" {
			t.Fatalf("%d %s", st, b)
		}
	})
	t.Run("sha256 mismatch", func(t *testing.T) {
		st, b, _ := do(t, http.MethodPut, target+"/i.mp4", strings.NewReader("abc"), map[string]string{"x-amz-content-sha256": strings.Repeat("ab", 32)})
		if st != 400 || s3Code(t, b) != "XAmzContentSHA256Mismatch" {
			t.Fatalf("%d %s", st, b)
		}
	})
	t.Run("crc32 header mismatch", func(t *testing.T) {
		st, b, _ := do(t, http.MethodPut, target+"/j.mp4", strings.NewReader("abc"), map[string]string{"x-amz-checksum-crc32": "AAAAAA=="})
		if st != 400 || s3Code(t, b) != "BadDigest" {
			t.Fatalf("%d %s", st, b)
		}
	})
	t.Run("bearer rejected", func(t *testing.T) {
		st, b, _ := do(t, http.MethodPut, target+"/k.mp4", strings.NewReader("abc"), map[string]string{"Authorization": "Bearer " + tok})
		if st != 400 || s3Code(t, b) != "InvalidArgument" || e.s.Stats().UploadBearer != 1 {
			t.Fatalf("%d %s", st, b)
		}
	})
	t.Run("sigv4 accepted, head and get", func(t *testing.T) {
		st, b, h := do(t, http.MethodPut, target+"/l.xml", strings.NewReader("<x/>"), map[string]string{
			"Authorization": "AWS4-HMAC-SHA256 Credential=AKIDUMMY/20260102/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
		})
		sum := md5.Sum([]byte("<x/>"))
		if st != 200 || h.Get("ETag") != `"`+hex.EncodeToString(sum[:])+`"` {
			t.Fatalf("%d %s %v", st, b, h)
		}
		st, _, h = do(t, http.MethodHead, target+"/l.xml", nil, nil)
		if st != 200 || h.Get("Content-Length") != "4" || h.Get("ETag") != `"`+hex.EncodeToString(sum[:])+`"` {
			t.Fatalf("head %d %v", st, h)
		}
		if st, b, _ := do(t, http.MethodGet, target+"/l.xml", nil, nil); st != 200 || b != "<x/>" {
			t.Fatalf("get %d %q", st, b)
		}
		if st, b, _ := do(t, http.MethodGet, target+"/nope.mp4", nil, nil); st != 404 || s3Code(t, b) != "NoSuchKey" {
			t.Fatalf("get missing %d %s", st, b)
		}
	})
	t.Run("unknown upload target", func(t *testing.T) {
		st, b, _ := do(t, http.MethodPut, e.ts.URL+"/Panopto/Upload/"+newGUID()+"/x.mp4", strings.NewReader("abc"), nil)
		if st != 404 || s3Code(t, b) != "NoSuchBucket" {
			t.Fatalf("%d %s", st, b)
		}
	})
}

// chunkedBody frames payload in aws-chunked with the given chunk size and
// trailer lines.
func chunkedBody(payload []byte, chunk int, signed bool, trailers ...string) string {
	var sb strings.Builder
	sig := ""
	if signed {
		sig = ";chunk-signature=" + strings.Repeat("0", 64)
	}
	for len(payload) > 0 {
		n := min(chunk, len(payload))
		fmt.Fprintf(&sb, "%x%s\r\n%s\r\n", n, sig, payload[:n])
		payload = payload[n:]
	}
	fmt.Fprintf(&sb, "0%s\r\n", sig)
	for _, t := range trailers {
		sb.WriteString(t + "\r\n")
	}
	sb.WriteString("\r\n")
	return sb.String()
}

// TestAWSChunkedRefused: Panopto's upload server is not full S3: bodies in
// aws-chunked framing, with or without signatures and trailers, are refused
// and nothing is stored.
func TestAWSChunkedRefused(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 1000)
	crc := crc32.ChecksumIEEE(payload)
	crcB64 := base64.StdEncoding.EncodeToString([]byte{byte(crc >> 24), byte(crc >> 16), byte(crc >> 8), byte(crc)})
	tests := []struct {
		name string
		body string
		hdr  map[string]string
	}{
		{"signed", chunkedBody(payload, 4096, true), map[string]string{"Content-Encoding": "aws-chunked", "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "x-amz-decoded-content-length": strconv.Itoa(len(payload))}},
		{"unsigned trailer", chunkedBody(payload, 8192, false, "x-amz-checksum-crc32:"+crcB64), map[string]string{"Content-Encoding": "aws-chunked", "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-trailer": "x-amz-checksum-crc32", "x-amz-decoded-content-length": strconv.Itoa(len(payload))}},
		{"streaming sha256 only", chunkedBody(payload, 3000, true), map[string]string{"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}},
		{"trailer announced on a plain body", string(payload), map[string]string{"x-amz-trailer": "x-amz-checksum-crc32"}},
		{"decoded length only", string(payload), map[string]string{"x-amz-decoded-content-length": strconv.Itoa(len(payload))}},
		{"content-encoding only", string(payload), map[string]string{"Content-Encoding": "gzip, aws-chunked"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tok := e.login().str("access_token")
			u := e.createUpload(tok)
			st, b := e.putObject(u["UploadTarget"].(string), "v.mp4", []byte(tt.body), tt.hdr)
			if st != http.StatusBadRequest || s3Code(t, b) != "NotImplemented" {
				t.Fatalf("got %d %s, want 400 NotImplemented", st, b)
			}
			info, _ := e.s.Upload(u["ID"].(string))
			if _, stored := info.Objects["v.mp4"]; stored || e.s.Stats().UploadRefused != 1 {
				t.Fatalf("refused body stored (%v) or not counted (%d)", stored, e.s.Stats().UploadRefused)
			}
		})
	}
}

func TestCRC64NVME(t *testing.T) {
	// The CRC-64/NVME check value from the CRC catalogue.
	if got := crc64.Checksum([]byte("123456789"), crc64NVME); got != 0xae8b14860a799888 {
		t.Fatalf("crc64nvme check %x", got)
	}
}

// nonSeekable hides Seek so the SDK must stream with aws-chunked framing.
type nonSeekable struct{ io.Reader }

// TestS3ClientMultipart uploads with the real aws-sdk-go-v2 S3 client: three
// 5 MiB parts streamed from a generator, then the manifest, then asks for
// processing and polls to State 4. The client is configured as Panopto's
// upload server needs (checksums only when required): over TLS it then
// sends unseekable bodies plainly with UNSIGNED-PAYLOAD. The SDK's default
// (a checksum whenever supported) streams them with aws-chunked framing and
// a trailing checksum over TLS, which the stand-in refuses as Panopto does.
func TestS3ClientMultipart(t *testing.T) {
	const partSize = 5 << 20
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[useTLS], func(t *testing.T) {
			clock := &testsupport.Clock{}
			s := New(Options{ClientID: testClientID, ClientSecret: testSecret, Users: map[string]string{"alice": "wonderland"}, Now: clock.Now})
			var ts *httptest.Server
			var chunkedMu sync.Mutex
			chunked := 0
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") {
					chunkedMu.Lock()
					chunked++
					chunkedMu.Unlock()
				}
				s.ServeHTTP(w, r)
			})
			if useTLS {
				ts = httptest.NewTLSServer(h)
			} else {
				ts = httptest.NewServer(h)
			}
			defer ts.Close()
			e := &env{t: t, s: s, ts: ts, clock: clock, c: ts.Client()}
			tok := e.post("/Panopto/oauth2/connect/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}, true).str("access_token")
			up := e.createUpload(tok)
			id := up["ID"].(string)
			target, _ := url.Parse(up["UploadTarget"].(string))

			client := s3.New(s3.Options{
				Region:                     "us-east-1",
				Credentials:                credentials.NewStaticCredentialsProvider("AKIDUMMY", "dummy-secret", ""),
				BaseEndpoint:               aws.String(target.Scheme + "://" + target.Host),
				UsePathStyle:               true,
				HTTPClient:                 ts.Client(),
				RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
			})
			ctx := context.Background()
			bucket, key := "Panopto", "Upload/"+id+"/file.mp4"
			mu, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key})
			if err != nil {
				t.Fatalf("create multipart: %v", err)
			}
			if useTLS {
				// What s3.NewFromConfig defaults to: a CRC32 on every upload,
				// as an aws-chunked trailer for an unseekable body.
				eager := s3.New(s3.Options{
					Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDUMMY", "dummy-secret", ""),
					BaseEndpoint: aws.String(target.Scheme + "://" + target.Host), UsePathStyle: true, HTTPClient: ts.Client(),
					RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
					RetryMaxAttempts:           1,
				})
				_, err := eager.UploadPart(ctx, &s3.UploadPartInput{
					Bucket: &bucket, Key: &key, UploadId: mu.UploadId, PartNumber: aws.Int32(1),
					Body: nonSeekable{PatternReader(partSize)}, ContentLength: aws.Int64(partSize),
				})
				if err == nil || !strings.Contains(err.Error(), "NotImplemented") {
					t.Fatalf("an aws-chunked part with a trailing checksum: err %v, want NotImplemented", err)
				}
				chunkedMu.Lock()
				chunked = 0
				chunkedMu.Unlock()
			}
			var parts []types.CompletedPart
			var md5s []byte
			for n := int32(1); n <= 3; n++ {
				var body io.Reader = PatternReader(partSize)
				if useTLS {
					body = nonSeekable{body}
				}
				out, err := client.UploadPart(ctx, &s3.UploadPartInput{
					Bucket: &bucket, Key: &key, UploadId: mu.UploadId, PartNumber: aws.Int32(n),
					Body: body, ContentLength: aws.Int64(partSize),
				})
				if err != nil {
					t.Fatalf("part %d: %v", n, err)
				}
				h := md5.New()
				_, _ = io.Copy(h, PatternReader(partSize))
				sum := h.Sum(nil)
				md5s = append(md5s, sum...)
				if *out.ETag != `"`+hex.EncodeToString(sum)+`"` {
					t.Fatalf("part %d ETag %s", n, *out.ETag)
				}
				parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})
			}
			done, err := client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
				Bucket: &bucket, Key: &key, UploadId: mu.UploadId,
				MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
			})
			if err != nil {
				t.Fatalf("complete: %v", err)
			}
			wantETag := fmt.Sprintf(`"%x-3"`, md5.Sum(md5s))
			if *done.ETag != wantETag {
				t.Fatalf("object ETag %s, want %s", *done.ETag, wantETag)
			}

			manifest := fmt.Sprintf(testManifest, "file.mp4")
			mkey := "Upload/" + id + "/upload_manifest_generated.xml"
			var mbody io.Reader = strings.NewReader(manifest)
			if useTLS {
				mbody = nonSeekable{mbody}
			}
			if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &mkey, Body: mbody, ContentLength: aws.Int64(int64(len(manifest)))}); err != nil {
				t.Fatalf("put manifest: %v", err)
			}
			head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
			if err != nil || *head.ContentLength != 3*partSize || *head.ETag != wantETag {
				t.Fatalf("head: %v %v", head, err)
			}

			info, _ := s.Upload(id)
			o := info.Objects["file.mp4"]
			if o.Size != 3*partSize || len(o.PartSizes) != 3 || o.ETag != wantETag || info.PendingMultipart != 0 {
				t.Fatalf("upload info %+v", info)
			}
			if info.Objects["upload_manifest_generated.xml"].Size != int64(len(manifest)) {
				t.Fatalf("manifest object %+v", info.Objects)
			}
			wantRequests := 7
			if useTLS {
				wantRequests++ // the refused aws-chunked part
			}
			if st := s.Stats(); st.UploadBearer != 0 || st.UploadRequests != wantRequests {
				t.Fatalf("stats %+v", st)
			}
			chunkedMu.Lock()
			if chunked != 0 {
				t.Errorf("the SDK sent %d aws-chunked bodies, want none", chunked)
			}
			chunkedMu.Unlock()

			up["State"] = 1
			if st, b := e.putUpload(tok, up); st != 200 {
				t.Fatalf("put state: %d %s", st, b)
			}
			for _, want := range []float64{3, 4} {
				if got := e.getUpload(tok, id); got["State"] != want {
					t.Fatalf("State %v, want %v", got["State"], want)
				}
			}
			info, _ = s.Upload(id)
			if info.Manifest == nil || info.Manifest.Title != "Task 3.1 walkthrough" || strings.Join(info.Manifest.Files, ",") != "file.mp4" {
				t.Fatalf("manifest %+v", info.Manifest)
			}
		})
	}
}

// TestUploadStreamsWithoutBuffering puts a 64 MiB object and checks the
// process allocated far less than that: the body is hashed as it streams.
func TestUploadStreamsWithoutBuffering(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.login().str("access_token")
	target := e.createUpload(tok)["UploadTarget"].(string)
	const size = 64 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	req, _ := http.NewRequest(http.MethodPut, target+"/big.mp4", io.LimitReader(PatternReader(size), size))
	req.ContentLength = size
	resp, err := e.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("allocated %d MiB for a %d MiB upload", grew>>20, size>>20)
	}
	info, _ := e.s.Upload(strings.TrimPrefix(target, e.ts.URL+"/Panopto/Upload/"))
	if info.Objects["big.mp4"].Size != size {
		t.Fatalf("size %d", info.Objects["big.mp4"].Size)
	}
}
