package harness

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

var interruptOnce sync.Once

// HandleInterrupts makes SIGINT and SIGTERM close every open cluster that
// is not persistent, then end the process with status 130 (SIGINT) or 143
// (SIGTERM). Calling it more than once is harmless. harnesstest.New calls it.
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
