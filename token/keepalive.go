package token

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/backoff"
)

// Keep-alive: Panopto's refresh tokens die after a period of disuse, and an
// account's grant is refreshed only while the account is held in memory.
// KeepAlive walks the store and refreshes every grant that has not been
// refreshed for a while, so that a student who connected in week 1 can still
// upload in week 12.

// Lister enumerates the accounts a Store holds records for. FileStore and
// vault.Store implement it.
type Lister interface {
	// List returns up to limit (<= 0: every) account names greater than
	// after, in ascending byte order. Records that are not an account's
	// (the default grant, login ticket markers) are left out.
	List(ctx context.Context, after string, limit int) ([]string, error)
}

// KeepAliveSettings are the keep-alive's options; Update may change them
// while it runs.
type KeepAliveSettings struct {
	// After: a grant not refreshed for this long is refreshed. Each grant's
	// turn comes at a fixed point between half of After and After (from a
	// hash of its account), so that grants obtained together are refreshed
	// apart. 0 turns keep-alive off.
	After time.Duration
	// Rate bounds the refreshes per second (default 2).
	Rate float64
}

// Keep-alive results, as counted by the result hook.
const (
	KeepAliveOK      = "ok"      // refreshed here
	KeepAliveSkipped = "skipped" // refreshed elsewhere meanwhile, or dropped
	KeepAliveRefused = "refused" // Panopto refused it: dropped, the account must connect again
	KeepAliveError   = "error"   // transient: retried by the next sweep
)

// KeepAlive refreshes idle accounts' grants in the background. Replicas
// sharing a store each run one; a grant is refreshed by one of them, through
// the refresh lease every refresh takes.
type KeepAlive struct {
	pool     *Pool
	list     Lister
	log      *slog.Logger
	result   func(string)
	settings atomic.Pointer[KeepAliveSettings]
	kick     chan struct{}
	// wait sleeps d or until ctx ends (a test replaces it).
	wait func(ctx context.Context, d time.Duration) error
}

// NewKeepAlive returns the keep-alive of p's accounts, listed by l. result,
// if set, counts every attempt by its result (KeepAliveOK ...).
func NewKeepAlive(p *Pool, l Lister, s KeepAliveSettings, result func(string), log *slog.Logger) *KeepAlive {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if result == nil {
		result = func(string) {}
	}
	k := &KeepAlive{pool: p, list: l, log: log, result: result, kick: make(chan struct{}, 1), wait: backoff.Sleep}
	k.settings.Store(&s)
	return k
}

// Update applies new settings (config reload) from the next sweep on.
func (k *KeepAlive) Update(s KeepAliveSettings) {
	k.settings.Store(&s)
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// Run sweeps the store every sweepInterval until ctx ends.
func (k *KeepAlive) Run(ctx context.Context) {
	for {
		s := *k.settings.Load()
		if s.After <= 0 {
			select {
			case <-ctx.Done():
				return
			case <-k.kick:
				continue
			}
		}
		start := time.Now()
		every := sweepInterval(s.After)
		if _, err := k.sweep(ctx, every); err != nil && ctx.Err() == nil {
			k.log.Warn("keep-alive: sweep failed; trying again at the next one", "err", err)
		}
		// Replicas started together drift apart: ±10% on every interval.
		d := every - time.Since(start) + time.Duration((rand.Float64()-0.5)*0.2*float64(every))
		if err := k.wait(ctx, max(d, every/10)); err != nil {
			return
		}
	}
}

// sweepInterval is how often the store is walked: an eighth of after,
// between 1s and 1h.
func sweepInterval(after time.Duration) time.Duration {
	return min(max(after/8, time.Second), time.Hour)
}

// sweepResult counts what one sweep did.
type sweepResult struct {
	Accounts int // grants looked at
	Due      int
	Results  map[string]int // by KeepAliveOK ...
}

// sweep walks the store once and refreshes the grants that are due, spread
// evenly over span (the time until the next sweep) but never faster than
// Rate, in random order so that replicas sweeping at once rarely meet on a
// grant.
func (k *KeepAlive) sweep(ctx context.Context, span time.Duration) (sweepResult, error) {
	s := *k.settings.Load()
	res := sweepResult{Results: map[string]int{}}
	if s.After <= 0 {
		return res, nil
	}
	type due struct {
		name  string
		grant *Grant
	}
	var todo []due
	err := k.walk(ctx, func(name string, rec Record) {
		res.Accounts++
		if g := rec.Grant; g != nil && !g.RefreshToken.IsZero() && keepAliveDue(name, g, k.pool.now(), s.After) {
			todo = append(todo, due{name, g})
		}
	})
	if err != nil {
		return res, err
	}
	res.Due = len(todo)
	if len(todo) == 0 {
		return res, nil
	}
	rand.Shuffle(len(todo), func(i, j int) { todo[i], todo[j] = todo[j], todo[i] })
	rate := s.Rate
	if rate <= 0 {
		rate = 2
	}
	spacing := max(span/time.Duration(len(todo)), time.Duration(float64(time.Second)/rate))
	for i, d := range todo {
		if i > 0 {
			if err := k.wait(ctx, spacing); err != nil {
				return res, err
			}
		}
		r := k.pool.keepAlive(ctx, d.name, d.grant)
		res.Results[r]++
		k.result(r)
	}
	return res, nil
}

// walk calls fn with every account's record, in name order. A record that
// cannot be read is logged and skipped.
func (k *KeepAlive) walk(ctx context.Context, fn func(name string, rec Record)) error {
	return walkAccounts(ctx, k.pool.base.Store, k.list, "", func(name string, rec Record, err error) bool {
		if err != nil {
			k.log.Warn("keep-alive: cannot read an account's grant", "account", name, "err", err)
			return true
		}
		fn(name, rec)
		return true
	})
}

// walkAccounts loads every account listed after after, in name order, until
// fn returns false. The names are listed at once: neither store can list a
// page without reading every name.
func walkAccounts(ctx context.Context, st Store, l Lister, after string, fn func(name string, rec Record, err error) bool) error {
	names, err := l.List(ctx, after, 0)
	if err != nil {
		return err
	}
	for _, n := range names {
		rec, _, err := st.Load(ctx, n)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !fn(n, rec, err) {
			return nil
		}
	}
	return nil
}

// keepAliveDue reports whether g, account's grant, is due at now: older
// than its turn, a fixed point between half of after and after.
func keepAliveDue(account string, g *Grant, now time.Time, after time.Duration) bool {
	sum := sha256.Sum256([]byte(account))
	frac := float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53) // [0, 1)
	turn := after - time.Duration(frac*float64(after/2))
	return !now.Before(g.ObtainedAt.Add(turn))
}

