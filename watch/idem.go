package watch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// ClaimState says what a Claim found.
type ClaimState int

const (
	// ClaimNew: the caller holds the key and does the upload, then calls
	// Key.Finish with its answer.
	ClaimNew ClaimState = iota
	// ClaimInProgress: another request holds the key and is still running:
	// answer 409 {"error":"upload_in_progress","id"} (ID once known).
	ClaimInProgress
	// ClaimDone: the key's request has finished: answer Status and Body
	// again. A request that ended without an answer (its replica died)
	// finishes as 409 {"error":"upload_interrupted","id"}.
	ClaimDone
)

// Claimed is what Claim found.
type Claimed struct {
	State  ClaimState
	ID     string          // the sessionUpload, once known
	Status int             // with ClaimDone
	Body   json.RawMessage // with ClaimDone
	Key    *Key            // with ClaimNew
}

// keyRecord is the stored form of an idempotency key (token.Record.Data);
// the record's Lease is held by the request while it runs.
type keyRecord struct {
	Account string          `json:"account"`
	Created time.Time       `json:"created"`
	ID      string          `json:"id,omitempty"`
	Done    bool            `json:"done"`
	Status  int             `json:"status,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
}

// idemKey is the store key of an account's idempotency key: the key is
// hashed, so the store never holds what the client sent.
func idemKey(account, key string) string {
	sum := sha256.Sum256([]byte(key))
	return idemPrefix + account + "/" + hex.EncodeToString(sum[:])
}

// idemPrefix starts every idempotency key's record key.
const idemPrefix = "idem/"

// Claim claims an Idempotency-Key for account: the first request with it
// gets ClaimNew and a Key to finish; another request with the same key
// within KeyTTL gets the first one's state, so no second upload starts. A
// key older than KeyTTL is claimed afresh. key must pass ValidKey.
func (w *Watcher) Claim(ctx context.Context, account, key string) (Claimed, error) {
	if err := ValidKey(key); err != nil {
		return Claimed{}, err
	}
	sk := idemKey(account, key)
	for range 5 {
		rec, ver, err := w.o.Store.Load(ctx, sk)
		if err != nil {
			return Claimed{}, fmt.Errorf("watch: read idempotency key: %w", err)
		}
		now := w.o.Now()
		var kr keyRecord
		if ver != 0 && rec.Data != nil {
			if err := json.Unmarshal(rec.Data, &kr); err != nil {
				return Claimed{}, fmt.Errorf("watch: read idempotency key: %w: %w", token.ErrCorrupt, err)
			}
		}
		if ver != 0 && rec.Data != nil && now.Sub(kr.Created) < w.o.KeyTTL {
			switch {
			case kr.Done:
				return Claimed{State: ClaimDone, ID: kr.ID, Status: kr.Status, Body: kr.Body}, nil
			case rec.Lease != nil && now.Before(rec.Lease.Until):
				return Claimed{State: ClaimInProgress, ID: kr.ID}, nil
			}
			// The request holding it ended without an answer.
			kr.Done, kr.Status, kr.Body = true, http.StatusConflict, interrupted(kr.ID)
			data, _ := json.Marshal(kr)
			if _, err := w.o.Store.CompareAndSwap(ctx, sk, ver, token.Record{Data: data}); errors.Is(err, token.ErrConflict) {
				continue
			} else if err != nil {
				return Claimed{}, fmt.Errorf("watch: write idempotency key: %w", err)
			}
			w.log.Warn("idempotent upload interrupted: its request ended without an answer", "account", account, "id", kr.ID)
			return Claimed{State: ClaimDone, ID: kr.ID, Status: kr.Status, Body: kr.Body}, nil
		}
		kr = keyRecord{Account: account, Created: now}
		data, _ := json.Marshal(kr)
		lease := &token.Lease{Holder: w.o.Holder, Until: now.Add(w.o.KeyLease)}
		nv, err := w.o.Store.CompareAndSwap(ctx, sk, ver, token.Record{Data: data, Lease: lease})
		if errors.Is(err, token.ErrConflict) {
			continue
		}
		if err != nil {
			return Claimed{}, fmt.Errorf("watch: write idempotency key: %w", err)
		}
		k := &Key{w: w, key: sk, ver: nv, rec: kr, stop: make(chan struct{}), done: make(chan struct{})}
		go k.renew()
		return Claimed{State: ClaimNew, Key: k}, nil
	}
	return Claimed{}, errors.New("watch: idempotency key: too many concurrent writers")
}

func interrupted(id string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{
		"error": "upload_interrupted", "id": id,
		"detail": "the request with this Idempotency-Key ended without an answer; use a new key to upload again",
	})
	return b
}

// Key is a claimed idempotency key. Its lease is renewed until Finish,
// which the claimant must call (defer it), whatever happens.
type Key struct {
	w    *Watcher
	key  string
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu  sync.Mutex
	ver int64
	rec keyRecord
}

// renew keeps the lease while the request runs, every third of KeyLease.
func (k *Key) renew() {
	defer close(k.done)
	t := time.NewTicker(k.w.o.KeyLease / 3)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
		}
		if err := k.write(context.Background(), func(*keyRecord) {}, true); err != nil {
			k.w.log.Warn("idempotency key: lease not renewed", "err", err)
			if errors.Is(err, token.ErrConflict) {
				return
			}
		}
	}
}

// write changes the record under the key's lock and writes it, with the
// lease when held.
func (k *Key) write(ctx context.Context, change func(*keyRecord), held bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	kr := k.rec
	change(&kr)
	data, err := json.Marshal(kr)
	if err != nil {
		return fmt.Errorf("watch: encode idempotency key: %w", err)
	}
	rec := token.Record{Data: data}
	if held {
		rec.Lease = &token.Lease{Holder: k.w.o.Holder, Until: k.w.o.Now().Add(k.w.o.KeyLease)}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	nv, err := k.w.o.Store.CompareAndSwap(ctx, k.key, k.ver, rec)
	if err != nil {
		return fmt.Errorf("watch: write idempotency key: %w", err)
	}
	k.ver, k.rec = nv, kr
	return nil
}

// SetUpload records the sessionUpload once Panopto created it, so a
// request with the same key in the meantime is told its id.
func (k *Key) SetUpload(ctx context.Context, id string) error {
	return k.write(ctx, func(kr *keyRecord) { kr.ID = id }, true)
}

// Finish records the answer given (status and JSON body), which every
// later request with the key gets, and stops renewing the lease. Only the
// first call counts.
func (k *Key) Finish(ctx context.Context, status int, body []byte) error {
	err := errors.New("watch: idempotency key already finished")
	k.once.Do(func() {
		close(k.stop)
		<-k.done
		var b bytes.Buffer
		if json.Compact(&b, body) != nil {
			err = errors.New("watch: idempotency key: the answer is not JSON")
			_ = k.write(ctx, func(kr *keyRecord) { kr.Done, kr.Status, kr.Body = true, http.StatusInternalServerError, nil }, false)
			return
		}
		err = k.write(ctx, func(kr *keyRecord) { kr.Done, kr.Status, kr.Body = true, status, b.Bytes() }, false)
	})
	return err
}
