package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"
)

// connPool keeps one upstream address's idle connections, most recently
// used last (so oldest first), so the busiest connections stay warm and
// the rest age out.
type connPool struct {
	tls        bool
	addr       string
	serverName string

	mu    sync.Mutex
	idle  []*conn
	sweep *time.Timer // set while idle connections wait to expire
}

func (p *connPool) get(ctx context.Context, t *Transport, mustBeOpen bool) (*conn, error) {
	for {
		pc := p.popIdle(t.idleTimeout)
		if pc == nil {
			return p.dial(ctx, t)
		}
		if mustBeOpen && !pc.stillOpen() {
			pc.close()
			continue
		}
		return pc, nil
	}
}

func (p *connPool) popIdle(idleTimeout time.Duration) *conn {
	p.mu.Lock()
	var pc *conn
	if n := len(p.idle); n > 0 {
		pc = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
	}
	p.mu.Unlock()
	if pc != nil && idleTimeout > 0 && time.Since(pc.idleSince) > idleTimeout {
		pc.close()
		return p.popIdle(idleTimeout)
	}
	return pc
}

func (p *connPool) put(pc *conn, t *Transport) {
	pc.idleSince, pc.reused = time.Now(), true
	p.mu.Lock()
	keep := len(p.idle) < t.maxIdlePerHost
	if keep {
		p.idle = append(p.idle, pc)
		if p.sweep == nil && t.idleTimeout > 0 {
			// Close connections left idle past the timeout even when no
			// request comes to notice.
			p.sweep = time.AfterFunc(t.idleTimeout, func() { p.expire(t.idleTimeout) })
		}
	}
	p.mu.Unlock()
	if !keep {
		pc.close()
	}
}

// expire closes the connections idle longer than idleTimeout and waits
// for the next one to expire, while any are left.
func (p *connPool) expire(idleTimeout time.Duration) {
	now := time.Now()
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && now.Sub(p.idle[i].idleSince) > idleTimeout {
		i++
	}
	expired := append([]*conn(nil), p.idle[:i]...)
	p.idle = append(p.idle[:0], p.idle[i:]...)
	if len(p.idle) > 0 {
		p.sweep.Reset(idleTimeout - now.Sub(p.idle[0].idleSince) + time.Millisecond)
	} else {
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, pc := range expired {
		pc.close()
	}
}

func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, pc := range idle {
		pc.close()
	}
}

func (p *connPool) dial(ctx context.Context, t *Transport) (*conn, error) {
	raw, err := t.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	nc := raw
	if p.tls {
		cfg := t.tlsConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = p.serverName
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(raw, cfg)
		hctx, cancel := context.WithTimeout(ctx, t.tlsTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", p.addr, err)
		}
		nc = tc
	}
	pc := &conn{t: t, pool: p, nc: nc, raw: raw}
	pc.lr.r = nc
	pc.br = bufio.NewReaderSize(&pc.lr, 32<<10)
	pc.bw = bufio.NewWriterSize(nc, 32<<10)
	return pc, nil
}
