package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc (100 on every
// Linux this runs on).
const clockTicks = 100

// parseProcStat returns utime+stime in seconds from the text of
// /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseProcStat(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: /proc stat: no ')' in %q", truncate(b, 60))
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')': state(3) ppid(4) ... utime(14) stime(15): indexes 11, 12.
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: /proc stat: %d fields after the name, want at least 13", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: /proc stat: utime %q stime %q are not numbers", f[11], f[12])
	}
	return float64(u+s) / clockTicks, nil
}

// parseMachineStat returns busy and total core-seconds from the first
// ("cpu ") line of /proc/stat: busy is everything but idle and iowait.
func parseMachineStat(b []byte) (busy, total float64, err error) {
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("bench: /proc/stat: first line %q is not the cpu total", truncate(line, 60))
	}
	var sum, idle uint64
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bench: /proc/stat: field %d %q is not a number", i+1, s)
		}
		if i >= 8 { // guest and guest_nice are already counted in user/nice
			break
		}
		sum += v
		if i == 3 || i == 4 {
			idle += v
		}
	}
	return float64(sum-idle) / clockTicks, float64(sum) / clockTicks, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// machineBusy reads the busy core-seconds of the whole machine so far.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	busy, _, err := parseMachineStat(b)
	if err != nil {
		return 0
	}
	return busy
}

// childrenCPU returns the user+system seconds of every child this process
// has waited for (nsenter execs the command, so a node's process is our
// child).
func childrenCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// parseProcIO returns rchar (bytes read by read-like syscalls, sockets
// included) from the text of /proc/<pid>/io.
func parseProcIO(b []byte) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && k == "rchar" {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("bench: /proc io: rchar %q is not a count", strings.TrimSpace(v))
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("bench: /proc io: no rchar line")
}

// procSample is what a sampler saw of one process: its last CPU seconds,
// and when (since the sampler started) it had first read more than the
// start threshold and at least the end threshold.
type procSample struct {
	CPU         float64
	First, Last time.Duration // 0: not seen
	firstSeen   bool
	lastSeen    bool
}

// sampler reads /proc/<pid>/stat and /proc/<pid>/io of a set of processes
// every period while they run (a process's counts vanish with it).
type sampler struct {
	mu   sync.Mutex
	s    map[int]*procSample
	stop chan struct{}
	done chan struct{}
}

// sampleProcs starts sampling pids; times are measured from start. from
// and to are the rchar thresholds of a process's data phase (to 0: not
// watched).
func sampleProcs(pids []int, start time.Time, period time.Duration, from, to int64) *sampler {
	s := &sampler{s: map[int]*procSample{}, stop: make(chan struct{}), done: make(chan struct{})}
	for _, pid := range pids {
		s.s[pid] = &procSample{}
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			for _, pid := range pids {
				st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				if err != nil {
					continue
				}
				cpu, err := parseProcStat(st)
				if err != nil {
					continue
				}
				var rchar int64 = -1
				if to > 0 {
					if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
						rchar, _ = parseProcIO(b)
					}
				}
				now := time.Since(start)
				s.mu.Lock()
				p := s.s[pid]
				p.CPU = cpu
				if rchar > from && !p.firstSeen {
					p.First, p.firstSeen = now, true
				}
				if rchar >= to && to > 0 && !p.lastSeen {
					p.Last, p.lastSeen = now, true
				}
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns what it saw per pid.
func (s *sampler) Stop() map[int]procSample {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]procSample{}
	for pid, p := range s.s {
		out[pid] = *p
	}
	return out
}

// parseSockets reports whether the text of /proc/<pid>/net/{tcp,tcp6,udp,
// udp6} holds a socket bound to local port in the given state ("0A" is a
// TCP listener, "07" an unconnected UDP socket). Lines that do not parse
// are skipped.
func parseSockets(b []byte, port int, state string) bool {
	want := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// sl local_address rem_address st ...
		if len(f) < 4 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		if strings.HasSuffix(f[1], want) && strings.EqualFold(f[3], state) {
			return true
		}
	}
	return false
}

// waitBound waits until every pid has a socket on one of ports in state
// (see parseSockets), as seen in its own network namespace, or timeout
// passes.
func waitBound(pids []int, proto string, ports []int, state string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for {
			found := false
			for _, f := range []string{proto, proto + "6"} {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
				for _, port := range ports {
					if err == nil && parseSockets(b, port, state) {
						found = true
					}
				}
			}
			if found {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("bench: pid %d has no %s socket on port %v after %v", pid, proto, ports, timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}
