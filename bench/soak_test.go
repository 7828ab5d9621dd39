package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/core"
)

func TestDrawPlanIsSeededAndCoversEveryKind(t *testing.T) {
	assert.Equal(t, drawPlan(42, 8), drawPlan(42, 8), "a seed replays its round")
	kinds, pols := map[string]int{}, map[string]int{}
	slow := 0
	for s := uint64(1); s <= 500; s++ {
		p := drawPlan(s, 8)
		kinds[p.Fault]++
		pols[p.Policy]++
		if p.Fault == faultNone {
			assert.Equal(t, -1, p.Victim)
		} else {
			require.True(t, p.Victim >= 0 && p.Victim < 8, "victim %d", p.Victim)
			assert.NotEqual(t, p.Victim, p.Slow, "seed %d: the slow node is not the victim", s)
		}
		if p.Slow >= 0 {
			slow++
			require.Less(t, p.Slow, 8)
		}
		assert.True(t, p.At >= 0.1 && p.At <= 0.8)
	}
	for _, k := range faultKinds {
		assert.Greater(t, kinds[k], 50, k)
	}
	for _, k := range policies {
		assert.Greater(t, pols[k], 100, k)
	}
	assert.Greater(t, slow, 150)
}

func TestParseSoakFlags(t *testing.T) {
	o, err := parseSoakFlags([]string{"-rounds", "3", "-seed", "7", "-size", "64M", "-slow-disk", "8MB/s"})
	require.NoError(t, err)
	assert.Equal(t, 3, o.rounds)
	assert.Equal(t, uint64(7), o.seed)
	assert.Equal(t, int64(64<<20), o.size)
	assert.Equal(t, uint64(8e6), o.slowRate)
	_, err = parseSoakFlags([]string{"-rounds", "0"})
	assert.Error(t, err)
}

func TestLastEventAndAgreement(t *testing.T) {
	out := []byte(`{"event":"progress","total":10,"nodes":[{"index":0,"state":"receiving","bytes":5}]}
herd: noise
{"event":"summary","ok":true,"items":[{"name":"a","digest":"d1","verified":true}],"nodes":[{"index":0,"state":"done","bytes":10,"items":[{"name":"a","digest":"d1","verified":true}]}]}
`)
	ev, ok := lastEvent(out, "progress")
	require.True(t, ok)
	assert.Equal(t, int64(5), ev.Nodes[0].Bytes)
	sum, ok := lastEvent(out, "summary")
	require.True(t, ok)
	snd := nodeStatus(sum.Nodes[0])
	assert.Equal(t, core.StateDone, snd.State)
	assert.Equal(t, "done", word(snd))
	own := snd
	assert.Equal(t, "agree", agreement(snd, &own))
	assert.Equal(t, "-", agreement(snd, nil))
	failed := core.NodeStatus{State: core.StateFailed, Err: "unreachable: connect"}
	assert.Equal(t, "DISAGREE", agreement(failed, &own))
	assert.Equal(t, "failed (unreachable: connect)", word(failed))
	other := own
	other.Items = []core.ItemStatus{{Digest: "d2", Verified: true}}
	assert.Equal(t, "DISAGREE", agreement(snd, &other))
	_, ok = lastEvent([]byte("nothing\n"), "summary")
	assert.False(t, ok)
}
