package proxy

import (
	"bytes"
	"io"
	"net/http"

	"github.com/doubtfire-lms/panopto-sidecar/internal/ascii"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// retryTransport sends the request and, when the upstream refuses the bearer
// we injected (401, or 403 on PublicAPI as Panopto's own sample assumes),
// forces a refresh and retries once, if the body can be replayed. A 403 is
// taken as a refused bearer only when it says so (a Bearer invalid_token
// challenge) or the Manager claims it (ClaimForbiddenRefresh: the bearer is
// still the current one, older than a minute, and no 403 replaced it in the
// last minute); otherwise it passes through as it came.
type retryTransport struct {
	base http.RoundTripper
	h    *Handler
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	info, ok := infoFrom(req.Context())
	if !ok || !info.route.Inject {
		return t.base.RoundTrip(req)
	}
	body, replay := t.prepareReplay(req, info.opts.RetryBodyLimit)
	resp, err := t.base.RoundTrip(req)
	if err != nil || !refusesBearer(resp.StatusCode, info.route) {
		return resp, err
	}
	if resp.StatusCode == http.StatusForbidden && !token.InvalidTokenChallenge(resp.Header) &&
		!info.manager.ClaimForbiddenRefresh(info.grant) {
		return resp, nil // most likely a permission Panopto does not grant
	}
	if !replay {
		t.h.deps.Metrics.unretryable.Inc()
		// The answer passes through, but the next requests should not meet
		// the same refused token: replace it before answering. This is done
		// in the request, not in a goroutine of its own, so that nothing
		// outlives the request the server's shutdown waits for. The client
		// waits one token call for its refusal (a rare answer: a refused
		// bearer with a body too large to replay), and its next request
		// meets the new token. Should the client leave, the refresh goes
		// on: the manager runs it apart from its callers, under a timeout
		// of its own, and reports a refusal itself.
		_, _ = info.manager.ForceRefresh(req.Context(), info.grant)
		return resp, nil
	}
	ng, ferr := info.manager.ForceRefresh(req.Context(), info.grant)
	if ferr != nil {
		t.h.deps.Metrics.retries.WithLabelValues("refresh_failed").Inc()
		t.h.log.Warn("upstream refused the bearer and no new token could be obtained", "status", resp.StatusCode, "err", ferr)
		return resp, nil
	}
	drain(resp.Body)
	retry := req.Clone(req.Context())
	retry.Header.Set("Authorization", "Bearer "+ng.AccessToken.Reveal())
	if body != nil {
		retry.Body = io.NopCloser(bytes.NewReader(body))
		retry.ContentLength = int64(len(body))
	}
	resp2, err := t.base.RoundTrip(retry)
	outcome := "ok"
	if err != nil {
		outcome = "error"
	} else if refusesBearer(resp2.StatusCode, info.route) {
		outcome = "refused_again"
	}
	t.h.deps.Metrics.retries.WithLabelValues(outcome).Inc()
	return resp2, err
}

func refusesBearer(code int, r *Route) bool {
	return code == http.StatusUnauthorized || (code == http.StatusForbidden && ascii.ContainsFold(r.Prefix, "/PublicAPI/"))
}

// prepareReplay keeps the request body in memory when it is small enough
// to send twice. It returns the bytes (nil for no body) and whether a retry
// is possible.
func (t *retryTransport) prepareReplay(req *http.Request, limit int64) ([]byte, bool) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
		return nil, true
	}
	if limit <= 0 || req.ContentLength > limit {
		return nil, false
	}
	buf := make([]byte, 0, min(max(req.ContentLength, 512), limit+1))
	b := bytes.NewBuffer(buf)
	n, err := io.CopyN(b, req.Body, limit+1)
	if err != nil && err != io.EOF {
		// The client's body failed: send what we have and let the error
		// surface through the transport.
		req.Body = readCloser{io.MultiReader(bytes.NewReader(b.Bytes()), req.Body), req.Body}
		return nil, false
	}
	if n > limit {
		req.Body = readCloser{io.MultiReader(bytes.NewReader(b.Bytes()), req.Body), req.Body}
		return nil, false
	}
	req.Body.Close()
	data := b.Bytes()
	req.Body = io.NopCloser(bytes.NewReader(data))
	req.ContentLength = int64(len(data))
	req.Header.Del("Transfer-Encoding")
	req.TransferEncoding = nil
	return data, true
}

type readCloser struct {
	io.Reader
	io.Closer
}

func drain(rc io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, rc, 64<<10)
	rc.Close()
}
