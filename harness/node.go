package harness

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Node is one machine of a cluster: golden (index 0) or nodeI (index I).
type Node struct {
	c     *Cluster
	index int
	name  string
	addr  netip.Addr
	disk  string
}

// Name returns "golden" or "nodeI".
func (n *Node) Name() string { return n.name }

// Index returns 0 for golden and I for nodeI.
func (n *Node) Index() int { return n.index }

// Addr returns the node's IPv4 address.
func (n *Node) Addr() netip.Addr { return n.addr }

// NetNS returns the path of the node's pinned network namespace.
func (n *Node) NetNS() string { return netnsPath(n.c.st.Name, n.name) }

// MountNS returns the path of the node's pinned mount namespace, or "" for
// golden, which shares the host's filesystem.
func (n *Node) MountNS() string {
	if n.index == 0 {
		return ""
	}
	return mntPinPath(n.c.st.Name, n.name)
}

// Disk returns the host path of the node's loop device (/dev/loopN), or ""
// for golden. Inside the node the same disk is NodeDisk.
func (n *Node) Disk() string { return n.disk }

// DiskSize returns the size in bytes of the node's disk, or 0 for golden.
func (n *Node) DiskSize() int64 {
	if n.index == 0 {
		return 0
	}
	return n.c.st.diskSizeOf(n.name)
}

// port returns the interface on the golden side (a bridge port) that
// carries this node's traffic.
func (n *Node) port() string { return "v" + n.name }

func (n *Node) check() error {
	if n.index == 0 {
		return fmt.Errorf("golden has no link or disk of its own: %w", ErrBadConfig)
	}
	n.c.mu.Lock()
	closed := n.c.closed
	n.c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return nil
}

// SetRate shapes the node's link to bits per second in both directions
// (TBF on eth0 in the node and on its bridge port). 0 removes the shaping.
func (n *Node) SetRate(bits uint64) error {
	if err := n.check(); err != nil {
		return err
	}
	gh, gns, err := n.c.golden.handleAt()
	if err != nil {
		return err
	}
	defer gns.Close()
	defer gh.Close()
	nh, nns, err := n.handleAt()
	if err != nil {
		return err
	}
	defer nns.Close()
	defer nh.Close()
	if err := setTBF(gh, n.port(), bits); err != nil {
		return err
	}
	return setTBF(nh, "eth0", bits)
}

// Cut disconnects the node like a pulled cable: its bridge port goes down,
// nothing is reset, packets just stop. Restore undoes it.
func (n *Node) Cut() error { return n.setPort(false) }

// Restore reconnects a node after Cut.
func (n *Node) Restore() error { return n.setPort(true) }

func (n *Node) setPort(up bool) error {
	if err := n.check(); err != nil {
		return err
	}
	gh, gns, err := n.c.golden.handleAt()
	if err != nil {
		return err
	}
	defer gns.Close()
	defer gh.Close()
	l, err := gh.LinkByName(n.port())
	if err != nil {
		return fmt.Errorf("find port %s: %w", n.port(), err)
	}
	if up {
		err = gh.LinkSetUp(l)
	} else {
		err = gh.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("set port %s up=%v: %w", n.port(), up, err)
	}
	return nil
}

const lossTable = "herdlab"

// SetLoss drops one packet in oneIn at random, in each direction, on the
// node (nftables `numgen random mod oneIn == 0 drop` on input and output).
// 0 removes the loss.
func (n *Node) SetLoss(oneIn int) error {
	if err := n.check(); err != nil {
		return err
	}
	if oneIn < 0 || oneIn == 1 {
		return fmt.Errorf("loss one in %d (want 0 or >= 2): %w", oneIn, ErrBadConfig)
	}
	f, err := os.Open(n.NetNS())
	if err != nil {
		return fmt.Errorf("open netns of %s: %w", n.name, err)
	}
	defer f.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", n.name, err)
	}
	defer conn.CloseLasting()
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: lossTable}
	// Remove an earlier rule set; absent is fine.
	conn.DelTable(table)
	_ = conn.Flush()
	if oneIn == 0 {
		return nil
	}
	conn.AddTable(table)
	for _, hook := range []*nftables.ChainHook{nftables.ChainHookInput, nftables.ChainHookOutput} {
		name := "in"
		if hook == nftables.ChainHookOutput {
			name = "out"
		}
		ch := conn.AddChain(&nftables.Chain{
			Name: name, Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: nftables.ChainPriorityFilter,
		})
		conn.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: []expr.Any{
			&expr.Numgen{Register: 1, Modulus: uint32(oneIn), Type: unix.NFT_NG_RANDOM},
			// numgen writes host byte order: compare with the native encoding.
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("install loss rule in %s: %w", n.name, err)
	}
	return nil
}

// SlowDisk throttles the node's disk to the given bytes per second for
// reads and writes (0 = unlimited) with the blkio controller of the root
// cgroup, so it applies to every writer including the kernel's writeback.
func (n *Node) SlowDisk(readBps, writeBps uint64) error {
	if err := n.check(); err != nil {
		return err
	}
	dev, err := devNumber(n.disk)
	if err != nil {
		return err
	}
	return throttle(dev, readBps, writeBps)
}

const blkioDir = "/sys/fs/cgroup/blkio"

