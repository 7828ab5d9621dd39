package sim

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/verdict"
)

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.scen")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			fh, err := os.Open(f)
			require.NoError(t, err)
			defer fh.Close()
			sc, err := ParseScenario(fh)
			require.NoError(t, err)
			require.NotEmpty(t, sc.Expect, "a scenario without expectations proves nothing")
			res, err := Run(sc.Config)
			// Every story keeps the invariants, whatever it expects.
			if vs := verdict.Check(Outcome(sc.Config, res, err)); len(vs) > 0 {
				t.Errorf("invariants broken:\n%s", verdict.Report(vs))
			}
			require.NoError(t, err)
			for _, msg := range sc.Check(res) {
				t.Error(msg)
			}
		})
	}
}

func TestScenarioCheckFails(t *testing.T) {
	// The checker really fails: a healthy chain does not meet "ko".
	sc, err := ParseScenario(strings.NewReader("chain 2\nsend 1KiB\nexpect ok 1 ko 2\nexpect time > 1h\n"))
	require.NoError(t, err)
	res, err := Run(sc.Config)
	require.NoError(t, err)
	msgs := sc.Check(res)
	require.Len(t, msgs, 2)
	assert.Contains(t, msgs[0], "node 2 is done, want ko")
}

func TestParseScenarioErrors(t *testing.T) {
	for _, tc := range []struct{ in, msg string }{
		{"chain x\n", "line 1: bad chain length"},
		{"chain 3\nfly 2\n", `line 2: unknown command "fly"`},
		{"chain 3\ncrash 9 at 10%\n", "line 2: node 9 outside a chain of 3"},
		{"chain 3\nlink 100MB 1ms\n", "line 2: bad rate"},
		{"send 1MiB\n", "no chain line"},
		{"chain 3\nexpect ok 2-1\n", "line 2: bad node range"},
		{"chain 3\nexpect err 2 nope\n", "line 2: want expect err"},
		{"chain 3\nslownic 2\n", "line 2: want slownic N RATE [OUTRATE]"},
		{"chain 3\nslownic 2 10MB/s fast\n", "line 2: bad rate"},
		{"chain 3\nslownic 0 10MB/s\n", "line 2: bad node number"},
		{"chain 3\npause 2 at 1s\n", "line 2: pause takes 5 arguments"},
		{"chain 3\npause 2 at 1s during 2s\n", "line 2: want pause N at TIME|PCT% for DURATION"},
		{"chain 3\nstall source at 1s for 2s\n", `line 2: bad node number "source"`},
		{"chain 3\npause 9 at 1s for 2s\n", "line 2: node 9 outside a chain of 3"},
		{"chain 3\npause 2 at 1s for 0s\n", `line 2: bad duration "0s"`},
		{"chain 3\njitter -1ms\n", `line 2: bad jitter "-1ms"`},
		{"chain 3\ndead 0s\n", `line 2: bad dead "0s"`},
		{"chain 3\nseed x\n", `line 2: bad seed "x"`},
		{"chain 3\nexpect invariants now\n", "line 2: want expect invariants"},
	} {
		_, err := ParseScenario(strings.NewReader(tc.in))
		require.Error(t, err, tc.in)
		assert.Contains(t, err.Error(), tc.msg)
		var pe *ParseError
		assert.True(t, errors.As(err, &pe))
		assert.ErrorIs(t, err, ErrScenario)
	}
}

func FuzzParseScenario(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.scen")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err == nil {
			f.Add(string(b))
		}
	}
	f.Add("chain 1\nexpect ok 1-1,1\n")
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseScenario(strings.NewReader(s))
		if err != nil {
			return
		}
		if sc.Config.Nodes < 1 {
			t.Fatal("accepted a scenario without nodes")
		}
	})
}

// A slow card caps the links into and out of its node, whoever is at the
// other end: 'slownic 2 1MB/s' makes a 2-node chain's stream take S/1MB/s
// (node 2 receives through it), and 'slownic 1 100MB/s 1MB/s' as long
// (node 1 sends through it); a card faster than the links changes nothing.
func TestSlowNIC(t *testing.T) {
	run := func(nic string) *Result {
		sc, err := ParseScenario(strings.NewReader("chain 2\nlink 100MB/s 10us\nchunk 64KiB\nsend 1MB\n" + nic + "\nexpect ok 1-2\n"))
		require.NoError(t, err)
		res, err := Run(sc.Config)
		require.NoError(t, err)
		require.Empty(t, sc.Check(res))
		return res
	}
	fast := run("")
	assert.Less(t, fast.Elapsed, 50*time.Millisecond)
	in := run("slownic 2 1MB/s")
	assert.Greater(t, in.Elapsed, time.Second)
	out := run("slownic 1 100MB/s 1MB/s")
	assert.Greater(t, out.Elapsed, time.Second)
	assert.Greater(t, out.DoneAt[1], time.Second, "node 2 waits for what node 1 sends")
	assert.Less(t, out.DoneAt[0], out.DoneAt[1]/4, "node 1 receives at full speed")
	same := run("slownic 1 200MB/s")
	assert.Equal(t, fast.Elapsed, same.Elapsed)
}
