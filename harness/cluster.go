package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Config describes a cluster to build. The zero value (plus Nodes) works.
type Config struct {
	// Name identifies the cluster: lowercase letters and digits, at most
	// 20. Empty means a random name (what tests want).
	Name string
	// Nodes is the number of nodes besides golden (1..240).
	Nodes int
	// DiskSize is the size in bytes of each node's sparse disk; 0 means 64 MiB.
	DiskSize int64
	// DiskSizes optionally gives node i+1 (nodeI+1) a disk of DiskSizes[i]
	// bytes. Entries missing (a shorter slice) or 0 fall back to DiskSize.
	// It may not be longer than Nodes.
	DiskSizes []int64
	// Rate limits each node's link, in bits per second, in both
	// directions (TBF). 0 leaves links unshaped.
	Rate uint64
	// Subnet holds the addresses; default 10.99.0.0/24. Golden is .1 and
	// node i is .(10+i).
	Subnet netip.Prefix
	// WorkDir holds disk images and logs; default DefaultWorkRoot/<name>.
	// It is removed by Close.
	WorkDir string
	// Persistent marks a cluster meant to outlive its creating process
	// (herd lab). A sweep of leftovers never removes a persistent cluster.
	Persistent bool
}

// Cluster is a running cluster. Its methods may be called concurrently.
type Cluster struct {
	st     *state
	subnet netip.Prefix
	golden *Node
	nodes  []*Node

	mu     sync.Mutex
	closed bool
	procs  map[*Proc]struct{}
}

var (
	openMu   sync.Mutex
	openSet  = map[*Cluster]struct{}{}
	idPrefix = "t"
)

