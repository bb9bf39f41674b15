package watch_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
	"github.com/doubtfire-lms/panopto-sidecar/webhook"
)

func TestWatchToCompleteWithSession(t *testing.T) {
	e := newEnv(t, nil)
	w := e.run(e.options("pod-a"), true)
	up := e.pan.upload(true)
	before := e.pan.pan.Stats().APICalls
	if err := w.Start(t.Context(), up); err != nil {
		t.Fatal(err)
	}
	if u := e.get(w.Watcher, up.ID); u.State != watch.StateUploadComplete || u.Session != nil || string(u.Metadata) != string(up.Metadata) {
		t.Errorf("just started: %+v", u)
	}
	testsupport.WaitFor(t, 10*time.Second, "upload.completed", func() bool { return len(e.rcv.delivered()) == 2 })

	got := e.rcv.delivered()
	if types(got) != "upload.processing upload.completed" {
		t.Fatalf("events %q", types(got))
	}
	info, _ := e.pan.pan.Upload(up.ID)
	for _, d := range got {
		if d.verified != nil || !strings.HasPrefix(d.id, "msg_") {
			t.Errorf("%s: id %q, verification %v", d.typ, d.id, d.verified)
		}
		if d.data.ID != up.ID || d.data.Account != "alice" || d.data.FolderID != folder || d.data.Name != "video.mp4" ||
			d.data.Bytes != up.Bytes || string(d.data.Metadata) != `{"task_id":123,"unit":"SIT305"}` ||
			d.data.Session == nil || d.data.Session.ID != info.SessionID {
			t.Errorf("%s data %+v", d.typ, d.data)
		}
	}
	if p := got[0].data; p.State != watch.StateProcessing || p.Session.Duration != nil || p.Session.ViewerURL == "" {
		t.Errorf("processing: state %d, session %+v", p.State, p.Session)
	}
	c := got[1].data
	s := c.Session
	if c.State != watch.StateComplete || c.StateName != "Complete" || s.Name != "Week 3 demo" || s.Duration == nil || *s.Duration != 2 ||
		!strings.Contains(s.ViewerURL, "Viewer.aspx?id="+info.SessionID) || !strings.Contains(s.EmbedURL, "Embed.aspx?id=") || s.ThumbnailURL == "" {
		t.Errorf("completed: %+v session %+v", c, s)
	}
	// GET /-/uploads/{id} shows the same, whatever the case of the id.
	u := e.get(w.Watcher, strings.ToUpper(up.ID))
	a, _ := json.Marshal(u)
	b, _ := json.Marshal(c)
	if string(a) != string(b) {
		t.Errorf("Get = %s\nwebhook data = %s", a, b)
	}
	// Panopto was asked twice for the upload (Processing, Complete) and
	// twice for the session.
	if n := e.pan.pan.Stats().APICalls - before; n != 2+2 {
		t.Errorf("Panopto API calls while watching: %d, want 4 (2 polls, 2 session reads)", n)
	}
	if st := w.Stats(); st != (watch.Stats{Polls: 2, Completed: 1, Delivered: 2}) {
		t.Errorf("Stats = %+v", st)
	}
	// Finished: the scan no longer lists it, and Get still reads it.
	testsupport.WaitFor(t, 10*time.Second, "the watch's marker deleted", func() bool {
		k, err := e.store.ListKeys(t.Context(), "watch/", "", 0)
		return err == nil && len(k) == 0
	})
	if u := e.get(w.Watcher, up.ID); u.State != watch.StateComplete {
		t.Errorf("Get after the watch ended: %+v", u)
	}
}

func TestWebhookRetriedInOrderWithSameID(t *testing.T) {
	// The receiver fails the first event twice; the second waits behind it.
	e := newEnv(t, nil, http.StatusInternalServerError, http.StatusServiceUnavailable)
	o := e.options("pod-a")
	o.Retry = func(int) time.Duration { return 100 * time.Millisecond }
	w := e.run(o, true)
	up := e.pan.upload(true)
	if err := w.Start(t.Context(), up); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "upload.completed queued behind upload.processing", func() bool {
		rec, _, _ := e.store.Load(t.Context(), "upload/"+up.ID)
		return strings.Count(string(rec.Data), `"type":"upload.`) == 2
	})
	testsupport.WaitFor(t, 10*time.Second, "upload.completed", func() bool { return len(e.rcv.delivered()) == 2 })
	all := e.rcv.deliveries()
	if types(all) != "upload.processing upload.processing upload.processing upload.completed" {
		t.Fatalf("attempts %q", types(all))
	}
	for i, d := range all {
		if d.verified != nil {
			t.Errorf("attempt %d: signature does not verify: %v", i+1, d.verified)
		}
	}
	if all[0].id != all[1].id || all[1].id != all[2].id || all[2].id == all[3].id {
		t.Errorf("webhook-ids %q %q %q %q: want one per event, kept across attempts", all[0].id, all[1].id, all[2].id, all[3].id)
	}
	if all[2].status != http.StatusNoContent {
		t.Errorf("third attempt answered %d", all[2].status)
	}
	if st := w.Stats(); st.Delivered != 2 || st.FailedAttempts != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

// gatedPanopto holds every poll after the first until open is closed.
type gatedPanopto struct {
	watch.Panopto
	polls atomic.Int32
	open  chan struct{}
}

