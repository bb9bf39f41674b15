package upload

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/backoff"
	"golang.org/x/sync/errgroup"
)

// s3Upload is one object's multipart upload at an upload target. Requests
// are path style, to {upstream}{target}/{key}, signed with signature
// version 2 and the dummy keys; bodies are plain, with a Content-Length: no
// aws-chunked framing, no checksum headers or trailers, no bearer.
type s3Upload struct {
	u        *Uploader
	base     string // /Panopto/Upload/{ID}
	key      string
	uploadID string
}

func (s *s3Upload) url(key, query string) string {
	v := s.u.o.Upstream.String() + s.base + "/" + url.PathEscape(key)
	if query != "" {
		v += "?" + query
	}
	return v
}

// do sends one signed S3 request with body (nil for none) and returns the
// answer when its status is 200 or 204; otherwise an *upstreamError.
func (s *s3Upload) do(ctx context.Context, op, method, rawURL, contentType string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, http.NoBody)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Date", s.u.o.Now().UTC().Format(http.TimeFormat))
	signV2(req, s.u.o.AccessKey, s.u.o.SecretKey)
	resp, err := s.u.c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		var e struct{ Code string }
		_ = xml.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		discard(resp)
		return resp, &upstreamError{op: op, status: resp.StatusCode, code: e.Code}
	}
	return resp, nil
}

func (s *s3Upload) initiate(ctx context.Context) error {
	resp, err := s.do(ctx, "initiate multipart upload", http.MethodPost, s.url(s.key, "uploads"), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct{ UploadId string }
	if err := xml.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&r); err != nil || r.UploadId == "" {
		return fmt.Errorf("initiate multipart upload: no UploadId in the answer (%v)", err)
	}
	s.uploadID = r.UploadId
	return nil
}

// part uploads part n, trying up to PartAttempts times on network errors,
// 5xx, 429 and 503 (after Retry-After). It returns the part's ETag.
func (s *s3Upload) part(ctx context.Context, n int, data []byte) (string, error) {
	q := "partNumber=" + strconv.Itoa(n) + "&uploadId=" + url.QueryEscape(s.uploadID)
	var err error
	for attempt := 1; attempt <= s.u.o.PartAttempts; attempt++ {
		var resp *http.Response
		resp, err = s.do(ctx, "upload part "+strconv.Itoa(n), http.MethodPut, s.url(s.key, q), "", data)
		if err == nil {
			etag := resp.Header.Get("ETag")
			discard(resp)
			if etag == "" {
				return "", fmt.Errorf("upload part %d: %w", n, errNoETag)
			}
			return etag, nil
		}
		if ctx.Err() != nil || !retryable(resp) || attempt == s.u.o.PartAttempts {
			break
		}
		wait := 200 * time.Millisecond << (attempt - 1)
		if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			wait = retryAfter(resp, s.u.o.MaxRetryAfter, attempt)
		}
		s.u.log.Warn("upload: part failed, retrying", "part", n, "attempt", attempt, "err", err)
		if serr := backoff.Sleep(ctx, wait); serr != nil {
			return "", err
		}
	}
	return "", err
}

// retryable: no answer at all, or a server-side or throttling status.
func retryable(resp *http.Response) bool {
	return resp == nil || resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
}

type completedPart struct {
	PartNumber int    `xml:"PartNumber"`
	ETag       string `xml:"ETag"`
}

func (s *s3Upload) complete(ctx context.Context, etags []string) error {
	var req struct {
		XMLName xml.Name        `xml:"CompleteMultipartUpload"`
		Parts   []completedPart `xml:"Part"`
	}
	for i, e := range etags {
		req.Parts = append(req.Parts, completedPart{i + 1, e})
	}
	b, _ := xml.Marshal(req)
	resp, err := s.do(ctx, "complete multipart upload", http.MethodPost, s.url(s.key, "uploadId="+url.QueryEscape(s.uploadID)), "application/xml", b)
	if err != nil {
		return err
	}
	// S3 may answer 200 with an <Error> body; the result names the ETag.
	defer resp.Body.Close()
	var r struct {
		XMLName xml.Name
		Code    string
	}
	if err := xml.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&r); err != nil || r.XMLName.Local != "CompleteMultipartUploadResult" {
		return fmt.Errorf("complete multipart upload: answered %s %s (%v)", r.XMLName.Local, r.Code, err)
	}
	s.uploadID = "" // nothing left to abort
	return nil
}