// New builds a cluster. It first removes leftovers of earlier runs whose
// creator died (see Sweep). On error, everything built so far is removed.
func New(ctx context.Context, cfg Config) (*Cluster, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if cfg.Name == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		cfg.Name = idPrefix + hex.EncodeToString(b)
	}
	if !nameRE.MatchString(cfg.Name) {
		return nil, fmt.Errorf("cluster name %q (want 1-20 of a-z0-9): %w", cfg.Name, ErrBadConfig)
	}
	if cfg.Nodes < 1 || cfg.Nodes > 240 {
		return nil, fmt.Errorf("%d nodes (want 1..240): %w", cfg.Nodes, ErrBadConfig)
	}
	if cfg.DiskSize == 0 {
		cfg.DiskSize = 64 << 20
	}
	if cfg.DiskSize < 0 {
		return nil, fmt.Errorf("disk size %d: %w", cfg.DiskSize, ErrBadConfig)
	}
	if len(cfg.DiskSizes) > cfg.Nodes {
		return nil, fmt.Errorf("%d disk sizes for %d nodes: %w", len(cfg.DiskSizes), cfg.Nodes, ErrBadConfig)
	}
	var sizes map[string]int64
	for i, sz := range cfg.DiskSizes {
		if sz < 0 {
			return nil, fmt.Errorf("disk size %d of %s: %w", sz, nodeName(i+1), ErrBadConfig)
		}
		if sz > 0 && sz != cfg.DiskSize {
			if sizes == nil {
				sizes = map[string]int64{}
			}
			sizes[nodeName(i+1)] = sz
		}
	}
	if !cfg.Subnet.IsValid() {
		cfg.Subnet = netip.MustParsePrefix("10.99.0.0/24")
	}
	cfg.Subnet = cfg.Subnet.Masked()
	if !cfg.Subnet.Addr().Is4() || cfg.Subnet.Bits() > 24 {
		return nil, fmt.Errorf("subnet %s (want IPv4, /24 or larger): %w", cfg.Subnet, ErrBadConfig)
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = filepath.Join(DefaultWorkRoot, cfg.Name)
	}
	if err := Sweep(); err != nil {
		return nil, fmt.Errorf("remove leftovers: %w", err)
	}

	unlock, err := lockState()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(statePath(cfg.Name)); err == nil {
		unlock()
		return nil, fmt.Errorf("cluster %s (state %s): %w", cfg.Name, statePath(cfg.Name), ErrExists)
	}
	st := &state{
		Name: cfg.Name, OwnerPID: os.Getpid(), OwnerStart: procStart(os.Getpid()),
		Persistent: cfg.Persistent, Nodes: cfg.Nodes, DiskSize: cfg.DiskSize, DiskSizes: sizes,
		Rate: cfg.Rate, Subnet: cfg.Subnet.String(), WorkDir: cfg.WorkDir,
		Loops: map[string]string{},
	}
	// The state file comes first: whatever follows can be found by it.
	err = writeState(st)
	if err == nil {
		// Mount points for the pins, made under the lock so that two
		// harness processes never stack them (see pins_linux.go).
		if err = errors.Join(ensureNetnsDir(), ensurePrivateDir(mntPinDir)); err != nil {
			os.Remove(statePath(st.Name))
		}
	}
	unlock()
	if err != nil {
		return nil, err
	}
	c := newCluster(st, cfg.Subnet)
	register(c)
	if err := c.build(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

func newCluster(st *state, subnet netip.Prefix) *Cluster {
	c := &Cluster{st: st, subnet: subnet, procs: map[*Proc]struct{}{}}
	c.golden = &Node{c: c, index: 0, name: "golden", addr: hostAddr(subnet, 1)}
	for i := 1; i <= st.Nodes; i++ {
		c.nodes = append(c.nodes, &Node{c: c, index: i, name: nodeName(i), addr: hostAddr(subnet, 10+i), disk: st.Loops[nodeName(i)]})
	}
	return c
}

func hostAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func register(c *Cluster) {
	openMu.Lock()
	openSet[c] = struct{}{}
	openMu.Unlock()
}

func unregister(c *Cluster) {
	openMu.Lock()
	delete(openSet, c)
	openMu.Unlock()
}

// Open attaches to a cluster built earlier (by another process), from its
// state file. Close on the result removes the cluster.
func Open(name string) (*Cluster, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	st, err := readState(name)
	if err != nil {
		return nil, err
	}
	subnet, err := netip.ParsePrefix(st.Subnet)
	if err != nil {
		return nil, fmt.Errorf("state of %s: subnet %q: %w", name, st.Subnet, ErrBadState)
	}
	c := newCluster(st, subnet)
	for _, n := range c.All() {
		if _, err := os.Stat(netnsPath(name, n.name)); err != nil {
			return nil, fmt.Errorf("cluster %s is broken (netns of %s missing; take it down and up again): %w", name, n.name, ErrBadState)
		}
	}
	return c, nil
}

func (c *Cluster) build(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(c.st.WorkDir, "logs"), 0o755); err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	gns, err := createNetns(netnsName(c.st.Name, "golden"))
	if err != nil {
		return err
	}
	defer gns.Close()
	gh, err := netlink.NewHandleAt(gns)
	if err != nil {
		return fmt.Errorf("netlink in golden: %w", err)
	}
	defer gh.Close()
	if err := linkUp(gh, "lo"); err != nil {
		return fmt.Errorf("golden: %w", err)
	}
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}, MulticastSnooping: &off}
	if err := gh.LinkAdd(br); err != nil {
		return fmt.Errorf("golden: add bridge br0: %w", err)
	}
	if err := configAddr(gh, "br0", c.golden.addr, c.subnet.Bits()); err != nil {
		return fmt.Errorf("golden: %w", err)
	}
	brLink, err := gh.LinkByName("br0")
	if err != nil {
		return fmt.Errorf("golden: find br0: %w", err)
	}

	for _, n := range c.nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.buildNode(gh, brLink, n); err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
	}
	unlock, err := lockState()
	if err != nil {
		return err
	}
	defer unlock()
	return writeState(c.st)
}

