// Package harnesstest holds the test helpers of the lab harness: a
// cluster, or busy loops, for the length of one test, cleaned up when it
// ends (also when it fails). It is kept apart from package harness so that
// herd itself (herd lab) does not link package testing.
package harnesstest

import (
	"os"
	"testing"

	"github.com/herd-cluster/herd/harness"
)

// New builds a cluster for a test and closes it in t.Cleanup, also when
// the test fails; on failure the tail of every node's log goes to the test
// log. It skips the test when not root or when a needed tool is missing,
// and fails it if the cluster cannot be built.
func New(t testing.TB, cfg harness.Config) *harness.Cluster {
	t.Helper()
	if err := harness.Available(); err != nil {
		t.Skipf("harness unavailable: %v", err)
	}
	harness.HandleInterrupts()
	c, err := harness.New(t.Context(), cfg)
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

// Busy runs n busy loops for the rest of a test: they are stopped in
// t.Cleanup, also when the test fails.
func Busy(t testing.TB, n int) {
	t.Helper()
	stop, err := harness.Busy(n)
	if err != nil {
		t.Fatalf("busy loops: %v", err)
	}
	t.Cleanup(stop)
}
