package agent

import (
	"context"
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
	assert.Equal(t, a.Stage2Root, h.recv[indexOf(h.recv, "--root")+1])
	require.Len(t, fs.registers, 1)
	assert.Equal(t, state.StepStage2, fs.registers[0].Step)
	require.Len(t, fs.reports, 1)
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
	a.InStage2 = func() bool { return true }
	a.SwitchRoot = func(dir, init string) error { t.Fatal("no second switch"); return nil }
	require.NoError(t, a.Run(context.Background()))
	assert.Equal(t, 1, h.reboots)
	require.Len(t, fs.registers, 1)
	assert.Equal(t, "", fs.registers[0].Step, "registered for the image")
	assert.NotContains(t, strings.Join(h.recv, " "), "--root")
	assert.Contains(t, h.console.String(), "running in the stage 2")
	assert.Contains(t, h.console.String(), "clone verified (4096 bytes)")
}
