package watch_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
	"github.com/doubtfire-lms/panopto-sidecar/webhook"
)

// hangingPanopto is a replica that stops responding in the middle of a
// poll: its calls block (ignoring ctx) until the test ends, as a process
// frozen or cut off from the network would, holding its lease.
type hangingPanopto struct {
	watch.Panopto
	hang    atomic.Bool
	hanging chan struct{}
	release chan struct{}
}

func (h *hangingPanopto) Upload(ctx context.Context, account, id string) (watch.Status, error) {
	if h.hang.Load() {
		select {
		case h.hanging <- struct{}{}:
		default:
		}
		<-h.release
		return watch.Status{}, errors.New("frozen replica")
	}
	return h.Panopto.Upload(ctx, account, id)
}

// TestWatchSurvivesItsReplica: a replica watching an upload dies while it
// is processing; the watch carries on from the store, by another replica
// or by the same one restarted, and OnTrack gets each event once.
func TestWatchSurvivesItsReplica(t *testing.T) {
	tests := []struct {
		name   string
		next   string // the replica that carries on
		freeze bool   // the first replica hangs mid-poll instead of stopping
	}{
		{"another replica after a stop", "pod-b", false},
		{"the same replica restarted", "pod-a", false},
		{"another replica while the first hangs holding the lease", "pod-b", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *panoptofake.Options) { o.ProcessingDelay = 400 * time.Millisecond })
			path := filepath.Join(t.TempDir(), "token.json")
			e.store = token.NewFileStore(path)
			oa := e.options("pod-a")
			oa.Hold = 300 * time.Millisecond
			hp := &hangingPanopto{Panopto: e.pan, hanging: make(chan struct{}, 1), release: make(chan struct{})}
			defer close(hp.release)
			oa.Panopto = hp
			a := e.run(oa, true)
			up := e.pan.upload(true)
			if err := a.Start(t.Context(), up); err != nil {
				t.Fatal(err)
			}
			testsupport.WaitFor(t, 10*time.Second, "upload.processing", func() bool { return len(e.rcv.delivered()) == 1 })
			if tc.freeze {
				hp.hang.Store(true)
				<-hp.hanging
			} else {
				a.stop()
			}
			rec, _, err := e.store.Load(t.Context(), "upload/"+up.ID)
			if err != nil || rec.Lease == nil || rec.Lease.Holder != "pod-a" {
				t.Fatalf("after pod-a died: lease %+v, %v", rec.Lease, err)
			}
			if u := e.get(a.Watcher, up.ID); u.State != watch.StateProcessing {
				t.Fatalf("pod-a died with the upload %s", u.StateName)
			}

			// The next replica has its own store handle on the same file.
			ob := e.options(tc.next)
			ob.Store = token.NewFileStore(path)
			b := e.run(ob, true)
			testsupport.WaitFor(t, 10*time.Second, "upload.completed", func() bool { return len(e.rcv.delivered()) == 2 })
			if got := types(e.rcv.delivered()); got != "upload.processing upload.completed" {
				t.Errorf("events %q", got)
			}
			if u := e.get(b.Watcher, up.ID); u.State != watch.StateComplete || u.Session == nil || u.Session.Duration == nil {
				t.Errorf("Get = %+v", u)
			}
			if tc.next == "pod-b" && !strings.Contains(e.logs.String(), `msg="took over upload watch" replica=pod-b`) {
				t.Errorf("takeover not logged:\n%s", e.logs.String())
			}
		})
	}
}

// TestWatchTakenOverVault: two replicas share a Vault store; the one that
// started the watch dies mid-processing and the other finishes it.
func TestWatchTakenOverVault(t *testing.T) {
	srv := vaulttest.StartDev(t)
	store := func() watch.Store { return vaultStore(t, srv) }
	e := newEnv(t, func(o *panoptofake.Options) { o.ProcessingDelay = 400 * time.Millisecond })
	oa, ob := e.options("pod-a"), e.options("pod-b")
	oa.Store, ob.Store = store(), store()
	oa.Grace, ob.Grace = 500*time.Millisecond, 500*time.Millisecond
	e.store = oa.Store
	a := e.run(oa, true)
	b := e.run(ob, true)
	up := e.pan.upload(true)
	if err := a.Start(t.Context(), up); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 20*time.Second, "upload.processing", func() bool { return len(e.rcv.delivered()) == 1 })
	if strings.Contains(e.logs.String(), "took over") {
		t.Fatalf("pod-b took the watch while pod-a held it:\n%s", e.logs.String())
	}
	a.stop()
	testsupport.WaitFor(t, 20*time.Second, "upload.completed", func() bool { return len(e.rcv.delivered()) == 2 })
	if got := types(e.rcv.delivered()); got != "upload.processing upload.completed" {
		t.Errorf("events %q", got)
	}
	if !strings.Contains(e.logs.String(), `msg="took over upload watch" replica=pod-b`) {
		t.Errorf("takeover not logged:\n%s", e.logs.String())
	}
	if u := e.get(b.Watcher, up.ID); u.State != watch.StateComplete || u.Session == nil || string(u.Metadata) != string(up.Metadata) {
		t.Errorf("Get = %+v", u)
	}
	if d := e.rcv.delivered()[1]; d.typ != webhook.TypeCompleted || d.verified != nil {
		t.Errorf("completed: %+v", d)
	}
}

// vaultStore is one replica's store in srv: its own client, logged in with
// the root token.
func vaultStore(t testing.TB, srv *vaulttest.Server) watch.Store {
	getenv := func(k string) string { return map[string]string{"VAULT_TOKEN": srv.RootToken()}[k] }
	c, err := vault.New(context.Background(), vault.Config{Address: srv.Addr()}, getenv, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return vault.NewStore(c, "panopto/token")
}
