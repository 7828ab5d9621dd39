package harness

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// Busy starts n busy loops (`sh -c 'while :; do :; done'`), each its own
// process at normal priority, so that whatever runs beside them competes
// for the CPUs as it would on a cluster host running other work (issue
// #13: one loop per core). stop kills every loop and waits for it; it may
// be called more than once. The loops also die with this process
// (SIGKILL on its death) and StopBusy stops every loop still running
// (an interrupt handler calls it).
func Busy(n int) (stop func(), err error) {
	if n < 0 {
		return nil, fmt.Errorf("%d busy loops: %w", n, ErrBadConfig)
	}
	b := &busy{}
	for i := 0; i < n; i++ {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := startOnForker(cmd); err != nil {
			b.stop()
			return nil, fmt.Errorf("start busy loop: %w", err)
		}
		b.cmds = append(b.cmds, cmd)
	}
	busyMu.Lock()
	busySet[b] = struct{}{}
	busyMu.Unlock()
	return b.stop, nil
}

// BusyPids lists the processes of the busy loops still running.
func BusyPids() []int {
	busyMu.Lock()
	defer busyMu.Unlock()
	var pids []int
	for b := range busySet {
		for _, c := range b.cmds {
			pids = append(pids, c.Process.Pid)
		}
	}
	return pids
}

// StopBusy stops every busy loop this process started and did not stop.
func StopBusy() {
	busyMu.Lock()
	var bs []*busy
	for b := range busySet {
		bs = append(bs, b)
	}
	busyMu.Unlock()
	for _, b := range bs {
		b.stop()
	}
}

// startOnForker starts cmd from one OS thread that never exits. The
// kernel sends Pdeathsig when the thread that forked the child ends, not
// the process, and the Go runtime ends threads that a goroutine left
// locked (as namespace code does on purpose): started from such a
// thread, the loops would die in the middle of a run.
func startOnForker(cmd *exec.Cmd) error {
	forkerOnce.Do(func() {
		forker = make(chan forkReq)
		go func() {
			runtime.LockOSThread() // for good: this goroutine never returns
			for req := range forker {
				req.done <- req.cmd.Start()
			}
			select {}
		}()
	})
	done := make(chan error, 1)
	forker <- forkReq{cmd: cmd, done: done}
	return <-done
}

type forkReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	forkerOnce sync.Once
	forker     chan forkReq
)

var (
	busyMu  sync.Mutex
	busySet = map[*busy]struct{}{}
)

type busy struct {
	once sync.Once
	cmds []*exec.Cmd
}

func (b *busy) stop() {
	b.once.Do(func() {
		for _, c := range b.cmds {
			// The loop is a process group of its own: kill all of it.
			if err := syscall.Kill(-c.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				_ = c.Process.Kill()
			}
			_ = c.Wait()
		}
		busyMu.Lock()
		delete(busySet, b)
		busyMu.Unlock()
	})
}