// keepAlive refreshes account's grant g, read by a sweep, unless the store
// holds another one by now. An account held in memory is refreshed by its
// manager; any other by a manager made for this refresh alone, so the
// cache is not filled with idle accounts.
func (p *Pool) keepAlive(ctx context.Context, account string, g *Grant) string {
	m, cached := p.cached(account)
	if !cached {
		m = p.newManager(account, p.settings.Load())
	}
	before := m.state.Load().refreshes
	err := m.refreshShared(ctx, g)
	after := m.state.Load()
	switch {
	case !cached && after.pending != nil:
		// Panopto rotated the refresh token but the store did not take
		// it: the only copy is in this manager, which must live on.
		p.hold(account, m)
	case !cached:
		m.stop() // a refresh ctx gave up on may still be running
	}
	refreshed := after.refreshes > before
	switch {
	case errors.Is(err, ErrInvalidGrant):
		return KeepAliveRefused
	case errors.Is(err, ErrNotConnected):
		return KeepAliveSkipped
	case refreshed:
		return KeepAliveOK
	case err != nil:
		return KeepAliveError
	default:
		return KeepAliveSkipped
	}
}

// cached returns account's manager if the pool holds it, without marking
// it used.
func (p *Pool) cached(account string) (*Manager, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.byName[account]; ok {
		return el.Value.(*poolEntry).m, true
	}
	return nil, false
}

// hold puts m, a manager that was not started, in the pool as account's
// and runs its background loop.
func (p *Pool) hold(account string, m *Manager) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.byName[account]; ok {
		p.evictLocked(el)
	}
	limit := p.settings.Load().MaxCached
	if limit <= 0 {
		limit = 1000
	}
	for p.lru.Len() >= limit {
		p.evictLocked(p.lru.Back())
	}
	mctx, cancel := context.WithCancel(p.life)
	loaded := make(chan struct{})
	close(loaded)
	e := &poolEntry{name: account, m: m, cancel: cancel, lastUsed: p.now(), loaded: loaded}
	p.byName[account] = p.lru.PushFront(e)
	p.goLocked(mctx, m, nil)
}

// Disconnected lists, in name order, up to limit accounts after after
// whose grant Panopto refused (reason refresh_refused): they must connect
// again. next, when not "", is the after of the following page.
func Disconnected(ctx context.Context, st Store, l Lister, after string, limit int) (names []string, next string, err error) {
	names = []string{}
	err = walkAccounts(ctx, st, l, after, func(name string, rec Record, err error) bool {
		if err != nil || rec.Grant != nil || rec.Dropped != droppedInvalidGrant {
			return true
		}
		names = append(names, name)
		if len(names) == limit {
			next = name
			return false
		}
		return true
	})
	if err != nil {
		return nil, "", err
	}
	return names, next, nil
}
