package harness_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/herd-cluster/herd/harness"
)

// The test binary doubles as the helper programs the tests run inside
// nodes: `env HARNESS_HELPER=<role> <test binary> args…`.
const helperEnv = "HARNESS_HELPER"

func helperMain() {
	role := os.Getenv(helperEnv)
	args := os.Args[1:]
	var err error
	switch role {
	case "sink":
		err = helperSink(args[0])
	case "source":
		n, _ := strconv.ParseInt(args[1], 10, 64)
		err = helperSource(args[0], n)
	case "udprecv":
		err = helperUDPRecv(args[0])
	case "udpsend":
		n, _ := strconv.Atoi(args[1])
		err = helperUDPSend(args[0], n)
	case "crash", "interrupt":
		err = helperOwner(role == "interrupt")
	default:
		err = fmt.Errorf("unknown helper %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helperSink accepts one TCP connection and prints how many bytes came.
func helperSink(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	c, err := l.Accept()
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, c)
	fmt.Println(n)
	return err
}

// helperSource connects (retrying for 5 s), sends n bytes and prints the
// seconds the sending took.
func helperSource(addr string, n int64) error {
	var c net.Conn
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	start := time.Now()
	for left := n; left > 0; {
		k := min(int64(len(buf)), left)
		if _, err := c.Write(buf[:k]); err != nil {
			return err
		}
		left -= k
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, c) // wait for the sink to close
	fmt.Printf("%.6f\n", time.Since(start).Seconds())
	return nil
}

// helperUDPRecv counts datagrams until none came for 700 ms after the
// first, and prints the count. It prints "ready" on stderr once bound.
func helperUDPRecv(addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "ready")
	buf := make([]byte, 2048)
	count := 0
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			break
		}
		count++
		_ = pc.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
	}
	fmt.Println(count)
	return nil
}

// helperUDPSend sends n small datagrams, paced so no buffer overflows.
func helperUDPSend(addr string, n int) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	msg := make([]byte, 100)
	for i := 0; i < n; i++ {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		if i%5 == 4 {
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// helperOwner builds a cluster with a process in node1, prints the
// cluster name and the process id, then waits to be killed.
func helperOwner(handle bool) error {
	if handle {
		harness.HandleInterrupts()
	}
	c, err := harness.New(context.Background(), harness.Config{Nodes: 2, DiskSize: 8 << 20})
	if err != nil {
		return err
	}
	p, err := c.Nodes()[0].Start(context.Background(), "sleep", "1000")
	if err != nil {
		return err
	}
	// Start returns once nsenter runs; it enters the node's namespaces
	// just before it execs sleep. Report the pid only then: a sweep that
	// scans before a process has entered can not see it as the node's.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.Pid())); string(b) == "sleep\n" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d never became sleep", p.Pid())
		}
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "%s %d\n", c.Name(), p.Pid())
	w.Flush()
	select {}
}
