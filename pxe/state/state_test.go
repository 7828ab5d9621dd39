package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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
			if m.KeyID != "" && !validKeyID(m.KeyID) {
				t.Fatalf("invalid key id accepted: %q", m.KeyID)
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

func TestAgentKeyServesOneRegistration(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "m.json"))
	require.NoError(t, err)
	const mac = "52:54:00:00:03:01"
	m, err := st.Add(mac, "")
	require.NoError(t, err)
	require.True(t, validKeyID(m.KeyID), "a new machine gets an agent key: %q", m.KeyID)
	assert.Equal(t, 1, m.KeyGen)
	assert.False(t, m.KeyUsed)
	first := m.KeyID

	reg := Registration{IP: "10.0.0.5", Port: 9998, Session: "lab", Pub: "pub-1"}
	_, _, err = st.RegisterAgent(mac, "00000000000000000000000000000000", reg)
	assert.ErrorIs(t, err, ErrKeyStale, "a key that is not the machine's")
	m, repeated, err := st.RegisterAgent(mac, first, reg)
	require.NoError(t, err)
	assert.False(t, repeated)
	assert.Equal(t, Cloning, m.State)
	assert.True(t, m.KeyUsed)
	assert.Equal(t, "pub-1", m.RegPub)

	// The same registration again (its answer was lost) changes nothing.
	m2, repeated, err := st.RegisterAgent(mac, first, reg)
	require.NoError(t, err)
	assert.True(t, repeated)
	assert.Equal(t, m, m2)

	// Any other registration with the used key is refused.
	for name, r := range map[string]Registration{
		"another answer key": {IP: "10.0.0.5", Port: 9998, Session: "lab", Pub: "pub-2"},
		"another address":    {IP: "10.0.0.66", Port: 9998, Session: "lab", Pub: "pub-1"},
		"another port":       {IP: "10.0.0.5", Port: 1, Session: "lab", Pub: "pub-1"},
		"another step":       {IP: "10.0.0.5", Port: 9998, Session: "lab", Pub: "pub-1", Step: StepStage2},
	} {
		_, _, err := st.RegisterAgent(mac, first, r)
		assert.ErrorIs(t, err, ErrKeyUsed, name)
		assert.ErrorContains(t, err, "registered from 10.0.0.5", name)
	}
	got, _ := st.Get(mac)
	assert.Equal(t, m, got, "refused registrations change nothing")

	// A failed clone gives the machine a fresh key for its next boot.
	m, err = st.Report(mac, false, "disk gone", 0)
	require.NoError(t, err)
	assert.NotEqual(t, first, m.KeyID)
	assert.Equal(t, 2, m.KeyGen)
	assert.False(t, m.KeyUsed)
	_, _, err = st.RegisterAgent(mac, first, reg)
	assert.ErrorIs(t, err, ErrKeyStale, "the old key is gone")
	_, repeated, err = st.RegisterAgent(mac, m.KeyID, Registration{IP: "10.0.0.5", Port: 9998, Session: "lab", Pub: "pub-3"})
	require.NoError(t, err)
	assert.False(t, repeated)

	// Fail, Set new and Set failed issue fresh keys too; the state file
	// keeps them.
	for _, f := range []func() (Machine, error){
		func() (Machine, error) { return st.Fail(mac, "chain: node gone") },
		func() (Machine, error) { return st.Set(mac, New, "") },
		func() (Machine, error) { return st.Set(mac, Failed, "by hand") },
	} {
		before, _ := st.Get(mac)
		after, err := f()
		require.NoError(t, err)
		assert.NotEqual(t, before.KeyID, after.KeyID)
		assert.Equal(t, before.KeyGen+1, after.KeyGen)
		assert.False(t, after.KeyUsed)
	}
	again, err := Open(filepath.Join(filepath.Dir(st.path), "m.json"))
	require.NoError(t, err)
	m, _ = st.Get(mac)
	m2, _ = again.Get(mac)
	assert.Equal(t, m, m2)

	// A local machine does not register, nor does an unknown one.
	_, err = st.Set(mac, Local, "")
	require.NoError(t, err)
	m, _ = st.Get(mac)
	_, _, err = st.RegisterAgent(mac, m.KeyID, reg)
	assert.ErrorIs(t, err, ErrTransition)
	_, _, err = st.RegisterAgent("52:54:00:00:03:09", first, reg)
	assert.ErrorIs(t, err, ErrUnknown)
}

