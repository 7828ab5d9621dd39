package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/ring/report"
)

// waitAll waits for every process and returns the failures.
func waitAll(ps []*harness.Proc) error {
	return waitGrace(ps, 0)
}

// waitGrace is waitAll, but with grace > 0 a process still running grace
// after the call is killed and reported (a receiver left waiting when its
// sender has given up).
func waitGrace(ps []*harness.Proc, grace time.Duration) error {
	var errs []error
	var deadline <-chan time.Time
	if grace > 0 {
		deadline = time.After(grace)
	}
	for _, p := range ps {
		select {
		case <-p.Done():
		case <-deadline:
			for _, q := range ps {
				_ = q.Kill()
			}
			errs = append(errs, fmt.Errorf("pid %d still ran %v after the sender ended", p.Pid(), grace))
			deadline = nil
		}
		if err := p.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("pid %d: %w: %s", p.Pid(), err, lastLine(p.Stderr())))
		}
	}
	return errors.Join(errs...)
}

// nodeErrors lists the per-node errors of herd's JSON summary.
func nodeErrors(stdout []byte) string {
	s, err := report.Parse([]byte(lastLine(stdout)))
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, n := range s.Nodes {
		if n.Error != "" {
			fmt.Fprintf(&b, "; %s %s: %s", n.Addr, n.State, n.Error)
		}
	}
	return b.String()
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func runUDPCast(ctx context.Context, c *harness.Cluster, golden string) (float64, error) {
	var recvs []*harness.Proc
	for _, n := range c.Nodes() {
		p, err := n.Start(ctx, "udp-receiver", "--file", harness.NodeDisk, "--interface", "eth0", "--nokbd", "--sync", "--no-progress")
		if err != nil {
			return 0, err
		}
		recvs = append(recvs, p)
	}
	var pids []int
	for _, p := range recvs {
		pids = append(pids, p.Pid())
	}
	// As for herd: the clock starts once every receiver waits.
	if err := waitBound(pids, "udp", []int{9000, 9001}, "07", 30*time.Second); err != nil {
		return 0, err
	}
	start := time.Now()
	send, err := c.Golden().Start(ctx, "udp-sender", "--file", golden, "--interface", "br0",
		"--min-receivers", strconv.Itoa(len(recvs)), "--max-wait", "30", "--nokbd", "--no-progress")
	if err != nil {
		return 0, err
	}
	serr := send.Wait()
	rerr := waitGrace(recvs, 20*time.Second)
	secs := time.Since(start).Seconds()
	if serr != nil {
		return 0, fmt.Errorf("udp-sender: %w: %s", serr, lastLine(send.Stderr()))
	}
	if rerr != nil {
		return 0, fmt.Errorf("udp-receiver: %w", rerr)
	}
	return secs, nil
}

// runNaive copies to one node after the other with the built-in copier.
func runNaive(ctx context.Context, c *harness.Cluster, self, golden string) (float64, error) {
	start := time.Now()
	for _, n := range c.Nodes() {
		recv, err := n.Start(ctx, self, "copier-recv", ":9100", harness.NodeDisk)
		if err != nil {
			return 0, err
		}
		send, err := c.Golden().Start(ctx, self, "copier-send", net.JoinHostPort(n.Addr().String(), "9100"), golden)
		if err != nil {
			return 0, err
		}
		if err := waitAll([]*harness.Proc{send, recv}); err != nil {
			return 0, fmt.Errorf("copy to %s: %w", n.Name(), err)
		}
	}
	return time.Since(start).Seconds(), nil
}

// copier is the naive peer: copier-recv LISTEN FILE takes one connection
// and writes it to FILE (then fsync); copier-send ADDR FILE sends FILE.
func copier(mode string, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("%s: want 2 arguments", mode)
	}
	switch mode {
	case "copier-recv":
		l, err := net.Listen("tcp", args[0])
		if err != nil {
			return err
		}
		conn, err := l.Accept()
		if err != nil {
			return err
		}
		f, err := os.OpenFile(args[1], os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, conn); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		_, err = conn.Write([]byte{1}) // done: the sender may stop its clock
		return err
	case "copier-send":
		var conn net.Conn
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if conn, err = net.Dial("tcp", args[0]); err == nil {
				break
			}
		}
		if err != nil {
			return err
		}
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(conn, f); err != nil {
			return err
		}
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		ack := make([]byte, 1)
		if _, err := io.ReadFull(conn, ack); err != nil {
			return fmt.Errorf("no completion from %s: %w", args[0], err)
		}
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}
