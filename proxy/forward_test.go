package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
)

// TestRewriteWithoutInfoForwardsNothing: a request that reaches the
// reverse proxy's hooks without the info serve attaches gets no upstream
// and no bearer, and the retrying transport leaves it alone.
func TestRewriteWithoutInfoForwardsNothing(t *testing.T) {
	if _, ok := infoFrom(context.Background()); ok {
		t.Fatal("infoFrom found info in an empty context")
	}
	if _, ok := infoFrom(withInfo(context.Background(), nil)); ok {
		t.Fatal("infoFrom accepted a nil *reqInfo")
	}
	info := &reqInfo{route: &Route{Prefix: "/Panopto/api/"}}
	if got, ok := infoFrom(withInfo(context.Background(), info)); !ok || got != info {
		t.Fatalf("infoFrom = %v, %v; want the info attached", got, ok)
	}

	up, _ := url.Parse("http://upstream.invalid")
	h := New(Deps{}, Options{Upstream: up, Routes: []Route{{Prefix: "/Panopto/api/", Inject: true}}})
	in := httptest.NewRequest("GET", "/Panopto/api/v1/folders", nil)
	pr := &httputil.ProxyRequest{In: in, Out: in.Clone(in.Context())}
	h.fwd.rewrite(pr)
	if pr.Out.URL.Host != "" || pr.Out.URL.Scheme != "" {
		t.Fatalf("outbound URL %q, want no scheme and host", pr.Out.URL)
	}
	if got := pr.Out.Header.Get("Authorization"); got != "" {
		t.Fatalf("Authorization %q set without a route", got)
	}
	if err := h.fwd.modifyResponse(&http.Response{StatusCode: 200, Request: in, Header: http.Header{}}); err != nil {
		t.Fatal(err)
	}

	calls := 0
	rt := &retryTransport{h: h, base: roundTripFunc(func(*http.Request) (*http.Response, error) {
		calls++
		return &http.Response{StatusCode: http.StatusUnauthorized, Body: http.NoBody}, nil
	})}
	resp, err := rt.RoundTrip(in)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || calls != 1 {
		t.Fatalf("retry transport without info: %v, %v after %d calls; want the 401 after 1", resp, err, calls)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