func TestDiscoveredMachines(t *testing.T) {
	st, err := Open("")
	require.NoError(t, err)
	const mac = "52:54:00:00:04:01"
	m, err := st.Discover(mac)
	require.NoError(t, err)
	assert.Equal(t, Discovered, m.State)
	assert.Empty(t, m.KeyID, "no agent key for a machine nobody approved")
	_, _, err = st.RegisterAgent(mac, "", Registration{})
	assert.ErrorIs(t, err, ErrNotApproved)
	m, err = st.EnsureKey(mac)
	require.NoError(t, err)
	assert.Empty(t, m.KeyID)

	// Approving it (herd pxe set MAC new, or --macs) issues its key.
	m, err = st.Add(mac, "")
	require.NoError(t, err)
	assert.Equal(t, New, m.State)
	assert.True(t, validKeyID(m.KeyID))
	m2, err := st.Discover(mac)
	require.NoError(t, err)
	assert.Equal(t, New, m2.State, "a known machine stays known")
	m, err = st.Set(mac, Discovered, "")
	require.NoError(t, err)
	assert.Empty(t, m.KeyID, "back to discovered withdraws the key")

	// Boot requests for made-up MACs cannot grow the file without end.
	for i := 0; len(st.List()) < MaxDiscovered; i++ {
		_, err := st.Discover(fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff))
		require.NoError(t, err)
	}
	_, err = st.Discover("02:00:00:ff:ff:ff")
	assert.ErrorIs(t, err, ErrTooMany)
	_, err = st.Add("02:00:00:ff:ff:ff", "")
	assert.NoError(t, err, "approved machines are not capped")
}

func TestEnsureKeyForOlderStateFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.json")
	b, err := os.ReadFile("testdata/machines.json")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o644))
	st, err := Open(path)
	require.NoError(t, err)
	for mac, wantKey := range map[string]bool{"52:54:00:12:34:01": false, "52:54:00:12:34:02": true, "52:54:00:12:34:03": true} {
		m, err := st.EnsureKey(mac)
		require.NoError(t, err)
		assert.Equal(t, wantKey, m.KeyID != "", "%s %s", mac, m.State)
	}
}

func TestAlarmKeepsAMachineFromGoingLocal(t *testing.T) {
	st, err := Open("")
	require.NoError(t, err)
	const mac = "52:54:00:00:05:01"
	m, err := st.Add(mac, "")
	require.NoError(t, err)
	_, _, err = st.RegisterAgent(mac, m.KeyID, Registration{IP: "10.0.0.1", Port: 9998, Pub: "p"})
	require.NoError(t, err)
	m, err = st.RaiseAlarm(mac, "second registration from 10.0.0.66 refused")
	require.NoError(t, err)
	assert.Equal(t, Cloning, m.State, "an alarm does not change the state")
	_, err = st.Report(mac, true, "", 1)
	require.NoError(t, err)
	_, err = st.MarkLocal(mac)
	assert.ErrorIs(t, err, ErrTransition)
	assert.ErrorContains(t, err, "alarm")
	m, err = st.Set(mac, Local, "")
	require.NoError(t, err, "the operator decides")
	assert.Empty(t, m.Alarm)
}

func TestReRegisterFromStage2(t *testing.T) {
	st, err := Open("")
	require.NoError(t, err)
	const mac = "52:54:00:00:06:01"
	m, err := st.Add(mac, "")
	require.NoError(t, err)
	key := m.KeyID
	reg := Registration{IP: "10.0.0.1", Port: 9998, Session: "s"}
	_, _, err = st.ReRegister(mac, key, reg)
	assert.ErrorIs(t, err, ErrKeyStale, "no registration used the key yet")
	_, _, err = st.RegisterAgent(mac, key, Registration{IP: "10.0.0.1", Port: 9998, Session: "s", Step: StepStage2, Pub: "p"})
	require.NoError(t, err)
	_, _, err = st.ReRegister(mac, key, reg)
	assert.ErrorIs(t, err, ErrTransition, "the stage 2 has not arrived")
	_, err = st.ReportStage2(mac, true, "", 10)
	require.NoError(t, err)
	_, _, err = st.ReRegister(mac, key, Registration{IP: "10.0.0.1", Port: 9998, Session: "s", Step: StepStage2})
	assert.ErrorIs(t, err, ErrTransition)
	m, repeated, err := st.ReRegister(mac, key, reg)
	require.NoError(t, err)
	assert.False(t, repeated)
	assert.Equal(t, Cloning, m.State)
	assert.Equal(t, "", m.Step)
	_, repeated, err = st.ReRegister(mac, key, reg)
	require.NoError(t, err)
	assert.True(t, repeated)
	_, _, err = st.ReRegister(mac, key, Registration{IP: "10.0.0.66", Port: 9998, Session: "s"})
	assert.ErrorIs(t, err, ErrTransition, "once only")
}

