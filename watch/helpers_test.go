package watch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
	"github.com/doubtfire-lms/panopto-sidecar/webhook"
)

const (
	secretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretB = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	folder  = "6f5e4d3c-2b1a-4098-8765-43210fedcba9"
)

// standIn is Panopto for the tests: the stand-in, and a client of it that
// implements watch.Panopto with a bearer from its token endpoint (as the
// sidecar would with the account's grant).
type standIn struct {
	t      testing.TB
	pan    *panoptofake.Server
	srv    *httptest.Server
	c      *http.Client
	bearer string
}

func newStandIn(t testing.TB, mod func(*panoptofake.Options)) *standIn {
	t.Helper()
	o := panoptofake.Options{ClientID: "sidecar", ClientSecret: "client-secret", Users: map[string]string{"alice": "wonderland"}}
	if mod != nil {
		mod(&o)
	}
	p := &standIn{t: t, pan: panoptofake.New(o), c: &http.Client{Timeout: 10 * time.Second}}
	p.srv = httptest.NewServer(p.pan)
	t.Cleanup(p.srv.Close)
	form := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"},
		"client_id": {"sidecar"}, "client_secret": {"client-secret"}, "scope": {"api"}}
	resp, err := p.c.PostForm(p.srv.URL+"/Panopto/oauth2/connect/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	p.bearer = tok.AccessToken
	return p
}

func (p *standIn) do(ctx context.Context, method, path string, body any, out any) error {
	var r io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.srv.URL+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.bearer)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d", method, path, resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Upload implements watch.Panopto.
func (p *standIn) Upload(ctx context.Context, _, id string) (watch.Status, error) {
	var s struct {
		State     int
		SessionID *string `json:"SessionId"`
		Message   *string
	}
	if err := p.do(ctx, http.MethodGet, "/Panopto/PublicAPI/REST/sessionUpload/"+id, nil, &s); err != nil {
		return watch.Status{}, err
	}
	st := watch.Status{State: s.State}
	if s.SessionID != nil {
		st.SessionID = *s.SessionID
	}
	if s.Message != nil {
		st.Message = *s.Message
	}
	return st, nil
}

// Session implements watch.Panopto.
func (p *standIn) Session(ctx context.Context, _, id string) (watch.Session, error) {
	var s struct {
		Name     string
		Duration *float64
		Urls     struct{ ViewerUrl, EmbedUrl, ThumbnailUrl string }
	}
	if err := p.do(ctx, http.MethodGet, "/Panopto/api/v1/sessions/"+id, nil, &s); err != nil {
		return watch.Session{}, err
	}
	return watch.Session{ID: id, Name: s.Name, ViewerURL: s.Urls.ViewerUrl, EmbedURL: s.Urls.EmbedUrl,
		ThumbnailURL: s.Urls.ThumbnailUrl, Duration: s.Duration}, nil
}

// upload does what the sidecar's POST /-/uploads does up to State=1: a
// sessionUpload, a manifest naming video.mp4, the video unless withMedia
// is false (then processing fails), and the hand-over. It returns what the
// handler would pass to Watcher.Start.
func (p *standIn) upload(withMedia bool) watch.Upload {
	p.t.Helper()
	ctx := context.Background()
	var su map[string]any
	if err := p.do(ctx, http.MethodPost, "/Panopto/PublicAPI/REST/sessionUpload", map[string]string{"FolderId": folder}, &su); err != nil {
		p.t.Fatal(err)
	}
	id, target := su["ID"].(string), su["UploadTarget"].(string)
	put := func(name string, body []byte) {
		req, _ := http.NewRequest(http.MethodPut, target+"/"+name, bytes.NewReader(body))
		resp, err := p.c.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			p.t.Fatalf("PUT %s: %v %v", name, resp, err)
		}
		resp.Body.Close()
	}
	manifest := `<Session xmlns="http://tempuri.org/UniversalCaptureSpecification/v1"><Title>Week 3 demo</Title>` +
		`<Videos><Video><Start>PT0S</Start><File>video.mp4</File><Type>Primary</Type></Video></Videos></Session>`
	put("session.xml", []byte(manifest))
	media := bytes.Repeat([]byte("v"), 600<<10)
	if withMedia {
		put("video.mp4", media)
	}
	su["State"] = 1
	if err := p.do(ctx, http.MethodPut, "/Panopto/PublicAPI/REST/sessionUpload/"+id, su, nil); err != nil {
		p.t.Fatal(err)
	}
	return watch.Upload{ID: id, Account: "alice", FolderID: folder, Name: "video.mp4", Bytes: int64(len(media)),
		Metadata: json.RawMessage(`{"task_id":123,"unit":"SIT305"}`)}
}

