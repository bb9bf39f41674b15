package upload

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// signV2 signs an S3 request with signature version 2, the way Panopto's
// upload sample does (boto3 with signature_version 's3' and dummy keys):
//
//	Authorization: AWS <key>:base64(HMAC-SHA1(secret, StringToSign))
//	StringToSign = verb \n Content-MD5 \n Content-Type \n Date \n
//	               x-amz-* headers (lower-case, sorted, "name:value\n")
//	               path as sent [? sub-resources, sorted]
//
// The path is the whole request path (/Panopto/Upload/{ID}/{file}), as
// botocore signs a path-style request to an endpoint that has a path. The
// payload is not signed: bodies go out plain, with a Content-Length.
func signV2(req *http.Request, key, secret string) {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(stringToSignV2(req.Method, req.Header, req.URL)))
	req.Header.Set("Authorization", "AWS "+key+":"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
}

// subResources are the query parameters an S3 V2 signature covers that this
// client sends.
var subResources = map[string]bool{"partNumber": true, "uploadId": true, "uploads": true}

func stringToSignV2(method string, h http.Header, u *url.URL) string {
	var b strings.Builder
	b.WriteString(method + "\n" + h.Get("Content-MD5") + "\n" + h.Get("Content-Type") + "\n")
	if h.Get("x-amz-date") == "" {
		b.WriteString(h.Get("Date"))
	}
	b.WriteByte('\n')
	var amz []string
	for k := range h {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-amz-") {
			amz = append(amz, lk)
		}
	}
	sort.Strings(amz)
	for _, k := range amz {
		vals := h.Values(k)
		for i := range vals {
			vals[i] = strings.TrimSpace(vals[i])
		}
		b.WriteString(k + ":" + strings.Join(vals, ",") + "\n")
	}
	b.WriteString(u.EscapedPath())
	q := u.Query()
	var subs []string
	for k := range q {
		if subResources[k] {
			subs = append(subs, k)
		}
	}
	sort.Strings(subs)
	for i, k := range subs {
		b.WriteByte("?&"[min(i, 1)])
		b.WriteString(k)
		if v := q.Get(k); v != "" {
			b.WriteString("=" + v)
		}
	}
	return b.String()
}
