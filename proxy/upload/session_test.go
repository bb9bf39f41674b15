package upload

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

func TestSessionOfAnUpload(t *testing.T) {
	const size = 600 << 10
	e := newTestEnv(t, false, panoptofake.Options{}, Options{PartSize: 5 * mib})
	ctx := context.Background()
	p := params("lecture.mp4", size)
	var created []string
	p.Created = func(id string) {
		info, _ := e.pan.Upload(id)
		if len(info.Objects) != 0 || info.PendingMultipart != 0 {
			t.Errorf("Created called after bytes were sent: %+v", info)
		}
		created = append(created, id)
	}
	res, err := e.up.Create(ctx, e.tokens, p, io.LimitReader(panoptofake.PatternReader(size), size))
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 1 || created[0] != res.ID {
		t.Errorf("Created saw %q, want %s once", created, res.ID)
	}
	st, err := e.up.Get(ctx, e.tokens, res.ID) // starts processing: the session exists
	if err != nil || st.State != 3 || st.SessionID == "" {
		t.Fatalf("first poll %+v, %v", st, err)
	}
	s, err := e.up.Session(ctx, e.tokens, st.SessionID)
	if err != nil || s.ID != st.SessionID || s.Name != "Task 7.2 <demo> & notes" || s.Duration != nil ||
		!strings.Contains(s.ViewerURL, "/Panopto/Pages/Viewer.aspx?id="+st.SessionID) || !strings.Contains(s.EmbedURL, "Embed.aspx?id=") ||
		!strings.Contains(s.ThumbnailURL, st.SessionID) {
		t.Fatalf("while processing: %+v, %v", s, err)
	}
	if st := poll(t, e, res.ID); st.State != 4 {
		t.Fatalf("final %+v", st)
	}
	if s, err = e.up.Session(ctx, e.tokens, st.SessionID); err != nil || s.Duration == nil || *s.Duration != 2 {
		t.Fatalf("complete: %+v, %v", s, err)
	}
	_, err = e.up.Session(ctx, e.tokens, "11111111-2222-3333-4444-555555555555")
	var ue *Error
	if !errors.As(err, &ue) || ue.Status != http.StatusNotFound {
		t.Errorf("unknown session: %v", err)
	}
}