// receiver is OnTrack's webhook endpoint: it verifies every request with the
// specification's library and answers from a script (then 204).
type receiver struct {
	srv *httptest.Server

	mu      sync.Mutex
	secret  string
	script  []int
	got     []delivery
	arrived chan struct{}
}

type delivery struct {
	id, typ  string
	status   int // what the receiver answered
	verified error
	data     watch.Upload
	at       time.Time
	body     []byte
	header   http.Header
}

// verifies reports whether d's signature verifies with secret.
func (d delivery) verifies(secret string) bool {
	wh, err := standardwebhooks.NewWebhook(secret)
	return err == nil && wh.Verify(d.body, d.header) == nil
}

func newReceiver(t testing.TB, secret string, script ...int) *receiver {
	r := &receiver{secret: secret, script: script, arrived: make(chan struct{}, 1000)}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	at := time.Now()
	r.mu.Lock()
	wh, err := standardwebhooks.NewWebhook(r.secret)
	if err == nil {
		err = wh.Verify(body, req.Header)
	}
	var ev struct {
		Type string       `json:"type"`
		Data watch.Upload `json:"data"`
	}
	_ = json.Unmarshal(body, &ev)
	st := http.StatusNoContent
	if len(r.script) > 0 {
		st, r.script = r.script[0], r.script[1:]
	}
	r.got = append(r.got, delivery{id: req.Header.Get("webhook-id"), typ: ev.Type, status: st, verified: err, data: ev.Data, at: at, body: body, header: req.Header.Clone()})
	r.mu.Unlock()
	w.WriteHeader(st)
	r.arrived <- struct{}{}
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// delivered returns the events answered 2xx, in order of arrival.
func (r *receiver) delivered() []delivery {
	var ok []delivery
	for _, d := range r.deliveries() {
		if d.status/100 == 2 {
			ok = append(ok, d)
		}
	}
	return ok
}

func (r *receiver) setSecret(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secret = s
}

// rotatingSecret is the sidecar's webhook secret, changed while it runs.
type rotatingSecret struct{ v atomic.Value }

func newSecret(s string) *rotatingSecret {
	r := &rotatingSecret{}
	r.v.Store(s)
	return r
}

func (r *rotatingSecret) get(context.Context) (token.Secret, error) {
	return token.Secret(r.v.Load().(string)), nil
}

func (r *rotatingSecret) set(s string) { r.v.Store(s) }

// env is a test's sidecar side: the store, its logs, the receiver.
type env struct {
	t      testing.TB
	pan    *standIn
	store  watch.Store
	logs   *testsupport.SyncBuffer
	rcv    *receiver
	secret *rotatingSecret
}

func newEnv(t testing.TB, mod func(*panoptofake.Options), script ...int) *env {
	e := &env{t: t, pan: newStandIn(t, mod), logs: &testsupport.SyncBuffer{}, secret: newSecret(secretA)}
	e.store = token.NewFileStore(filepath.Join(t.TempDir(), "token.json"))
	e.rcv = newReceiver(t, secretA, script...)
	return e
}

// options are short intervals, so that no test waits for real seconds.
func (e *env) options(holder string) watch.Options {
	return watch.Options{
		Store: e.store, Panopto: e.pan, Holder: holder,
		PollBase: 10 * time.Millisecond, PollMax: 40 * time.Millisecond,
		Scan: 20 * time.Millisecond, Grace: 150 * time.Millisecond, Hold: 5 * time.Second,
		Retry: func(int) time.Duration { return 10 * time.Millisecond },
		Log:   slog.New(slog.NewTextHandler(e.logs, nil)).With("replica", holder),
	}
}

// sender is the sidecar's webhook.Sender for the receiver.
func (e *env) sender() *webhook.Sender {
	return &webhook.Sender{URL: e.rcv.srv.URL + "/webhooks/panopto", Secret: e.secret.get}
}

// running is a Watcher whose Run goroutine the test can stop (a replica
// killed) and waits for at cleanup.
type running struct {
	*watch.Watcher
	cancel context.CancelFunc
	done   chan error
}

func (e *env) run(o watch.Options, webhooks bool) *running {
	w := watch.New(o)
	if webhooks {
		w.SetSender(e.sender())
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Watcher: w, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	e.t.Cleanup(r.stop)
	return r
}

// stop cancels Run and waits for it to return.
func (r *running) stop() {
	r.cancel()
	if err := <-r.done; err != nil {
		panic(err)
	}
	r.done <- nil
}

// get reads the upload as GET /-/uploads/{id} would.
func (e *env) get(w *watch.Watcher, id string) watch.Upload {
	e.t.Helper()
	u, ok, err := w.Get(context.Background(), id)
	if err != nil || !ok {
		e.t.Fatalf("Get(%s) = %v, %v", id, ok, err)
	}
	return u
}

// types lists the types of deliveries.
func types(ds []delivery) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.typ)
	}
	return strings.Join(s, " ")
}
