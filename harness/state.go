package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Paths shared by every cluster on the machine.
const (
	// StateDir holds one state file per cluster (<name>.json), the lock
	// file and the mount namespace pins.
	StateDir = "/run/herd-lab"
	// NodeDir is a private tmpfs inside every node's mount namespace.
	// Processes in the node may use it as scratch space.
	NodeDir = "/run/herd-lab/node"
	// NodeDisk is the block device node of the node's own disk, at the
	// same path on every node.
	NodeDisk = NodeDir + "/disk"
	// DefaultWorkRoot is where disk images and logs go unless
	// Config.WorkDir says otherwise (one sub-folder per cluster).
	DefaultWorkRoot = "/var/tmp/herd-lab"
	// Prefix starts the name of every named network namespace and mount
	// namespace pin a cluster creates.
	Prefix = "herdlab-"

	netnsDir  = "/run/netns"
	mntPinDir = StateDir + "/ns"
	lockFile  = StateDir + "/.lock"
)

var nameRE = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

// state is what the state file records: enough to find and remove every
// object of a cluster even if the process that made it died.
type state struct {
	Name       string `json:"name"`
	OwnerPID   int    `json:"owner_pid"`
	OwnerStart uint64 `json:"owner_start"`
	Persistent bool   `json:"persistent"`
	Nodes      int    `json:"nodes"`
	DiskSize   int64  `json:"disk_size"`
	// DiskSizes holds the nodes whose disk size differs from DiskSize.
	DiskSizes map[string]int64 `json:"disk_sizes,omitempty"`
	Rate      uint64           `json:"rate_bits"`
	Subnet    string           `json:"subnet"`
	WorkDir   string           `json:"work_dir"`
	// Loops maps a node name to its loop device path (/dev/loopN).
	Loops map[string]string `json:"loops"`
}

// diskSizeOf returns the disk size of the node called name.
func (st *state) diskSizeOf(name string) int64 {
	if sz, ok := st.DiskSizes[name]; ok && sz > 0 {
		return sz
	}
	return st.DiskSize
}

func statePath(name string) string { return filepath.Join(StateDir, name+".json") }

func netnsName(cluster, node string) string { return Prefix + cluster + "-" + node }

func netnsPath(cluster, node string) string {
	return filepath.Join(netnsDir, netnsName(cluster, node))
}

func mntPinPath(cluster, node string) string {
	return filepath.Join(mntPinDir, netnsName(cluster, node))
}

func nodeName(i int) string {
	if i == 0 {
		return "golden"
	}
	return "node" + strconv.Itoa(i)
}

func writeState(st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state of cluster %s: %w", st.Name, err)
	}
	tmp := statePath(st.Name) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write state of cluster %s: %w", st.Name, err)
	}
	if err := os.Rename(tmp, statePath(st.Name)); err != nil {
		return fmt.Errorf("write state of cluster %s: %w", st.Name, err)
	}
	return nil
}

func readState(name string) (*state, error) {
	b, err := os.ReadFile(statePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cluster %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read state of cluster %s: %w", name, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode state file %s: %w", statePath(name), err)
	}
	if st.Name != name {
		return nil, fmt.Errorf("state file %s names cluster %q: %w", statePath(name), st.Name, ErrBadState)
	}
	return &st, nil
}

// lockState takes the machine-wide harness lock (an flock on lockFile) and
// returns its release function. Creation and sweeping hold it so that a
// sweep never sees objects of a cluster whose state file is not written yet.
func lockState() (func(), error) {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", StateDir, err)
	}
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", lockFile, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", lockFile, err)
	}
	return func() { f.Close() }, nil
}

// procStart returns the start time (in clock ticks since boot) of pid, or 0
// if it does not exist. Together with the pid it identifies a process even
// when pids are reused.
func procStart(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// Fields after the command: state is field 3, starttime is field 22.
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// ownerAlive reports whether the process that created st still runs.
func ownerAlive(st *state) bool {
	if st.OwnerPID <= 0 {
		return false
	}
	return procStart(st.OwnerPID) == st.OwnerStart && st.OwnerStart != 0
}
