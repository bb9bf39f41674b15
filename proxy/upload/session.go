package upload

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// Session is what Panopto's REST API says of the session an upload
// became. Fields Panopto did not send are empty (Duration nil while the
// session is processing).
type Session struct {
	ID           string
	Name         string
	ViewerURL    string
	EmbedURL     string
	ThumbnailURL string
	Duration     *float64 // seconds
}

// Session reads GET /Panopto/api/v1/sessions/{id} as the account.
func (u *Uploader) Session(ctx context.Context, tokens Tokens, id string) (Session, error) {
	var s struct {
		ID       string `json:"Id"`
		Name     *string
		Duration *float64
		Urls     *struct {
			ViewerURL    *string `json:"ViewerUrl"`
			EmbedURL     *string `json:"EmbedUrl"`
			ThumbnailURL *string `json:"ThumbnailUrl"`
		}
	}
	if err := u.api(ctx, tokens, http.MethodGet, "/Panopto/api/v1/sessions/"+url.PathEscape(id), nil, http.StatusOK, &s); err != nil {
		return Session{}, classify(ctx, fmt.Errorf("get session: %w", err))
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	out := Session{ID: id, Name: str(s.Name), Duration: s.Duration}
	if s.Urls != nil {
		out.ViewerURL, out.EmbedURL, out.ThumbnailURL = str(s.Urls.ViewerURL), str(s.Urls.EmbedURL), str(s.Urls.ThumbnailURL)
	}
	return out, nil
}
