package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/herd-cluster/herd/internal/syncio"
)

// Command prepares name with args to run inside the node: in its network
// namespace and, for nodeI, its mount namespace (through nsenter from
// util-linux, because a multi-threaded Go process cannot enter a mount
// namespace). It starts in the caller's working directory. The process
// gets its own process group. The caller sets
// Stdin/Stdout/Stderr and runs it; prefer Start, which also captures the
// output and registers the process for cleanup.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	a := []string{"--net=" + n.NetNS()}
	if m := n.MountNS(); m != "" {
		a = append(a, "--mount="+m)
		// Entering a mount namespace moves to its root; keep the caller's
		// working directory (the node sees the host's tree) so relative
		// paths work the same in every node.
		if wd, err := os.Getwd(); err == nil {
			a = append(a, "--wd="+wd)
		}
	}
	a = append(a, "--", name)
	a = append(a, args...)
	cmd := exec.CommandContext(ctx, nsenterPath(), a...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func nsenterPath() string {
	if p, err := exec.LookPath("nsenter"); err == nil {
		return p
	}
	return "/usr/bin/nsenter"
}

// Proc is a process started in a node by Start. Its output is captured in
// memory and appended to the node's log (LogPath).
type Proc struct {
	node   *Node
	cmd    *exec.Cmd
	stdout syncio.Buffer
	stderr syncio.Buffer
	done   chan struct{}
	err    error
}

// Start runs name with args inside the node and returns at once. Cancelling
// ctx kills the process group. Close kills whatever still runs.
func (n *Node) Start(ctx context.Context, name string, args ...string) (*Proc, error) {
	return n.StartWith(ctx, nil, name, args...)
}

// StartWith is Start with stdin connected to r (nil: no input).
func (n *Node) StartWith(ctx context.Context, stdin io.Reader, name string, args ...string) (*Proc, error) {
	n.c.mu.Lock()
	if n.c.closed {
		n.c.mu.Unlock()
		return nil, ErrClosed
	}
	n.c.mu.Unlock()
	log, err := os.OpenFile(n.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log = nil
	}
	p := &Proc{node: n, done: make(chan struct{})}
	cmd := n.Command(ctx, name, args...)
	cmd.Stdin = stdin
	if log != nil {
		lw := syncio.NewWriter(log)
		fmt.Fprintf(lw, "=== %s %s: %s %s\n", time.Now().Format(time.RFC3339Nano), n.name, name, strings.Join(args, " "))
		cmd.Stdout = io.MultiWriter(&p.stdout, lw)
		cmd.Stderr = io.MultiWriter(&p.stderr, lw)
	} else {
		cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	}
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		if log != nil {
			log.Close()
		}
		return nil, fmt.Errorf("start %s in %s: %w", name, n.name, err)
	}
	n.c.mu.Lock()
	if n.c.closed {
		n.c.mu.Unlock()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, ErrClosed
	}
	n.c.procs[p] = struct{}{}
	n.c.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		if log != nil {
			fmt.Fprintf(log, "=== %s %s: %s exited: %v\n", time.Now().Format(time.RFC3339Nano), n.name, name, p.err)
			log.Close()
		}
		close(p.done)
		n.c.mu.Lock()
		delete(n.c.procs, p)
		n.c.mu.Unlock()
	}()
	return p, nil
}

// Run starts name in the node, waits, and returns its stdout. The error
// includes stderr when the command fails.
func (n *Node) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	p, err := n.Start(ctx, name, args...)
	if err != nil {
		return nil, err
	}
	if err := p.Wait(); err != nil {
		return p.Stdout(), fmt.Errorf("%s in %s: %w: %s", name, n.name, err, strings.TrimSpace(string(p.Stderr())))
	}
	return p.Stdout(), nil
}

// LogPath returns the file that collects the output of every process
// started in the node.
func (n *Node) LogPath() string {
	return filepath.Join(n.c.st.WorkDir, "logs", n.name+".log")
}

// Wait waits for the process to end and returns its error (nil on exit 0).
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Pid returns the process id (of the command itself: nsenter execs it).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// ExitCode returns the exit code once the process ended, -1 if it was
// killed by a signal or still runs.
func (p *Proc) ExitCode() int {
	select {
	case <-p.done:
	default:
		return -1
	}
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// MaxRSS returns the peak resident memory in bytes of the ended process
// (from rusage), or 0.
func (p *Proc) MaxRSS() int64 {
	select {
	case <-p.done:
	default:
		return 0
	}
	if p.cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss * 1024
	}
	return 0
}

// Stdout returns what the process wrote to stdout so far.
func (p *Proc) Stdout() []byte { return p.stdout.Bytes() }

// Stderr returns what the process wrote to stderr so far.
func (p *Proc) Stderr() []byte { return p.stderr.Bytes() }

// Kill sends SIGKILL to the process group.
func (p *Proc) Kill() error { return p.signalGroup(syscall.SIGKILL) }

// Freeze stops (SIGSTOP) the process group; Thaw resumes it.
func (p *Proc) Freeze() error { return p.signalGroup(syscall.SIGSTOP) }

// Thaw resumes (SIGCONT) the process group.
func (p *Proc) Thaw() error { return p.signalGroup(syscall.SIGCONT) }

func (p *Proc) signalGroup(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	err := syscall.Kill(-p.cmd.Process.Pid, sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d to %s pid %d: %w", sig, p.node.name, p.cmd.Process.Pid, err)
	}
	return nil
}
