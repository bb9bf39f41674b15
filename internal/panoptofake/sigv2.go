package panoptofake

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// sigV2SubResources are the query parameters S3's signature version 2 puts in
// the canonicalized resource, as the REST authentication spec lists them.
var sigV2SubResources = map[string]bool{
	"acl": true, "cors": true, "delete": true, "lifecycle": true, "location": true, "logging": true,
	"notification": true, "partNumber": true, "policy": true, "requestPayment": true, "restore": true,
	"tagging": true, "torrent": true, "uploadId": true, "uploads": true, "versionId": true,
	"versioning": true, "versions": true, "website": true,
	"response-cache-control": true, "response-content-disposition": true, "response-content-encoding": true,
	"response-content-language": true, "response-content-type": true, "response-expires": true,
}

// SigV2StringToSign is the string an S3 signature version 2 client signs
// for r: verb, Content-MD5, Content-Type, Date (empty when x-amz-date is
// sent), the x-amz-* headers and the resource path with its sub-resources.
func SigV2StringToSign(method string, h http.Header, u *url.URL) string {
	var b strings.Builder
	b.WriteString(method + "\n")
	b.WriteString(h.Get("Content-MD5") + "\n")
	b.WriteString(h.Get("Content-Type") + "\n")
	if h.Get("x-amz-date") == "" {
		b.WriteString(h.Get("Date"))
	}
	b.WriteString("\n")
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
		if sigV2SubResources[k] {
			subs = append(subs, k)
		}
	}
	sort.Strings(subs)
	for i, k := range subs {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(k)
		if v := q.Get(k); v != "" {
			b.WriteString("=" + v)
		}
	}
	return b.String()
}

// checkSigV2 verifies "Authorization: AWS key:signature" with secret.
func checkSigV2(r *http.Request, auth, secret string) bool {
	_, sig, ok := strings.Cut(strings.TrimPrefix(auth, "AWS "), ":")
	if !ok {
		return false
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(SigV2StringToSign(r.Method, r.Header, r.URL)))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	return hmac.Equal([]byte(sig), []byte(want))
}
