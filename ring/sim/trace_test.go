package sim

import (
	"flag"
	"os"
	"testing"

	"github.com/herd-cluster/herd/ring/verdict"
)

var (
	traceFile = flag.String("sim.trace", "", "scenario file TestTrace runs, printing what every host did")
	traceAcks = flag.Bool("sim.acks", false, "TestTrace prints acks too")
)

// TestTrace runs one scenario (-sim.trace=FILE, e.g. a failing seed that
// TestRandomTimingFaults wrote) and prints every event and action of every
// host but chunks, then each node's verdict beside the sender's and the
// broken invariants: what to read when a schedule breaks one.
//
//	go test ./ring/sim -run TestTrace -sim.trace=testdata/found/timing-SEED.scen -v
//
// -sim.acks prints acks too.
func TestTrace(t *testing.T) {
	if *traceFile == "" {
		t.Skip("no -sim.trace=FILE given")
	}
	f, err := os.Open(*traceFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc, err := ParseScenario(f)
	if err != nil {
		t.Fatal(err)
	}
	sc.Config.Trace, sc.Config.TraceAcks = os.Stdout, *traceAcks
	res, err := Run(sc.Config)
	t.Logf("run: err=%v, elapsed %v", err, res.Elapsed)
	for i, n := range res.Nodes {
		own := "no word"
		if o := res.Own[i]; o != nil {
			own = string(o.State) + " " + o.Err
		}
		t.Logf("node%d: sender says %s %s; its own word: %s; done at %v", i+1, n.State, n.Err, own, res.DoneAt[i])
	}
	if vs := verdict.Check(Outcome(sc.Config, res, err)); len(vs) > 0 {
		t.Errorf("invariants broken:\n%s", verdict.Report(vs))
	}
}
