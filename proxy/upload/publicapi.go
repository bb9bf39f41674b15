package upload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/backoff"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

const sessionUploadPath = "/Panopto/PublicAPI/REST/sessionUpload"

// session is a sessionUpload as Panopto answered it: the whole object is
// kept to PUT back, as Panopto's sample does.
type session struct {
	ID         string
	targetPath string // the UploadTarget's path, sent to the upstream
	raw        map[string]json.RawMessage
}

func (u *Uploader) createSession(ctx context.Context, tokens Tokens, folderID string) (*session, error) {
	b, _ := json.Marshal(map[string]string{"FolderId": folderID})
	var raw map[string]json.RawMessage
	if err := u.api(ctx, tokens, http.MethodPost, sessionUploadPath, b, http.StatusCreated, &raw); err != nil {
		return nil, fmt.Errorf("create sessionUpload: %w", err)
	}
	var s struct {
		ID           string
		UploadTarget string
	}
	obj, _ := json.Marshal(raw)
	_ = json.Unmarshal(obj, &s)
	t, err := url.Parse(s.UploadTarget)
	if s.ID == "" || err != nil || !safeTarget(t.Path) {
		return nil, fmt.Errorf("create sessionUpload: unusable answer (ID %q, UploadTarget path %q)", s.ID, t.Path)
	}
	return &session{ID: s.ID, targetPath: strings.TrimRight(t.Path, "/"), raw: raw}, nil
}

// safeTarget accepts an upload target path under /Panopto/Upload/ with no
// dot or empty segments. Only its path is used: S3 calls go to the
// configured upstream, whatever host the answer names.
func safeTarget(p string) bool {
	if !strings.HasPrefix(strings.ToLower(p), "/panopto/upload/") || strings.ContainsAny(p, "\\?#%\x00") {
		return false
	}
	for _, seg := range strings.Split(strings.Trim(p, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// process PUTs the whole object back with State=1: Panopto starts
// processing from the manifest.
func (u *Uploader) process(ctx context.Context, tokens Tokens, s *session) error {
	obj := make(map[string]json.RawMessage, len(s.raw))
	for k, v := range s.raw {
		obj[k] = v
	}
	obj["State"] = json.RawMessage("1")
	b, _ := json.Marshal(obj)
	if err := u.api(ctx, tokens, http.MethodPut, sessionUploadPath+"/"+url.PathEscape(s.ID), b, http.StatusOK, nil); err != nil {
		return fmt.Errorf("sessionUpload State=1: %w", err)
	}
	return nil
}

// cancel DELETEs the sessionUpload.
func (u *Uploader) cancel(ctx context.Context, tokens Tokens, s *session) error {
	return u.api(ctx, tokens, http.MethodDelete, sessionUploadPath+"/"+url.PathEscape(s.ID), nil, http.StatusOK, nil)
}

// Get reads a sessionUpload's state from Panopto as the account.
func (u *Uploader) Get(ctx context.Context, tokens Tokens, id string) (Status, error) {
	var s struct {
		ID          string
		SessionID   *string `json:"SessionId"`
		State       int
		MessageCode *string
		Message     *string
	}
	if err := u.api(ctx, tokens, http.MethodGet, sessionUploadPath+"/"+url.PathEscape(id), nil, http.StatusOK, &s); err != nil {
		return Status{}, classify(ctx, fmt.Errorf("get sessionUpload: %w", err))
	}
	st := Status{ID: s.ID, State: s.State, StateName: watch.StateNames[s.State]}
	if st.ID == "" {
		st.ID = id
	}
	if s.SessionID != nil {
		st.SessionID = *s.SessionID
	}
	switch {
	case s.Message != nil && *s.Message != "":
		st.Message = *s.Message
	case s.MessageCode != nil:
		st.Message = *s.MessageCode
	}
	return st, nil
}

// api calls the PublicAPI with the account's bearer. A 401 forces one
// refresh and one retry; so does a 403 (Panopto answers an expired token
// either way on PublicAPI) with a Bearer invalid_token challenge, or one the
// token source claims as a refused bearer, which it does at most once a
// minute and never for a bearer just obtained: otherwise the 403 is
// Panopto's answer. 429 and 503 are retried after Retry-After, a few times.
func (u *Uploader) api(ctx context.Context, tokens Tokens, method, path string, body []byte, want int, out any) error {
	g, err := tokens.Token(ctx)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	refreshed, waits := false, 0
	for {
		req, err := http.NewRequestWithContext(ctx, method, u.o.Upstream.String()+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		if body == nil {
			req.Body, req.ContentLength = http.NoBody, 0
		} else {
			req.Header.Set("Content-Type", "application/json; charset=utf-8")
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "Bearer "+g.AccessToken.Reveal())
		resp, err := u.c.Do(req)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		switch {
		case !refreshed && refusesBearer(resp, tokens, g):
			discard(resp)
			refreshed = true
			if g, err = tokens.ForceRefresh(ctx, g); err != nil {
				return fmt.Errorf("refresh after %d: %w", resp.StatusCode, err)
			}
			continue
		case (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && waits < 3:
			discard(resp)
			waits++
			if err := backoff.Sleep(ctx, retryAfter(resp, u.o.MaxRetryAfter, waits)); err != nil {
				return err
			}
			continue
		case resp.StatusCode != want:
			discard(resp)
			return &upstreamError{op: method + " " + path, status: resp.StatusCode}
		}
		defer resp.Body.Close()
		if out == nil {
			discard(resp)
			return nil
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
		return nil
	}
}

// refusesBearer reports whether resp refuses the bearer g rather than
// answers the call: a 401, or a 403 that says so or that tokens claims.
func refusesBearer(resp *http.Response, tokens Tokens, g *token.Grant) bool {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return true
	case http.StatusForbidden:
		return token.InvalidTokenChallenge(resp.Header) || tokens.ClaimForbiddenRefresh(g)
	}
	return false
}

// retryAfter reads Retry-After (seconds or a date), bounded by limit; absent,
// it backs off 1, 2, 4 s.
func retryAfter(resp *http.Response, limit time.Duration, attempt int) time.Duration {
	v := resp.Header.Get("Retry-After")
	d := time.Duration(1<<(attempt-1)) * time.Second
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	}
	return min(limit, d)
}

func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}

var errNoETag = errors.New("upload target answered no ETag")
