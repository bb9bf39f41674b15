package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/upload"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
)

// WatchPanopto is the upload watch's view of Panopto (watch.Panopto): the
// sessionUpload and session reads of the upload engine, as the upload's
// account (its token manager from accounts), to the upstream in force, over
// tr (the proxy's own transport).
func WatchPanopto(accounts Accounts, tr http.RoundTripper, upstream func() *url.URL, log *slog.Logger) watch.Panopto {
	return &panoptoWatch{accounts: accounts, tr: tr, upstream: upstream, log: log}
}

type panoptoWatch struct {
	accounts Accounts
	tr       http.RoundTripper
	upstream func() *url.URL
	log      *slog.Logger

	mu  sync.Mutex
	at  string // the upstream u was made for
	eng *upload.Uploader
}

var _ watch.Panopto = (*panoptoWatch)(nil)

func (p *panoptoWatch) engine() *upload.Uploader {
	up := p.upstream()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.eng == nil || p.at != up.String() {
		// Reads only: no part buffers are ever taken from its budget.
		p.eng = upload.New(upload.Options{Upstream: up, Transport: p.tr, Logger: p.log})
		p.at = up.String()
	}
	return p.eng
}

// Upload implements watch.Panopto.
func (p *panoptoWatch) Upload(ctx context.Context, account, id string) (watch.Status, error) {
	m, err := p.accounts.Manager(ctx, account)
	if err != nil {
		return watch.Status{}, fmt.Errorf("account %q: %w", account, err)
	}
	st, err := p.engine().Get(ctx, m, id)
	if err != nil {
		return watch.Status{}, err
	}
	return watch.Status{State: st.State, SessionID: st.SessionID, Message: st.Message}, nil
}

// Session implements watch.Panopto.
func (p *panoptoWatch) Session(ctx context.Context, account, sessionID string) (watch.Session, error) {
	m, err := p.accounts.Manager(ctx, account)
	if err != nil {
		return watch.Session{}, fmt.Errorf("account %q: %w", account, err)
	}
	s, err := p.engine().Session(ctx, m, sessionID)
	if err != nil {
		return watch.Session{}, err
	}
	return watch.Session{ID: s.ID, Name: s.Name, ViewerURL: s.ViewerURL, EmbedURL: s.EmbedURL,
		ThumbnailURL: s.ThumbnailURL, Duration: s.Duration}, nil
}
