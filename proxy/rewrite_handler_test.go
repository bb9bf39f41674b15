package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

// sessionUploadUpstream answers POST sessionUpload with body (its origin
// substituted for {origin}) and content type ct, and echoes whatever a PUT
// sends with 200.
func sessionUploadUpstream(ct, body string) *recordingUpstream {
	up := &recordingUpstream{}
	up.handle = func(w http.ResponseWriter, r *http.Request, got []byte) {
		if r.Method == http.MethodPut {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(got)
			return
		}
		b := strings.ReplaceAll(body, "{origin}", "http://"+r.Host)
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, b)
	}
	return up
}

func TestUploadTargetRewriting(t *testing.T) {
	const sessionUpload = `{"ID":"abc","UploadTarget":"{origin}/Panopto/Upload/abc","Note":"{origin}/Panopto/Upload/abc","State":0}`
	for _, tc := range []struct {
		name      string
		rewrite   bool
		ct        string
		body      string
		rewritten bool // the response's UploadTarget becomes the public URL's
	}{
		{"on", true, "application/json; charset=utf-8", sessionUpload, true},
		{"off", false, "application/json; charset=utf-8", sessionUpload, false},
		{"on, not JSON", true, "text/plain", sessionUpload, false},
		{"on, lookalike host", true, "application/json", `{"ID":"abc","UploadTarget":"{origin}.evil.example/Panopto/Upload/abc"}`, false},
		{"on, other port", true, "application/json", `{"ID":"abc","UploadTarget":"{origin}0/Panopto/Upload/abc"}`, false},
		{"on, invalid JSON", true, "application/json", `{"ID":"abc","UploadTarget":"{origin}/Panopto/Upload/abc"`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := sessionUploadUpstream(tc.ct, tc.body)
			e := newEnv(t, envConfig{upstream: up, connected: true, rewrite: tc.rewrite, retry: 1 << 20})
			upOrigin := "http://" + e.upURL.Host
			sent := strings.ReplaceAll(tc.body, "{origin}", upOrigin)

			code, hdr, body := e.call(http.MethodPost, "/Panopto/PublicAPI/REST/sessionUpload",
				strings.NewReader(`{"FolderId":"f"}`), "Content-Type", "application/json")
			if code != http.StatusCreated {
				t.Fatalf("answered %d: %s", code, body)
			}
			if cl := hdr.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
				t.Errorf("Content-Length %q for a %d-byte body", cl, len(body))
			}
			if !tc.rewritten {
				if string(body) != sent {
					t.Fatalf("body changed:\n got %s\nwant %s", body, sent)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("rewritten body is not JSON: %v: %s", err, body)
			}
			if got["UploadTarget"] != e.srv.URL+"/Panopto/Upload/abc" {
				t.Errorf("UploadTarget %q, want the public URL's", got["UploadTarget"])
			}
			if got["Note"] != upOrigin+"/Panopto/Upload/abc" || got["ID"] != "abc" || got["State"] != 0.0 {
				t.Errorf("other fields changed: %v", got)
			}

			// OnTrack PUTs the object back: the upstream gets its own origin.
			put, _ := json.Marshal(map[string]any{"ID": "abc", "UploadTarget": got["UploadTarget"], "State": 1})
			code, _, body = e.call(http.MethodPut, "/Panopto/PublicAPI/REST/sessionUpload/abc", strings.NewReader(string(put)),
				"Content-Type", "application/json")
			if code != http.StatusOK {
				t.Fatalf("PUT answered %d: %s", code, body)
			}
			r := up.last(t)
			var back map[string]any
			if err := json.Unmarshal(r.Body, &back); err != nil || back["UploadTarget"] != upOrigin+"/Panopto/Upload/abc" {
				t.Errorf("upstream received %s (%v)", r.Body, err)
			}
			if r.ContentLength != int64(len(r.Body)) {
				t.Errorf("upstream Content-Length %d for %d bytes", r.ContentLength, len(r.Body))
			}
		})
	}
}

// With rewriting off, a PUT body naming the public URL reaches the
// upstream byte for byte.
func TestUploadTargetRewritingOffLeavesRequests(t *testing.T) {
	up := sessionUploadUpstream("application/json", "{}")
	e := newEnv(t, envConfig{upstream: up, connected: true})
	put := `{"ID":"abc","UploadTarget":"` + e.srv.URL + `/Panopto/Upload/abc","State":1}`
	if code, _, body := e.call(http.MethodPut, "/Panopto/PublicAPI/REST/sessionUpload/abc", strings.NewReader(put),
		"Content-Type", "application/json"); code != http.StatusOK {
		t.Fatalf("answered %d: %s", code, body)
	}
	if got := string(up.last(t).Body); got != put {
		t.Fatalf("upstream received %s, want %s", got, put)
	}
}

// Against the stand-in, which demands the UploadTarget it issued: a
// sessionUpload created through the rewriting sidecar is uploaded to
// through the sidecar and handed back for processing.
func TestUploadTargetRewritingAgainstStandIn(t *testing.T) {
	e := newEnv(t, envConfig{connected: true, rewrite: true, retry: 1 << 20})
	code, _, body := e.call(http.MethodPost, "/Panopto/PublicAPI/REST/sessionUpload",
		strings.NewReader(`{"FolderId":"`+panoptofake.FolderCOS10009+`"}`), "Content-Type", "application/json")
	if code != http.StatusCreated {
		t.Fatalf("sessionUpload answered %d: %s", code, body)
	}
	var su map[string]any
	if err := json.Unmarshal(body, &su); err != nil {
		t.Fatal(err)
	}
	id, _ := su["ID"].(string)
	target, _ := su["UploadTarget"].(string)
	if want := e.srv.URL + "/Panopto/Upload/" + id; target != want {
		t.Fatalf("UploadTarget %q, want %q", target, want)
	}
	// The target is reached through the sidecar, with an S3 signature.
	manifest := `<Session xmlns="http://tempuri.org/UniversalCaptureSpecification/v1"><Title>t</Title><Videos><Video><Start>PT0S</Start><File>v.mp4</File><Type>Primary</Type></Video></Videos></Session>`
	for _, obj := range []struct{ key, body string }{{"manifest.xml", manifest}, {"v.mp4", "video-bytes"}} {
		req, _ := http.NewRequest(http.MethodPut, target+"/"+obj.key, strings.NewReader(obj.body))
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=dummy/20260302/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00")
		resp := e.do(req)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT %s answered %d: %s", obj.key, resp.StatusCode, b)
		}
	}
	su["State"] = 1
	put, _ := json.Marshal(su)
	code, _, body = e.call(http.MethodPut, "/Panopto/PublicAPI/REST/sessionUpload/"+id, strings.NewReader(string(put)),
		"Content-Type", "application/json")
	if code != http.StatusOK {
		t.Fatalf("PUT sessionUpload answered %d: %s", code, body)
	}
	info, ok := e.fake.Upload(id)
	if !ok || info.State != panoptofake.StateUploadStarted || len(info.Objects) != 2 {
		t.Fatalf("stand-in's view of the upload: %+v", info)
	}
	if st := e.fake.Stats(); st.UploadBearer != 0 {
		t.Errorf("%d upload requests carried a bearer", st.UploadBearer)
	}
}