func (c *Cluster) buildNode(gh *netlink.Handle, br netlink.Link, n *Node) error {
	img := filepath.Join(c.st.WorkDir, n.name+".img")
	f, err := os.OpenFile(img, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create disk image: %w", err)
	}
	err = f.Truncate(c.st.diskSizeOf(n.name))
	f.Close()
	if err != nil {
		return fmt.Errorf("size disk image %s: %w", img, err)
	}
	loop, dev, err := attachLoop(img)
	if err != nil {
		return err
	}
	n.disk = loop
	c.mu.Lock()
	c.st.Loops[n.name] = loop
	c.mu.Unlock()
	// Record the loop device before anything else can fail.
	if unlock, err := lockState(); err == nil {
		err = writeState(c.st)
		unlock()
		if err != nil {
			return err
		}
	}

	ns, err := createNetns(netnsName(c.st.Name, n.name))
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := createMountNS(mntPinPath(c.st.Name, n.name), dev); err != nil {
		return err
	}
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer nh.Close()
	if err := linkUp(nh, "lo"); err != nil {
		return err
	}
	port := "v" + n.name
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, MasterIndex: br.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := gh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s/eth0: %w", port, err)
	}
	if err := linkUp(gh, port); err != nil {
		return err
	}
	if err := configAddr(nh, "eth0", n.addr, c.subnet.Bits()); err != nil {
		return err
	}
	if c.st.Rate > 0 {
		if err := setTBF(gh, port, c.st.Rate); err != nil {
			return err
		}
		if err := setTBF(nh, "eth0", c.st.Rate); err != nil {
			return err
		}
	}
	return nil
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.st.Name }

// Nodes returns the nodes node1..nodeN (golden excluded), in order.
func (c *Cluster) Nodes() []*Node { return append([]*Node(nil), c.nodes...) }

// Golden returns the golden node: the namespace holding the bridge, which
// reaches every node and shares the host's filesystem.
func (c *Cluster) Golden() *Node { return c.golden }

// All returns golden followed by every node.
func (c *Cluster) All() []*Node { return append([]*Node{c.golden}, c.nodes...) }

// Node returns the node called name ("golden", "host" for golden, or
// "node1".."nodeN").
func (c *Cluster) Node(name string) (*Node, error) {
	if name == "golden" || name == "host" || name == "node0" {
		return c.golden, nil
	}
	for _, n := range c.nodes {
		if n.name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("node %q in cluster %s: %w", name, c.st.Name, ErrNotFound)
}

// Subnet returns the cluster's address range.
func (c *Cluster) Subnet() netip.Prefix { return c.subnet }

// Rate returns the link rate in bits per second set at creation (0 = unshaped).
func (c *Cluster) Rate() uint64 { return c.st.Rate }

// DiskSize returns the default size of a node's disk in bytes (see
// Node.DiskSize for a node given its own size by Config.DiskSizes).
func (c *Cluster) DiskSize() int64 { return c.st.DiskSize }

// WorkDir returns the folder with disk images and logs.
func (c *Cluster) WorkDir() string { return c.st.WorkDir }

// Persistent reports whether the cluster was made to outlive its creator.
func (c *Cluster) Persistent() bool { return c.st.Persistent }

// Close kills every process in the cluster and removes every namespace,
// link, mount, loop device, throttle rule, file and the state file. It is
// idempotent; concurrent callers wait for the first.
func (c *Cluster) Close() error { return c.close(nil) }

// close is Close, reporting what it removes to rep (may be nil).
func (c *Cluster) close(rep *[]string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	unregister(c)
	for p := range c.procs {
		p.signalGroup(9)
	}
	err := destroy(c.st, rep)
	for p := range c.procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
	return err
}

// pinPatience is how long Close keeps asking for a busy pin to be freed.
const pinPatience = 5 * time.Second

// destroy removes everything state names, plus objects found by name.
func destroy(st *state, rep *[]string) error {
	names := []string{"golden"}
	for i := 1; i <= st.Nodes; i++ {
		names = append(names, nodeName(i))
	}
	var pins []string
	for _, n := range names {
		pins = append(pins, mntPinPath(st.Name, n), netnsPath(st.Name, n))
	}
	errs := removeNamespaces(pins, rep)
	loops := map[string]bool{}
	for _, l := range st.Loops {
		loops[l] = true
	}
	if st.WorkDir != "" {
		for _, l := range loopsBackedUnder(st.WorkDir) {
			loops[l] = true
		}
	}
	for l := range loops {
		// Only a loop device still backed by our images is ours to reset.
		if !backedUnder(l, st.WorkDir) {
			continue
		}
		if dev, err := devNumber(l); err == nil {
			_ = throttle(dev, 0, 0)
			_ = limitDirty(dev, 0)
		}
		if err := detachLoop(l); err != nil {
			errs = append(errs, err)
		} else {
			report(rep, "loop device %s", l)
		}
	}
	if st.WorkDir != "" {
		if _, err := os.Stat(st.WorkDir); err == nil {
			report(rep, "work dir %s", st.WorkDir)
		}
		if err := os.RemoveAll(st.WorkDir); err != nil {
			errs = append(errs, fmt.Errorf("remove work dir: %w", err))
		}
	}
	if len(errs) == 0 {
		err := os.Remove(statePath(st.Name))
		if err == nil {
			report(rep, "state file %s", statePath(st.Name))
		} else if !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove state file: %w", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("close cluster %s: %w", st.Name, errors.Join(errs...))
	}
	return nil
}

// report adds a line to rep, if any.
func report(rep *[]string, format string, args ...any) {
	if rep != nil {
		*rep = append(*rep, fmt.Sprintf(format, args...))
	}
}

// removeNamespaces kills every process in the namespaces pinned at pins
// (found through every layer of mounts, hidden ones included), then removes
// the pins (removePins). Links inside (veths, bridge, taps) go with their
// namespace.
func removeNamespaces(pins []string, rep *[]string) []error {
	var errs []error
	set := map[string]bool{}
	for _, p := range pins {
		set[p] = true
	}
	inodes := map[uint64]bool{}
	if ms, err := readMountinfo(); err == nil {
		inodes = pinInodes(ms, set)
	}
	var present []string
	for _, p := range pins {
		if ino := nsInode(p); ino != 0 {
			inodes[ino] = true
		}
		if _, err := os.Lstat(p); err == nil {
			present = append(present, p)
		}
	}
	if rep != nil {
		for _, p := range present {
			if filepath.Dir(p) == netnsDir {
				report(rep, "network namespace %s%s", filepath.Base(p), linksOf(p))
			} else {
				report(rep, "mount namespace %s", p)
			}
		}
	}
	// A killed process can take seconds to go on a loaded host (its last
	// close of a loop device flushes the device's dirty pages first).
	if err := killIn(inodes, 15*time.Second, rep); err != nil {
		errs = append(errs, err)
	}
	// A pin can be busy for a moment: another program's namespace in a
	// bind stacked over /run/netns (see pins_linux.go) is usually removed
	// by that program soon after. Ask again for a while before giving up.
	n, err := removePins(pins)
	for deadline := time.Now().Add(pinPatience); err != nil && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		var k int
		k, err = removePins(pins)
		n += k
	}
	if err != nil {
		errs = append(errs, err)
	}
	if n > 0 {
		report(rep, "%d namespace mounts", n)
	}
	return errs
}