func (s *s3Upload) abort(ctx context.Context) error {
	resp, err := s.do(ctx, "abort multipart upload", http.MethodDelete, s.url(s.key, "uploadId="+url.QueryEscape(s.uploadID)), "", nil)
	if err != nil {
		return err
	}
	discard(resp)
	return nil
}

// putObject stores a small object (the manifest) with one PUT.
func (s *s3Upload) putObject(ctx context.Context, key, contentType string, data []byte) error {
	resp, err := s.do(ctx, "put "+key, http.MethodPut, s.url(key, ""), contentType, data)
	if err != nil {
		return err
	}
	discard(resp)
	return nil
}

// stream reads the body into part buffers and uploads them, Concurrency
// parts at a time, while the next one fills: the buffers come from the
// upload's share of the budget, at most Concurrency+1 of PartSize, at least
// the one it was admitted with. first holds the bytes already read; done
// says the body ended with them. sent counts bytes the target took.
//
// The parts are an errgroup limited to Concurrency: handing a part over
// waits for a free slot, the first part that fails cancels the others and
// is the answer, and stream returns only when every part has ended.
func (u *Uploader) stream(ctx context.Context, sh *share, up *s3Upload, first []byte, done bool, body io.Reader, sent *int64) (int64, error) {
	if err := up.initiate(ctx); err != nil {
		sh.put(first)
		return 0, err
	}
	// A body that breaks off, or is too large, stops the parts in flight
	// too: it cancels the parts' context from outside the group.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(u.o.Concurrency)

	var (
		mu    sync.Mutex
		etags []string
	)
	part := func(n int, data []byte) error {
		defer sh.put(data)
		if err := gctx.Err(); err != nil {
			return err // a part failed meanwhile: it is the answer
		}
		etag, err := up.part(gctx, n, data)
		if err != nil {
			return err
		}
		mu.Lock()
		for len(etags) < n {
			etags = append(etags, "")
		}
		etags[n-1] = etag
		*sent += int64(len(data))
		mu.Unlock()
		if u.o.Hooks.Bytes != nil {
			u.o.Hooks.Bytes(int64(len(data)))
		}
		return nil
	}

	var total int64
	var readErr error
	buf, n := first, 1
	for {
		total += int64(len(buf))
		pn, pbuf := n, buf // the loop moves on while the part uploads
		g.Go(func() error { return part(pn, pbuf) })
		if done || gctx.Err() != nil {
			break
		}
		if n == maxParts {
			readErr = fail(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body needs more than %d parts of %d bytes", maxParts, u.o.PartSize), nil)
			cancel(readErr)
			break
		}
		next, err := sh.get(gctx)
		if err != nil {
			break // a part failed: its error is the answer
		}
		m, err := fill(body, next)
		if err != nil && err != io.EOF {
			sh.put(next)
			readErr = &bodyError{err}
			cancel(readErr)
			break
		}
		if m == 0 {
			sh.put(next)
			break
		}
		buf, n, done = next[:m], n+1, err != nil
	}
	perr := g.Wait()
	if readErr != nil {
		return total, readErr
	}
	if perr != nil {
		return total, perr
	}
	if err := context.Cause(ctx); err != nil {
		return total, err // the request's context ended
	}
	if err := up.complete(ctx, etags); err != nil {
		return total, err
	}
	return total, nil
}

// fill reads until buf is full or the body ends. Unlike io.ReadFull it keeps
// a body that broke off (io.ErrUnexpectedEOF from net/http) apart from one
// that ended (io.EOF).
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
