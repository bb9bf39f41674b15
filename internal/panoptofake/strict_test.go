package panoptofake

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// sigV2 signs req as Panopto's upload sample (boto3, signature_version 's3')
// does, with the given secret.
func sigV2(req *http.Request, key, secret string) {
	req.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(SigV2StringToSign(req.Method, req.Header, req.URL)))
	req.Header.Set("Authorization", "AWS "+key+":"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
}

func TestUploadTargetStrictness(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.S3SecretKey = "dummy" })
	tok := e.login().str("access_token")
	u := e.createUpload(tok)
	target := u["UploadTarget"].(string)
	send := func(method, rawURL string, body io.Reader, size int64, secret string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, rawURL, body)
		req.ContentLength = size
		if secret != "" {
			sigV2(req, "dummy", secret)
		}
		resp, err := e.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	st, b := send(http.MethodPost, target+"/a.mp4?uploads", nil, 0, "dummy")
	var init struct{ UploadId string }
	if err := xml.Unmarshal([]byte(b), &init); st != 200 || err != nil {
		t.Fatalf("signed initiate: %d %s", st, b)
	}
	partURL := func(n int) string {
		return fmt.Sprintf("%s/a.mp4?partNumber=%d&uploadId=%s", target, n, url.QueryEscape(init.UploadId))
	}

	t.Run("sigv2 verified", func(t *testing.T) {
		if st, b := send(http.MethodPut, partURL(1), strings.NewReader("abc"), 3, "wrong"); st != 403 || s3Code(t, b) != "SignatureDoesNotMatch" {
			t.Fatalf("wrong secret: %d %s", st, b)
		}
		if st, b := send(http.MethodPut, partURL(1), strings.NewReader("abc"), 3, "dummy"); st != 200 {
			t.Fatalf("right secret: %d %s", st, b)
		}
		if st := e.s.Stats(); st.UploadSigV2 != 3 || st.UploadBadSignature != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("part larger than 25 MiB", func(t *testing.T) {
		const size = 25<<20 + 1
		st, b := send(http.MethodPut, partURL(2), io.LimitReader(PatternReader(size), size), size, "dummy")
		if st != 400 || s3Code(t, b) != "EntityTooLarge" {
			t.Fatalf("%d %s", st, b)
		}
		const ok = 25 << 20
		if st, b := send(http.MethodPut, partURL(2), io.LimitReader(PatternReader(ok), ok), ok, "dummy"); st != 200 {
			t.Fatalf("a 25 MiB part: %d %s", st, b)
		}
	})
	t.Run("abort is recorded", func(t *testing.T) {
		if st, b := send(http.MethodDelete, target+"/a.mp4?uploadId="+url.QueryEscape(init.UploadId), nil, 0, "dummy"); st != 204 {
			t.Fatalf("abort: %d %s", st, b)
		}
		info, _ := e.s.Upload(u["ID"].(string))
		if info.AbortedMultipart != 1 || info.PendingMultipart != 0 {
			t.Fatalf("info %+v", info)
		}
	})
}

// TestSessionUploadDeleteAndCreator: DELETE cancels an upload not yet
// handed over; the creator is the token's user, and a completed session
// is created by that user.
func TestSessionUploadDeleteAndCreator(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.login().str("access_token")
	u := e.createUpload(tok)
	id := u["ID"].(string)
	if info, _ := e.s.Upload(id); info.CreatedBy == "" || info.Cancelled || len(e.s.UploadIDs()) != 1 {
		t.Fatalf("fresh upload %+v", info)
	}
	for range 2 { // idempotent
		st, b := e.do(http.MethodDelete, "/Panopto/PublicAPI/REST/sessionUpload/"+id, tok, nil)
		var got map[string]any
		_ = json.Unmarshal(b, &got)
		if st != 200 || got["State"] != float64(StateUploadCancelled) {
			t.Fatalf("delete: %d %s", st, b)
		}
	}
	if info, _ := e.s.Upload(id); !info.Cancelled || info.State != StateUploadCancelled {
		t.Fatalf("after delete %+v", info)
	}
	if st, _ := e.do(http.MethodDelete, "/Panopto/PublicAPI/REST/sessionUpload/"+newGUID(), tok, nil); st != 404 {
		t.Fatalf("delete unknown: %d", st)
	}
	if st, _ := e.do(http.MethodDelete, "/Panopto/PublicAPI/REST/sessionUpload/"+id, "", nil); st != 401 {
		t.Fatalf("delete without a bearer: %d", st)
	}

	// Processing: the session is created by the uploader.
	u2 := e.createUpload(tok)
	id2 := u2["ID"].(string)
	target := u2["UploadTarget"].(string)
	if st, b := e.putObject(target, "m.mp4", []byte("media"), nil); st != 200 {
		t.Fatalf("media %d %s", st, b)
	}
	if st, b := e.putObject(target, "manifest.xml", []byte(fmt.Sprintf(testManifest, "m.mp4")), nil); st != 200 {
		t.Fatalf("manifest %d %s", st, b)
	}
	u2["State"] = 1
	if st, b := e.putUpload(tok, u2); st != 200 {
		t.Fatalf("put %d %s", st, b)
	}
	if st, _ := e.do(http.MethodDelete, "/Panopto/PublicAPI/REST/sessionUpload/"+id2, tok, nil); st != 409 {
		t.Fatalf("delete after State=1: %d", st)
	}
	for range 2 {
		e.getUpload(tok, id2)
	}
	info, _ := e.s.Upload(id2)
	if info.State != StateComplete {
		t.Fatalf("state %+v", info)
	}
	st, b := e.do(http.MethodGet, "/Panopto/api/v1/sessions/"+info.SessionID, tok, nil)
	var sess struct{ CreatedBy struct{ Username string } }
	_ = json.Unmarshal(b, &sess)
	if st != 200 || sess.CreatedBy.Username != info.CreatedBy {
		t.Fatalf("session %d %s, want created by %s", st, b, info.CreatedBy)
	}
}