func (g *gatedPanopto) Upload(ctx context.Context, account, id string) (watch.Status, error) {
	if g.polls.Add(1) > 1 {
		select {
		case <-g.open:
		case <-ctx.Done():
			return watch.Status{}, ctx.Err()
		}
	}
	return g.Panopto.Upload(ctx, account, id)
}

func TestRotatedSecretSignsLaterDeliveries(t *testing.T) {
	e := newEnv(t, nil)
	o := e.options("pod-a")
	gate := &gatedPanopto{Panopto: e.pan, open: make(chan struct{})}
	o.Panopto = gate
	w := e.run(o, true)
	up := e.pan.upload(true)
	if err := w.Start(t.Context(), up); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "upload.processing", func() bool { return len(e.rcv.delivered()) == 1 })
	// Rotation: OnTrack takes the new secret, then the sidecar does; then
	// Panopto answers Complete.
	e.rcv.setSecret(secretB)
	e.secret.set(secretB)
	close(gate.open)
	testsupport.WaitFor(t, 10*time.Second, "upload.completed", func() bool { return len(e.rcv.delivered()) == 2 })
	got := e.rcv.delivered()
	if !got[0].verifies(secretA) || got[0].verifies(secretB) {
		t.Errorf("upload.processing was not signed with the old secret only")
	}
	if !got[1].verifies(secretB) || got[1].verifies(secretA) {
		t.Errorf("upload.completed was not signed with the new secret only")
	}
}

func TestProcessingErrorArrivesAsFailed(t *testing.T) {
	e := newEnv(t, nil)
	w := e.run(e.options("pod-a"), true)
	up := e.pan.upload(false) // the manifest names a video never uploaded
	if err := w.Start(t.Context(), up); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "upload.failed", func() bool { return len(e.rcv.delivered()) == 1 })
	d := e.rcv.delivered()[0]
	if d.typ != webhook.TypeFailed || d.data.State != watch.StateProcessingError || d.data.StateName != "ProcessingError" ||
		d.data.Message != "MediaFileMissing: video.mp4" || d.data.Session != nil || string(d.data.Metadata) != string(up.Metadata) {
		t.Errorf("%s data %+v", d.typ, d.data)
	}
	if u := e.get(w.Watcher, up.ID); u.Message != "MediaFileMissing: video.mp4" || u.State != watch.StateProcessingError {
		t.Errorf("Get = %+v", u)
	}
	if st := w.Stats(); st.Failed != 1 || st.Completed != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestWebhooksOffStillWatches(t *testing.T) {
	e := newEnv(t, nil)
	w := e.run(e.options("pod-a"), false)
	up := e.pan.upload(true)
	if err := w.Start(t.Context(), up); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "Complete", func() bool {
		u := e.get(w.Watcher, up.ID)
		return u.State == watch.StateComplete && u.Session != nil && u.Session.Duration != nil
	})
	if n := len(e.rcv.deliveries()); n != 0 {
		t.Errorf("%d webhooks with webhooks off", n)
	}
	rec, _, _ := e.store.Load(t.Context(), "upload/"+up.ID)
	if strings.Contains(string(rec.Data), `"queue"`) || rec.Lease != nil {
		t.Errorf("finished record keeps a queue or lease: %s %+v", rec.Data, rec.Lease)
	}
}

func TestWatchRunsOut(t *testing.T) {
	e := newEnv(t, func(o *panoptofake.Options) { o.ProcessingDelay = time.Hour })
	o := e.options("pod-a")
	o.WatchFor = 100 * time.Millisecond
	w := e.run(o, true)
	up := e.pan.upload(true)
	if err := w.Start(t.Context(), up); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "the watch to end", func() bool {
		return strings.Contains(e.logs.String(), "upload watch ran out")
	})
	if u := e.get(w.Watcher, up.ID); u.State != watch.StateProcessing || u.Session == nil {
		t.Errorf("Get = %+v, want Processing as last seen", u)
	}
	if st := w.Stats(); st.RanOut != 1 {
		t.Errorf("Stats = %+v", st)
	}
	polls := e.pan.pan.Stats().APICalls
	w.stop()
	if got := types(e.rcv.delivered()); got != "upload.processing" {
		t.Errorf("events %q", got)
	}
	if n := e.pan.pan.Stats().APICalls; n != polls {
		t.Errorf("%d calls to Panopto after the watch ended", n-polls)
	}
}

func TestWebhookGivenUp(t *testing.T) {
	e := newEnv(t, nil, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 500)
	o := e.options("pod-a")
	o.GiveUpAfter = 50 * time.Millisecond
	o.Retry = func(int) time.Duration { return 20 * time.Millisecond }
	w := e.run(o, true)
	up := e.pan.upload(false)
	if err := w.Start(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "the webhook to be given up", func() bool {
		return strings.Contains(e.logs.String(), "webhook given up")
	})
	testsupport.WaitFor(t, 10*time.Second, "the record to be final", func() bool {
		rec, _, _ := e.store.Load(context.Background(), "upload/"+up.ID)
		return rec.Lease == nil
	})
	if u := e.get(w.Watcher, up.ID); u.State != watch.StateProcessingError {
		t.Errorf("Get = %+v", u)
	}
	if st := w.Stats(); st.GivenUp != 1 || st.Delivered != 0 {
		t.Errorf("Stats = %+v", st)
	}
	if !strings.Contains(e.logs.String(), "level=ERROR msg=\"webhook given up") {
		t.Errorf("give-up not logged as an error:\n%s", e.logs.String())
	}
}
