package state

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fixedClock() func() time.Time {
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Second); return t }
}

func TestLifecycleAndRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "machines.json")
	st, err := Open(path)
	require.NoError(t, err)
	st.SetClock(fixedClock())

	_, err = st.Add("52-54-00-AA-BB-01", "node1")
	require.NoError(t, err)
	m, err := st.Register("52:54:00:aa:bb:01", "10.0.0.101", 9998, "lab")
	require.NoError(t, err)
	assert.Equal(t, Cloning, m.State)
	assert.Equal(t, "node1", m.Name)

	_, err = st.MarkLocal("52:54:00:aa:bb:01")
	require.ErrorIs(t, err, ErrTransition, "cloning must not go local")

	m, err = st.Report("52:54:00:aa:bb:01", true, "", 4096)
	require.NoError(t, err)
	assert.Equal(t, Done, m.State)
	assert.EqualValues(t, 4096, m.Bytes)
	m, err = st.MarkLocal("52:54:00:aa:bb:01")
	require.NoError(t, err)
	assert.Equal(t, Local, m.State)

	_, err = st.Register("52:54:00:aa:bb:02", "10.0.0.102", 9998, "lab")
	require.NoError(t, err)
	m, err = st.Report("52:54:00:aa:bb:02", false, "digest mismatch", 10)
	require.NoError(t, err)
	assert.Equal(t, Failed, m.State)
	assert.Equal(t, "digest mismatch", m.Reason)

	_, err = st.Report("52:54:00:aa:bb:03", true, "", 0)
	require.ErrorIs(t, err, ErrUnknown)
	_, err = st.Register("zz", "", 0, "")
	require.ErrorIs(t, err, ErrBadMAC)

	// A new store on the same file sees everything.
	again, err := Open(path)
	require.NoError(t, err)
	assert.Equal(t, st.List(), again.List())
	got, ok := again.Get("52:54:00:AA:BB:02")
	require.True(t, ok)
	assert.Equal(t, Failed, got.State)
	assert.Equal(t, "digest mismatch", got.Reason)

	// No temporary file is left beside the state file.
	ents, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	assert.Len(t, ents, 1)
}

func TestChangedFires(t *testing.T) {
	st, err := Open("")
	require.NoError(t, err)
	ch := st.Changed()
	select {
	case <-ch:
		t.Fatal("fired before any change")
	default:
	}
	_, err = st.Add("52:54:00:00:00:01", "")
	require.NoError(t, err)
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("Changed did not fire")
	}
}

func TestSaveFailureKeepsMemoryConsistent(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(filepath.Join(dir, "sub", "machines.json")) // folder missing: save fails
	require.NoError(t, err)
	_, err = st.Add("52:54:00:00:00:01", "")
	require.Error(t, err)
	assert.Empty(t, st.List())
}

func TestLoadErrors(t *testing.T) {
	for name, in := range map[string]string{
		"not json":  `{`,
		"version":   `{"version":2,"machines":[]}`,
		"bad mac":   `{"version":1,"machines":[{"mac":"nope","state":"new"}]}`,
		"bad phase": `{"version":1,"machines":[{"mac":"52:54:00:00:00:01","state":"zombie"}]}`,
		"duplicate": `{"version":1,"machines":[{"mac":"52:54:00:00:00:01","state":"new"},{"mac":"52-54-00-00-00-01","state":"done"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Load([]byte(in))
			require.ErrorIs(t, err, ErrBadFile)
		})
	}
}

func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.json")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"machines":[{"mac":"52:54:00:00:00:01","state":"failed","reason":"x"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := Load(b)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, m := range ms {
			if !m.State.Valid() {
				t.Fatalf("invalid phase accepted: %q", m.State)
			}
			n, err := NormalizeMAC(m.MAC)
			if err != nil || n != m.MAC || seen[n] {
				t.Fatalf("bad or duplicate MAC accepted: %q", m.MAC)
			}
			seen[n] = true
		}
	})
}

func TestStage2Steps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.json")
	st, err := Open(path)
	require.NoError(t, err)
	const a, b = "52:54:00:00:02:01", "52:54:00:00:02:02"
	_, err = st.RegisterStep(a, "10.0.0.1", 9998, "s", "warp")
	assert.Error(t, err, "unknown step")
	for _, mac := range []string{a, b} {
		m, err := st.RegisterStep(mac, "10.0.0.1", 9998, "s", StepStage2)
		require.NoError(t, err)
		assert.Equal(t, StepStage2, m.Step)
	}
	_, err = st.Report(a, true, "", 10)
	assert.ErrorIs(t, err, ErrTransition, "no image report before the agent registered from its stage 2")

	m, err := st.ReportStage2(a, true, "", 3<<20)
	require.NoError(t, err)
	assert.Equal(t, Cloning, m.State)
	assert.Equal(t, StepStage2Received, m.Step)
	_, err = st.ReportStage2(a, true, "", 1)
	assert.ErrorIs(t, err, ErrTransition, "one stage-2 report per registration")
	m, err = st.ReportStage2(b, false, "digest mismatch", 0)
	require.NoError(t, err)
	assert.Equal(t, Failed, m.State)
	assert.Equal(t, "stage 2: digest mismatch", m.Reason)

	// The stage 2's agent registers for the image, then reports it.
	m, err = st.Register(a, "10.0.0.1", 9998, "s")
	require.NoError(t, err)
	assert.Equal(t, "", m.Step)
	m, err = st.Report(a, true, "", 64<<20)
	require.NoError(t, err)
	assert.Equal(t, Done, m.State)

	// Steps survive a restart; a bad step in the file is refused.
	_, err = st.RegisterStep(b, "10.0.0.2", 9998, "s", StepStage2)
	require.NoError(t, err)
	st2, err := Open(path)
	require.NoError(t, err)
	m, _ = st2.Get(b)
	assert.Equal(t, StepStage2, m.Step)
	_, err = Load([]byte(`{"version":1,"machines":[{"mac":"52:54:00:00:02:01","state":"cloning","step":"warp","updated":"2026-01-01T00:00:00Z"}]}`))
	assert.ErrorIs(t, err, ErrBadFile)
}

func TestLoadStage2Steps(t *testing.T) {
	b, err := os.ReadFile("testdata/stage2.json")
	require.NoError(t, err)
	ms, err := Load(b)
	require.NoError(t, err)
	require.Len(t, ms, 3)
	assert.Equal(t, []string{StepStage2, StepStage2Received, ""}, []string{ms[0].Step, ms[1].Step, ms[2].Step})
}