func throttle(dev uint64, readBps, writeBps uint64) error {
	id := fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
	for file, v := range map[string]uint64{"blkio.throttle.read_bps_device": readBps, "blkio.throttle.write_bps_device": writeBps} {
		p := blkioDir + "/" + file
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("disk throttling needs %s: %w", p, ErrUnsupported)
		}
		if err := os.WriteFile(p, []byte(id+" "+strconv.FormatUint(v, 10)), 0); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// LimitDirty caps the page cache that writers to the node's disk may fill
// with data not yet written to it, to about bytes (strict_limit and
// max_bytes of the disk's backing device info in /sys/class/bdi). Without
// it a writer fills memory at full speed and a throttled disk (SlowDisk)
// is only felt at the final sync; with it the writer itself goes at the
// disk's pace, like a real slow disk. 0 removes the cap. The kernel needs
// both knobs (Linux 6.2 and later); otherwise it returns ErrUnsupported.
func (n *Node) LimitDirty(bytes int64) error {
	if err := n.check(); err != nil {
		return err
	}
	if bytes < 0 {
		return fmt.Errorf("dirty limit %d: %w", bytes, ErrBadConfig)
	}
	dev, err := devNumber(n.disk)
	if err != nil {
		return err
	}
	return limitDirty(dev, bytes)
}

func limitDirty(dev uint64, bytes int64) error {
	dir := fmt.Sprintf("/sys/class/bdi/%d:%d", unix.Major(dev), unix.Minor(dev))
	for _, f := range []string{"strict_limit", "max_bytes", "max_ratio"} {
		if _, err := os.Stat(dir + "/" + f); err != nil {
			return fmt.Errorf("dirty limit needs %s/%s: %w", dir, f, ErrUnsupported)
		}
	}
	writes := [][2]string{{"max_ratio", "100"}, {"strict_limit", "0"}}
	if bytes > 0 {
		writes = [][2]string{{"max_bytes", strconv.FormatInt(bytes, 10)}, {"strict_limit", "1"}}
	}
	for _, w := range writes {
		if err := os.WriteFile(dir+"/"+w[0], []byte(w[1]), 0); err != nil {
			return fmt.Errorf("write %s/%s: %w", dir, w[0], err)
		}
	}
	return nil
}

// Kill sends SIGKILL to every process running inside the node, whoever
// started it.
func (n *Node) Kill() error { return n.signalAll(syscall.SIGKILL) }

// Freeze stops (SIGSTOP) every process inside the node; Thaw resumes them.
func (n *Node) Freeze() error { return n.signalAll(syscall.SIGSTOP) }

// Thaw resumes (SIGCONT) every process inside the node.
func (n *Node) Thaw() error { return n.signalAll(syscall.SIGCONT) }

// Pids lists the processes running inside the node's namespaces.
func (n *Node) Pids() []int {
	inodes := map[uint64]bool{}
	if ino := nsInode(n.NetNS()); ino != 0 {
		inodes[ino] = true
	}
	if p := n.MountNS(); p != "" {
		if ino := nsInode(p); ino != 0 {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	return procsIn(inodes)
}

func (n *Node) signalAll(sig syscall.Signal) error {
	var errs []error
	for _, pid := range n.Pids() {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("signal %d to pid %d: %w", sig, pid, err))
		}
	}
	return errors.Join(errs...)
}

// linkUp sets the named link up.
func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// configAddr gives a link its address (with broadcast), sets it up and adds
// a multicast route through it.
func configAddr(h *netlink.Handle, name string, a netip.Addr, bits int) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	p := netip.PrefixFrom(a, bits)
	ipn, err := netlink.ParseIPNet(p.String())
	if err != nil {
		return fmt.Errorf("parse %s: %w", p, err)
	}
	last := p.Masked().Addr().As4()
	m := ipn.Mask
	for i := range last {
		last[i] |= ^m[i]
	}
	addr := &netlink.Addr{IPNet: ipn, Broadcast: last[:]}
	if err := h.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("add %s brd %v to %s: %w", p, netip.AddrFrom4(last), name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	mc, _ := netlink.ParseIPNet("224.0.0.0/4")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: mc}); err != nil {
		return fmt.Errorf("add multicast route on %s: %w", name, err)
	}
	return nil
}

// setTBF replaces the root qdisc of a link with a token bucket of bits per
// second (burst 50 ms of traffic, at least 64 KiB; queue 50 ms more), or
// deletes it when bits is 0. A 10 ms bucket loses tokens whenever a loaded
// host delays its network softirq work, and the link then delivers well
// under its rate; 50 ms lets at most 0.3 % extra through over 15 s.
func setTBF(h *netlink.Handle, name string, bits uint64) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	attrs := netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
	if bits == 0 {
		err := h.QdiscDel(&netlink.Tbf{QdiscAttrs: attrs})
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("remove rate limit on %s: %w", name, err)
		}
		return nil
	}
	rate := bits / 8
	burst := rate / 20
	if burst < 64<<10 {
		burst = 64 << 10
	}
	limit := burst + rate/20
	if limit > 1<<31 {
		limit = 1 << 31
	}
	q := &netlink.Tbf{QdiscAttrs: attrs, Rate: rate, Limit: uint32(limit), Buffer: netlink.Xmittime(rate, uint32(burst))}
	if err := h.QdiscReplace(q); err != nil {
		return fmt.Errorf("rate limit %s to %d bit/s: %w", name, bits, err)
	}
	return nil
}
