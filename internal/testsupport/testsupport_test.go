package testsupport

import (
	"crypto/x509"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestSyncBufferConcurrentWrites(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fmt.Fprintf(&b, "%03d\n", i)
			_ = b.String()
		}()
	}
	wg.Wait()
	if got := len(b.String()); got != 400 {
		t.Fatalf("buffer holds %d bytes, want 400", got)
	}
}

func TestClockAdvance(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	c := NewClock(start)
	c.Advance(90 * time.Second)
	if got, want := c.Now(), start.Add(90*time.Second); !got.Equal(want) {
		t.Fatalf("Now() = %v, want %v", got, want)
	}
	var zero Clock
	zero.Advance(time.Hour)
	if got := zero.Now(); !got.Equal(time.Time{}.Add(time.Hour)) {
		t.Fatalf("zero clock after an hour reads %v", got)
	}
}

func TestWaitForReturnsWhenCondHolds(t *testing.T) {
	n := 0
	WaitFor(t, 5*time.Second, "the third poll", func() bool { n++; return n >= 3 })
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}

func TestNewCertChain(t *testing.T) {
	ca := NewCert(t, "root", nil, true)
	leaf := NewCert(t, "leaf", ca, false)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "sidecar.test"}); err != nil {
		t.Fatalf("leaf does not verify under its CA: %v", err)
	}
	if leaf.Cert.IsCA || !ca.Cert.IsCA {
		t.Fatal("IsCA not honoured")
	}
	leaf.TLSCert(t)
}
