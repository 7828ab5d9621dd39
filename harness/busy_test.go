package harness_test

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/harness"
	"github.com/herd-cluster/herd/harness/harnesstest"
)

// cpuTicks returns utime+stime of pid in clock ticks, or -1 if it is gone
// (or a zombie).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if f[0] == "Z" {
		return -1
	}
	// After the comm field: state(0) … utime(11) stime(12).
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

func TestBusyLoopsRunAndStop(t *testing.T) {
	stop, err := harness.Busy(2)
	require.NoError(t, err)
	defer stop()
	pids := harness.BusyPids()
	require.Len(t, pids, 2)
	t0 := map[int]int64{}
	for _, p := range pids {
		t0[p] = cpuTicks(p)
		require.GreaterOrEqual(t, t0[p], int64(0), "busy loop %d runs", p)
	}
	time.Sleep(700 * time.Millisecond)
	for _, p := range pids {
		// Even on a loaded 2-core machine a loop gets well over 5 % of a
		// core in 0.7 s (the clock ticks 100 times a second).
		require.Greater(t, cpuTicks(p)-t0[p], int64(3), "busy loop %d burns CPU", p)
	}
	stop()
	stop() // harmless
	for _, p := range pids {
		require.Equal(t, int64(-1), cpuTicks(p), "busy loop %d gone after stop", p)
	}
	require.Empty(t, harness.BusyPids())
}

func TestBusyStopsInCleanup(t *testing.T) {
	var pids []int
	t.Run("inner", func(t *testing.T) {
		harnesstest.Busy(t, 1)
		pids = harness.BusyPids()
		require.Len(t, pids, 1)
	})
	for _, p := range pids {
		require.Equal(t, int64(-1), cpuTicks(p), "busy loop %d gone after the test", p)
	}
}

func TestStopBusy(t *testing.T) {
	_, err := harness.Busy(2)
	require.NoError(t, err)
	pids := harness.BusyPids()
	require.Len(t, pids, 2)
	harness.StopBusy()
	for _, p := range pids {
		require.Equal(t, int64(-1), cpuTicks(p), "busy loop %d gone after StopBusy", p)
	}
}

// The runtime ends a thread a goroutine left locked (namespace code does
// so on purpose); a loop forked from such a thread would get its
// Pdeathsig then. Busy forks from a thread that never ends.
func TestBusyOutlivesEndedThreads(t *testing.T) {
	harnesstest.Busy(t, 1)
	pids := harness.BusyPids()
	require.Len(t, pids, 1)
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		}()
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	require.GreaterOrEqual(t, cpuTicks(pids[0]), int64(0), "busy loop %d still runs", pids[0])
}