func TestLoadKeyFields(t *testing.T) {
	_, err := Load([]byte(`{"version":1,"machines":[{"mac":"52:54:00:00:00:01","state":"new","key_id":"xyz"}]}`))
	assert.ErrorIs(t, err, ErrBadFile)
	_, err = Load([]byte(`{"version":1,"machines":[{"mac":"52:54:00:00:00:01","state":"new","key_gen":-1}]}`))
	assert.ErrorIs(t, err, ErrBadFile)
	ms, err := Load([]byte(`{"version":1,"machines":[{"mac":"52:54:00:00:00:01","state":"cloning","key_id":"00112233445566778899aabbccddeeff","key_gen":2,"key_used":true,"alarm":"x"}]}`))
	require.NoError(t, err)
	assert.Equal(t, "x", ms[0].Alarm)
	ms, err = Load([]byte(`{"version":1,"machines":[{"mac":"52:54:00:00:00:01","state":"discovered"}]}`))
	require.NoError(t, err)
	assert.Equal(t, Discovered, ms[0].State)
}

// A machine's log is bounded and cleaned when kept, and forgotten when
// it registers again.
func TestSetLog(t *testing.T) {
	st, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:00:0b:01"
	if _, err := st.SetLog(mac, []string{"x"}); !errors.Is(err, ErrUnknown) {
		t.Fatalf("unknown machine: %v", err)
	}
	st.Add(mac, "")
	m, err := st.SetLog(mac, []string{"ok\tline", "bad\x00\x07line\xff", strings.Repeat("é", 200)})
	if err != nil {
		t.Fatal(err)
	}
	if m.Log[0] != "ok\tline" || m.Log[1] != "bad??line?" || len(m.Log[2]) > MaxLogLine || !utf8.ValidString(m.Log[2]) {
		t.Fatalf("log = %q", m.Log)
	}
	if m, _ = st.Register(mac, "10.0.0.1", 9998, "s"); m.Log != nil {
		t.Fatalf("log kept after a new registration: %q", m.Log)
	}
}

func TestSetAgentLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.json")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:00:0b:02"
	if _, err := st.SetAgentLog(mac, []string{"x"}, ""); !errors.Is(err, ErrUnknown) {
		t.Fatalf("unknown machine: %v", err)
	}
	st.Add(mac, "node02")
	lines := make([]string, MaxAgentLogLines+5)
	for i := range lines {
		lines[i] = fmt.Sprintf("herd: %d", i)
	}
	lines[len(lines)-1] = "bad\x1b[0m\xff" + strings.Repeat("é", 300)
	if _, err := st.SetAgentLog(mac, lines, "identity: hostname node02\n"+strings.Repeat("x", 2*MaxFixups)); err != nil {
		t.Fatal(err)
	}
	again, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := again.Get(mac)
	if len(m.AgentLog) != MaxAgentLogLines || m.AgentLog[0] != "herd: 5" || !strings.HasPrefix(m.AgentLog[MaxAgentLogLines-1], "bad?[0m?é") ||
		len(m.AgentLog[MaxAgentLogLines-1]) > MaxLogLine || !utf8.ValidString(m.AgentLog[MaxAgentLogLines-1]) {
		t.Fatalf("agent log kept in the file = %q", m.AgentLog)
	}
	if !strings.HasPrefix(m.Fixups, "identity: hostname node02?x") || len(m.Fixups) != MaxFixups {
		t.Fatalf("fixups = %q", m.Fixups)
	}
	if m, _ = st.Register(mac, "10.0.0.2", 9998, "s"); m.AgentLog != nil || m.Fixups != "" {
		t.Fatalf("agent log kept after a new registration: %q %q", m.AgentLog, m.Fixups)
	}
}
