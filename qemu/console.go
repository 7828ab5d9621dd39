package qemu

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// console is the captured serial console of one QEMU process (VM) or of
// every power-on of a BMC's VM, appended (BMCVM). A reader waits for
// text with expect. It is an io.Writer for QEMU's output and is safe
// for concurrent use.
type console struct {
	tee io.Writer // a copy of everything written (a log file), or nil

	mu      sync.Mutex
	buf     []byte
	cursor  int           // end of the last expect match
	changed chan struct{} // closed and replaced on every write
}

func newConsole(tee io.Writer) *console {
	return &console{tee: tee, changed: make(chan struct{})}
}

// Write appends p and wakes the waiters.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf = append(c.buf, p...)
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	if c.tee != nil {
		c.tee.Write(p) // a lost log line must not stop the VM's console
	}
	return len(p), nil
}

// String returns everything written so far.
func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

// count returns how many times s was written so far.
func (c *console) count(s string) int {
	return strings.Count(c.String(), s)
}

// expect waits until s appears after the end of the previous match and
// returns the text from the previous match to the end of this one. It
// fails with ErrTimeout after timeout, or with ErrExited once done is
// closed (no more output can come) and s is not there. name labels the
// errors.
func (c *console) expect(s string, timeout time.Duration, done <-chan struct{}, name string) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		i := strings.Index(string(c.buf[c.cursor:]), s)
		if i >= 0 {
			from := c.cursor
			c.cursor += i + len(s)
			out := string(c.buf[from:c.cursor])
			c.mu.Unlock()
			return out, nil
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-done:
			c.mu.Lock()
			found := strings.Contains(string(c.buf[c.cursor:]), s)
			c.mu.Unlock()
			if found {
				continue
			}
			return "", fmt.Errorf("%w: %s while waiting for %q", ErrExited, name, s)
		case <-deadline.C:
			return "", fmt.Errorf("%w: %s: %q not seen in %s", ErrTimeout, name, s, timeout)
		}
	}
}
