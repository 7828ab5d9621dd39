package agent

import (
	"context"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
)

// stage2Agent is an agent with herd.stage2=1 whose "herd recv" unpacks
// a tiny tree (an executable /init, unless withInit is false) into the
// --root it is given, then prints summary.
func stage2Agent(t *testing.T, h *harness, server, summary string, withInit bool) (*Agent, *[]string) {
	a := h.agentFor(t, server, "", 0)
	a.Config.Stage2 = true
	a.Stage2Root = t.TempDir()
	a.Stage2Credentials = Stage2CredentialsFile
	a.InStage2 = func() bool { return false }
	a.MountStage2 = func(dir string) error { return os.MkdirAll(dir, 0o755) }
	var switched []string
	a.SwitchRoot = func(dir, init string) error { switched = append(switched, dir, init); return nil }
	unpack := `mkdir -p "$2/etc"; echo hi > "$2/etc/motd"`
	if withInit {
		unpack += `; printf '#!/bin/sh\n' > "$2/init"; chmod 755 "$2/init"`
	}
	a.RecvCommand = func(ctx context.Context, args []string) *exec.Cmd {
		h.recv = args
		if k := indexOf(args, "--key-file"); k >= 0 {
			b, _ := os.ReadFile(args[k+1])
			h.keyFile = string(b)
		}
		i := indexOf(args, "--root")
		require.GreaterOrEqual(t, i, 0, "herd recv is confined to the stage 2 folder: %v", args)
		return exec.CommandContext(ctx, "sh", "-c", unpack+`; echo "$1"`, "sh", summary, args[i+1]+Stage2Out)
	}
	return a, &switched
}

func TestAgentReceivesAStage2AndSwitchesToIt(t *testing.T) {
	fs := &fakeServer{}
	srv := newTestServer(t, fs)
	h := &harness{}
	a, switched := stage2Agent(t, h, srv, `{"event":"summary","ok":true,"bytes":2048,"nodes":[]}`, true)
	require.NoError(t, a.Run(context.Background()))

	assert.Equal(t, 0, h.reboots, "the stage 2 runs now, no reboot")
	assert.Equal(t, []string{filepath.Join(a.Stage2Root, Stage2Out), "/init"}, *switched)
	assert.Equal(t, []string{"recv", "--listen", ":9998", "--json", "--key-file", filepath.Join(a.TempDir, ChainKeyFile), "--root", a.Stage2Root, "--unpack-special"}, h.recv,
		"herd recv writes under the stage 2's folder only, with the chain key of the answer")
	assert.Equal(t, string(testChainKey), h.keyFile)
	require.Len(t, fs.registers, 1)
	assert.Equal(t, state.StepStage2, fs.registers[0].Step)
	require.Len(t, fs.reports, 1)
	assert.Contains(t, fs.reports[0].AgentLog, "herd: the stage 2 has no /bin/herd, gave it this agent's", "the stage 2's report carries the agent's log")
	fs.reports[0].AgentLog = nil
	assert.Equal(t, httpboot.ReportRequest{MAC: "52:54:00:00:00:01", OK: true, Bytes: 2048, Step: state.StepStage2}, fs.reports[0])

	// The tree got this agent's herd and the marker its agent looks for.
	self, err := os.Executable()
	require.NoError(t, err)
	want, err := os.ReadFile(self)
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(filepath.Join(a.Stage2Root, Stage2Out), "bin/herd"))
	require.NoError(t, err)
	assert.True(t, string(want) == string(got), "bin/herd is a copy of this binary")
	_, err = os.Stat(filepath.Join(filepath.Join(a.Stage2Root, Stage2Out), Stage2Marker))
	assert.NoError(t, err)
	// And the machine key for its agent, readable by root only.
	p := filepath.Join(a.Stage2Root, Stage2Out, Stage2CredentialsFile)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	mac, key, err := ParseCredentials(b)
	require.NoError(t, err)
	assert.Equal(t, "52:54:00:00:00:01", mac)
	assert.Equal(t, testMachineKey, key)
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.NotContains(t, string(b), hex.EncodeToString(testChainKey), "the chain key stays out of the stage 2")
	assert.Contains(t, h.console.String(), "herd: stage 2 received (2048 bytes), switching to it: /init")
}