// linksOf lists the links (but lo) in the network namespace pinned at pin,
// as " (links a, b)", or "".
func linksOf(pin string) string {
	ns, err := netns.GetFromPath(pin)
	if err != nil {
		return ""
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return ""
	}
	defer h.Close()
	ls, err := h.LinkList()
	if err != nil {
		return ""
	}
	var names []string
	for _, l := range ls {
		if l.Attrs().Name != "lo" {
			names = append(names, l.Attrs().Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " (links " + strings.Join(names, ", ") + ")"
}

func backedUnder(loop, dir string) bool {
	if dir == "" {
		return false
	}
	for _, l := range loopsBackedUnder(dir) {
		if l == loop {
			return true
		}
	}
	return false
}

// Sweep removes leftovers of clusters whose creating process is gone
// (crashed, killed) unless they are persistent, and any namespace pin with
// the harness prefix that no state file claims. New calls it.
func Sweep() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	unlock, err := lockState()
	if err != nil {
		return err
	}
	defer unlock()
	return sweep(nil, "")
}

// sweep is Sweep with the lock held. It also removes the cluster called
// down (persistent or not) and its leftovers, if down is not empty.
func sweep(rep *[]string, down string) error {
	files, _ := filepath.Glob(filepath.Join(StateDir, "*.json"))
	known := map[string]bool{}
	var errs []error
	for _, f := range files {
		name := filepath.Base(f[:len(f)-len(".json")])
		st, err := readState(name)
		if err != nil {
			// An unreadable state file: drop it, its objects are
			// handled as unclaimed below.
			os.Remove(f)
			report(rep, "unreadable state file %s", f)
			continue
		}
		if name != down && (st.Persistent || ownerAlive(st)) {
			known[name] = true
			continue
		}
		if err := destroy(st, rep); err != nil {
			errs = append(errs, err)
			known[name] = true
		}
	}
	// Unclaimed pins: created by a run that died before its state file
	// existed can not happen (state comes first), but a state file may
	// have been removed by hand. Pins are found in the directories and in
	// mountinfo (a pin whose file went missing still holds a mount).
	ms, _ := readMountinfo()
	for _, dir := range []string{netnsDir, mntPinDir} {
		seen := map[string]bool{}
		var pins []string
		add := func(base string) {
			cl, ok := clusterOfPin(base)
			p := filepath.Join(dir, base)
			if !ok || known[cl] || seen[p] {
				return
			}
			seen[p] = true
			pins = append(pins, p)
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			add(e.Name())
		}
		for _, p := range mountsUnder(ms, dir) {
			if filepath.Dir(p) == dir {
				add(filepath.Base(p))
			}
		}
		if len(pins) > 0 {
			errs = append(errs, removeNamespaces(pins, rep)...)
		}
	}
	// Loop devices and work dir of the cluster taken down when its state
	// file is gone (default work dir only: nothing else names it).
	if down != "" && !known[down] {
		if _, err := os.Stat(statePath(down)); errors.Is(err, os.ErrNotExist) {
			work := filepath.Join(DefaultWorkRoot, down)
			for _, l := range loopsBackedUnder(work) {
				if err := detachLoop(l); err != nil {
					errs = append(errs, err)
				} else {
					report(rep, "loop device %s", l)
				}
			}
			if _, err := os.Stat(work); err == nil {
				report(rep, "work dir %s", work)
				if err := os.RemoveAll(work); err != nil {
					errs = append(errs, fmt.Errorf("remove work dir: %w", err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Down removes the cluster called name (persistent or not, whether or not
// its creator runs, even half broken or without a state file) and the
// leftovers of every crashed run: clusters whose creator died, pins with
// the harness prefix that no live cluster claims, including nsfs mounts
// hidden under mounts stacked on their directory. It returns one line per
// object removed (empty: there was nothing to remove). It is what `herd
// lab down` runs.
func Down(name string) ([]string, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("cluster name %q (want 1-20 of a-z0-9): %w", name, ErrBadConfig)
	}
	mine := openNamed(name)
	var errs []error
	rep := []string{}
	for _, c := range mine {
		errs = append(errs, c.close(&rep))
	}
	unlock, err := lockState()
	if err != nil {
		return nil, err
	}
	defer unlock()
	errs = append(errs, sweep(&rep, name))
	return rep, errors.Join(errs...)
}

// clusterOfPin extracts the cluster name from "herdlab-<cluster>-<node>".
func clusterOfPin(pin string) (string, bool) {
	if len(pin) <= len(Prefix) || pin[:len(Prefix)] != Prefix {
		return "", false
	}
	rest := pin[len(Prefix):]
	for i := len(rest) - 1; i > 0; i-- {
		if rest[i] == '-' {
			return rest[:i], true
		}
	}
	return "", false
}

// handleAt opens a netlink handle inside a node's network namespace.
func (n *Node) handleAt() (*netlink.Handle, netns.NsHandle, error) {
	ns, err := netns.GetFromPath(n.NetNS())
	if err != nil {
		return nil, 0, fmt.Errorf("open netns of %s: %w", n.name, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, 0, fmt.Errorf("netlink in %s: %w", n.name, err)
	}
	return h, ns, nil
}

// Destroy removes the cluster called name using only its state file,
// whether or not its creator still runs and even when the cluster is half
// broken (what `herd lab down` needs). A cluster that does not exist gives
// ErrNotFound.
func Destroy(name string) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	st, err := readState(name)
	if err != nil {
		return err
	}
	mine := openNamed(name)
	if len(mine) > 0 {
		return mine[0].Close()
	}
	unlock, err := lockState()
	if err != nil {
		return err
	}
	defer unlock()
	return destroy(st, nil)
}

// openNamed returns the clusters of this process open under name.
func openNamed(name string) []*Cluster {
	openMu.Lock()
	defer openMu.Unlock()
	var mine []*Cluster
	for c := range openSet {
		if c.st.Name == name {
			mine = append(mine, c)
		}
	}
	return mine
}
