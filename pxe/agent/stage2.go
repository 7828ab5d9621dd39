package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
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
	// Stage2CredentialsFile is where, inside the stage 2, the first
	// agent leaves the machine key from its registration (mode 0600, in
	// RAM): the stage 2's agent registers for the image with it, since
	// the agent key on the kernel line served its one registration.
	Stage2CredentialsFile = "/etc/herd/machine.key"
)

// stage2RecvArgs are herd recv's confinement for the stage 2: everything
// it writes lands under root, where the stage 2's tmpfs is mounted at
// Stage2Out (the sender sends to Stage2Out).
func stage2RecvArgs(root string) []string {
	// A stage 2 is a root file system: its device nodes and setuid
	// programs must survive unpacking (--unpack-special), here and only
	// here: the image receive never gets it.
	return []string{"--root", root, "--unpack-special"}
}

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
		sum, err = a.receive(ctx, lease, stage2RecvArgs(a.Stage2Root)...)
		if errors.Is(err, ErrServerLost) {
			return err
		}
	}
	var init string
	if err == nil {
		init, err = a.prepareStage2(dir, lease.MAC)
	}
	rep := httpboot.ReportRequest{MAC: lease.MAC, OK: err == nil, Step: state.StepStage2}
	if sum != nil {
		rep.Bytes = sum.Bytes
	}
	if err != nil {
		rep.Error = err.Error()
	}
	if rerr := a.report(ctx, rep); rerr != nil {
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
// binary (this one, unless the stage 2 brings its own), the marker, the
// machine key for the stage 2's agent, and an init. It returns the init
// to run, as a path inside the stage 2. Every write stays inside dir:
// links in the unpacked tree are not followed out of it.
func (a *Agent) prepareStage2(dir, mac string) (string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", fmt.Errorf("agent: open the stage 2 at %s: %w", dir, err)
	}
	defer root.Close()
	if _, err := root.Lstat("bin/herd"); errors.Is(err, os.ErrNotExist) {
		self, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("agent: find this herd binary: %w", err)
		}
		if err := copyInto(root, self, "bin/herd", 0o755); err != nil {
			return "", fmt.Errorf("agent: put herd into the stage 2: %w", err)
		}
		a.say("the stage 2 has no /bin/herd, gave it this agent's")
	}
	if err := writeInto(root, Stage2Marker, []byte("stage 2 received through the chain\n"), 0o644); err != nil {
		return "", fmt.Errorf("agent: stage 2 marker: %w", err)
	}
	if err := writeInto(root, a.Stage2Credentials, FormatCredentials(mac, a.machine.Key), 0o600); err != nil {
		return "", fmt.Errorf("agent: machine key for the stage 2: %w", err)
	}
	for _, init := range []string{"/init", "/sbin/init"} {
		if fi, err := root.Stat(rel(init)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return init, nil
		}
	}
	return "/bin/herd", nil
}

// rel turns an absolute path inside the stage 2 into one for os.Root.
func rel(p string) string {
	return strings.TrimPrefix(filepath.Clean("/"+p), "/")
}

// writeInto writes b to name inside root as a new file with perm,
// replacing (never following) whatever is there.
func writeInto(root *os.Root, name string, b []byte, perm os.FileMode) error {
	name = rel(name)
	if err := root.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	if err := root.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

func copyInto(root *os.Root, src, name string, perm os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeInto(root, name, b, perm)
}

// ErrCredentials means a stage 2's machine key file is malformed.
var ErrCredentials = errors.New("agent: bad machine key file")

// credentialsTag starts the one line of a machine key file.
const credentialsTag = "herd-machine-key-v1"

// FormatCredentials returns the contents of Stage2CredentialsFile:
//
//	herd-machine-key-v1 MAC HEX
func FormatCredentials(mac string, key []byte) []byte {
	return []byte(credentialsTag + " " + mac + " " + hex.EncodeToString(key) + "\n")
}

// ParseCredentials reads what FormatCredentials wrote: the MAC and the
// machine key (httpboot.KeySize bytes).
func ParseCredentials(b []byte) (mac string, key []byte, err error) {
	line, ok := strings.CutSuffix(string(b), "\n")
	f := strings.Split(line, " ")
	if !ok || len(f) != 3 || f[0] != credentialsTag {
		return "", nil, fmt.Errorf("%w: want one line %q", ErrCredentials, credentialsTag+" MAC HEX")
	}
	if mac, err = state.NormalizeMAC(f[1]); err != nil || mac != f[1] {
		return "", nil, fmt.Errorf("%w: MAC %q", ErrCredentials, f[1])
	}
	key, err = hex.DecodeString(f[2])
	if err != nil || len(key) != httpboot.KeySize || hex.EncodeToString(key) != f[2] {
		return "", nil, fmt.Errorf("%w: want a key of %d bytes in lower-case hex", ErrCredentials, httpboot.KeySize)
	}
	return mac, key, nil
}

// initArgs returns the argument list that runs init as the stage 2's
// pid 1: herd itself needs "agent".
func initArgs(init string) []string {
	if strings.HasSuffix(init, "/herd") {
		return []string{init, "agent"}
	}
	return []string{init}
}
