package harness

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
)

var interruptOnce sync.Once

// HandleInterrupts makes SIGINT and SIGTERM close every open cluster that
// is not persistent, then end the process with status 130 (SIGINT) or 143
// (SIGTERM). Calling it more than once is harmless. NewT calls it.
func HandleInterrupts() {
	interruptOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		go func() {
			sig := <-ch
			CloseAll()
			code := 130
			if sig == syscall.SIGTERM {
				code = 143
			}
			os.Exit(code)
		}()
	})
}

// CloseAll closes every cluster this process has open and did not mark
// persistent.
func CloseAll() {
	openMu.Lock()
	var cs []*Cluster
	for c := range openSet {
		if !c.st.Persistent {
			cs = append(cs, c)
		}
	}
	openMu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// NewT builds a cluster for a test and closes it in t.Cleanup, also when
// the test fails; on failure the tail of every node's log goes to the test
// log. It skips the test when not root or when a needed tool is missing,
// and fails it if the cluster cannot be built.
func NewT(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("harness unavailable: %v", err)
	}
	HandleInterrupts()
	c, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("build cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.All() {
				if b, err := os.ReadFile(n.LogPath()); err == nil && len(b) > 0 {
					if len(b) > 4000 {
						b = b[len(b)-4000:]
					}
					t.Logf("log of %s:\n%s", n.Name(), b)
				}
			}
		}
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	return c
}