func TestAgentStage2WithoutInitRunsHerd(t *testing.T) {
	fs := &fakeServer{}
	srv := newTestServer(t, fs)
	h := &harness{}
	a, switched := stage2Agent(t, h, srv, `{"event":"summary","ok":true,"bytes":10,"nodes":[]}`, false)
	require.NoError(t, os.MkdirAll(filepath.Join(filepath.Join(a.Stage2Root, Stage2Out), "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Join(a.Stage2Root, Stage2Out), "bin/herd"), []byte("its own herd"), 0o755))
	require.NoError(t, a.Run(context.Background()))
	assert.Equal(t, []string{filepath.Join(a.Stage2Root, Stage2Out), "/bin/herd"}, *switched)
	b, err := os.ReadFile(filepath.Join(filepath.Join(a.Stage2Root, Stage2Out), "bin/herd"))
	require.NoError(t, err)
	assert.Equal(t, "its own herd", string(b), "a stage 2's own herd is kept")
	assert.Equal(t, []string{"/bin/herd", "agent"}, initArgs("/bin/herd"))
	assert.Equal(t, []string{"/init"}, initArgs("/init"))
}

func TestAgentStage2FailureIsReportedAndReboots(t *testing.T) {
	fs := &fakeServer{}
	srv := newTestServer(t, fs)
	h := &harness{}
	a, switched := stage2Agent(t, h, srv, `{"event":"summary","ok":false,"bytes":0,"nodes":[{"error":"bad entry ../x"}]}`, true)
	err := a.Run(context.Background())
	assert.ErrorIs(t, err, ErrCloneFailed)
	assert.Equal(t, 1, h.reboots)
	assert.Empty(t, *switched)
	require.Len(t, fs.reports, 1)
	assert.False(t, fs.reports[0].OK)
	assert.Equal(t, state.StepStage2, fs.reports[0].Step)
	assert.Contains(t, fs.reports[0].Error, "bad entry ../x")
}

func TestAgentInsideStage2ClonesTheDisk(t *testing.T) {
	fs := &fakeServer{}
	srv := newTestServer(t, fs)
	h := &harness{}
	a := h.agentFor(t, srv, `{"event":"summary","ok":true,"bytes":4096,"nodes":[]}`, 0)
	a.Config.Stage2 = true
	a.Config.AgentKey = nil // spent by the first agent anyway
	a.InStage2 = func() bool { return true }
	a.Stage2Credentials = filepath.Join(t.TempDir(), "machine.key")
	require.NoError(t, os.WriteFile(a.Stage2Credentials, FormatCredentials("52:54:00:00:00:01", testMachineKey), 0o600))
	a.SwitchRoot = func(dir, init string) error { t.Fatal("no second switch"); return nil }
	require.NoError(t, a.Run(context.Background()))
	assert.Equal(t, 1, h.reboots)
	require.Len(t, fs.registers, 1)
	assert.Equal(t, "", fs.registers[0].Step, "registered for the image")
	assert.Equal(t, []httpboot.Role{httpboot.RoleMachine, httpboot.RoleMachine}, fs.roles, "with the machine key the first agent left")
	assert.Equal(t, []string{"recv", "--listen", ":9998", "--json", "--key-file", filepath.Join(a.TempDir, ChainKeyFile), "--allow", "/dev/vda", "--disk-dest", "/dev/vda"}, h.recv)
	assert.NotContains(t, strings.Join(h.recv, " "), "--root")
	assert.Contains(t, h.console.String(), "running in the stage 2")
	assert.Contains(t, h.console.String(), "clone verified (4096 bytes)")
}

func TestAgentInsideStage2WithoutItsMachineKey(t *testing.T) {
	fs := &fakeServer{}
	srv := newTestServer(t, fs)
	for name, contents := range map[string]string{
		"missing":       "",
		"garbage":       "not a key\n",
		"another's MAC": string(FormatCredentials("52:54:00:00:00:99", testMachineKey)),
	} {
		t.Run(name, func(t *testing.T) {
			h := &harness{}
			a := h.agentFor(t, srv, `{"event":"summary","ok":true,"bytes":1,"nodes":[]}`, 0)
			a.Config.Stage2 = true
			a.InStage2 = func() bool { return true }
			a.Stage2Credentials = filepath.Join(t.TempDir(), "machine.key")
			if contents != "" {
				require.NoError(t, os.WriteFile(a.Stage2Credentials, []byte(contents), 0o600))
			}
			assert.ErrorIs(t, a.Run(context.Background()), ErrRefused)
			assert.Nil(t, h.recv)
		})
	}
	assert.Empty(t, fs.registers, "the agent key on the kernel line is not tried in a stage 2")
}

// TestPrepareStage2StaysInside: links planted in the unpacked stage 2
// do not make the first agent write outside it.
func TestPrepareStage2StaysInside(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "etc", "herd")))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin", "herd"), []byte("its own"), 0o755))
	a := &Agent{Stage2Credentials: Stage2CredentialsFile, Console: io.Discard, machine: httpboot.Credential{Role: httpboot.RoleMachine, Key: testMachineKey}}
	_, err := a.prepareStage2(dir, "52:54:00:00:00:01")
	assert.Error(t, err, "etc/herd leads out of the stage 2")
	ents, _ := os.ReadDir(outside)
	assert.Empty(t, ents, "nothing written outside")
}

func TestParseCredentials(t *testing.T) {
	b := FormatCredentials("52:54:00:00:00:01", testMachineKey)
	mac, key, err := ParseCredentials(b)
	require.NoError(t, err)
	assert.Equal(t, "52:54:00:00:00:01", mac)
	assert.Equal(t, testMachineKey, key)
	for _, bad := range []string{"", "\n", string(b[:len(b)-1]), string(b) + "x", string(b) + string(b),
		"herd-machine-key-v2 52:54:00:00:00:01 " + hex.EncodeToString(testMachineKey) + "\n",
		"herd-machine-key-v1 52-54-00-00-00-01 " + hex.EncodeToString(testMachineKey) + "\n",
		"herd-machine-key-v1 52:54:00:00:00:01 abcd\n",
		"herd-machine-key-v1  52:54:00:00:00:01 " + hex.EncodeToString(testMachineKey) + "\n",
	} {
		_, _, err := ParseCredentials([]byte(bad))
		assert.ErrorIs(t, err, ErrCredentials, "%q", bad)
	}
}

func FuzzParseCredentials(f *testing.F) {
	f.Add(FormatCredentials("52:54:00:00:00:01", testMachineKey))
	f.Add([]byte("herd-machine-key-v1 x y\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		mac, key, err := ParseCredentials(b)
		if err != nil {
			return
		}
		if string(FormatCredentials(mac, key)) != string(b) {
			t.Fatalf("%q does not round-trip", b)
		}
	})
}
