package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
)

// Stage 2: as in the seed's second step, the agent of the boot initramfs
// receives a whole root file system (a cpio or tar archive, compressed or
// not) through the chain into RAM, then switches to it. The stage 2's own
// init runs "herd agent" again, which finds Stage2Marker, registers for
// the image and does the duplication.
const (
	// Stage2Root is the folder herd recv is confined to while the
	// stage 2 arrives.
	Stage2Root = "/run/herd"
	// Stage2Out is where the sender sends the stage 2 (herd send --out
	// Stage2Out --cook): under Stage2Root, the folder on which the agent
	// mounts a tmpfs and which becomes the stage 2's root.
	Stage2Out = "/stage2"
	// Stage2Marker is the file the first agent writes into the stage 2
	// before switching to it, telling the stage 2's agent that its
	// stage 2 has already arrived.
	Stage2Marker = "/etc/herd/in-stage2"
)

// errSwitched ends Run without a reboot: the stage 2 runs now.
var errSwitched = errors.New("agent: switched to the stage 2")

// stage2 registers for the stage 2, receives it into Stage2Root+Stage2Out, reports,
// and switches to it.
func (a *Agent) stage2(ctx context.Context) error {
	c := a.Config
	lease, err := a.join(ctx, state.StepStage2)
	if err != nil {
		return err
	}
	dir := filepath.Join(a.Stage2Root, Stage2Out)
	var sum *Summary
	err = a.MountStage2(dir)
	if err != nil {
		err = fmt.Errorf("agent: RAM file system for the stage 2 at %s: %w", dir, err)
	} else {
		// herd recv confines every destination under Stage2Root: the
		// sender sends the archive cooked to Stage2Out.
		sum, err = a.receive(ctx, lease, "--root", a.Stage2Root)
		if errors.Is(err, ErrServerLost) {
			return err
		}
	}
	var init string
	if err == nil {
		init, err = a.prepareStage2(dir)
	}
	rep := httpboot.ReportRequest{MAC: lease.MAC, OK: err == nil, Step: state.StepStage2}
	if sum != nil {
		rep.Bytes = sum.Bytes
	}
	if err != nil {
		rep.Error = err.Error()
	}
	if rerr := a.post(ctx, httpboot.PathReport, rep); rerr != nil {
		a.say("cannot report to herd server %s: %v", c.Server, rerr)
		if err == nil {
			err = fmt.Errorf("agent: report: %w", rerr)
		}
	}
	if err != nil {
		return err
	}
	a.say("stage 2 received (%d bytes), switching to it: %s", rep.Bytes, init)
	if err := a.SwitchRoot(dir, init); err != nil {
		return fmt.Errorf("agent: switch to the stage 2: %w", err)
	}
	return errSwitched
}

// prepareStage2 makes the unpacked tree at dir ready to run: a herd
// binary (this one, unless the stage 2 brings its own), the marker, and
// an init. It returns the init to run, as a path inside the stage 2.
func (a *Agent) prepareStage2(dir string) (string, error) {
	herd := filepath.Join(dir, "bin", "herd")
	if _, err := os.Lstat(herd); errors.Is(err, os.ErrNotExist) {
		self, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("agent: find this herd binary: %w", err)
		}
		if err := copyFile(self, herd, 0o755); err != nil {
			return "", fmt.Errorf("agent: put herd into the stage 2: %w", err)
		}
		a.say("the stage 2 has no /bin/herd, gave it this agent's")
	}
	marker := filepath.Join(dir, Stage2Marker)
	if err := os.MkdirAll(filepath.Dir(marker), 0o755); err != nil {
		return "", fmt.Errorf("agent: stage 2 marker: %w", err)
	}
	if err := os.WriteFile(marker, []byte("stage 2 received through the chain\n"), 0o644); err != nil {
		return "", fmt.Errorf("agent: stage 2 marker: %w", err)
	}
	for _, init := range []string{"/init", "/sbin/init"} {
		if fi, err := os.Stat(filepath.Join(dir, init)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return init, nil
		}
	}
	return "/bin/herd", nil
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// initArgs returns the argument list that runs init as the stage 2's
// pid 1: herd itself needs "agent".
func initArgs(init string) []string {
	if strings.HasSuffix(init, "/herd") {
		return []string{init, "agent"}
	}
	return []string{init}
}
