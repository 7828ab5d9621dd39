package harness

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// PowerOff takes the node down the way a machine that loses power goes:
// first its link is cut (Cut: peers get no reset and must time out), then
// every process inside it is killed (SIGKILL) and awaited for up to
// timeout, and last the page cache of its disk is dropped (BLKFLSBUF on
// the loop device), so that what runs after PowerOn reads the disk itself
// and not what the killed processes left in memory.
//
// A loop device cannot lose its dirty pages the way a real disk's cache is
// lost: BLKFLSBUF writes them to the backing file before it drops them. A
// test that wants the last writes lost must overwrite them itself (the
// backing file is the node's Disk, seen from the host).
//
// Files the node kept in its tmpfs (NodeDir) stay; storage meant to survive
// a reboot is a directory of the test's own. The node is down until
// PowerOn; nothing is started again by it.
func (n *Node) PowerOff(timeout time.Duration) error {
	if err := n.Cut(); err != nil {
		return fmt.Errorf("power off %s: %w", n.name, err)
	}
	inodes := map[uint64]bool{}
	for _, p := range []string{n.NetNS(), n.MountNS()} {
		if p == "" {
			continue
		}
		if ino := nsInode(p); ino != 0 {
			inodes[ino] = true
		}
	}
	if err := killIn(inodes, timeout, nil); err != nil {
		return fmt.Errorf("power off %s: %w", n.name, err)
	}
	if err := dropCache(n.disk); err != nil {
		return fmt.Errorf("power off %s: %w", n.name, err)
	}
	return nil
}

// PowerOn brings a node back after PowerOff: its link is restored. The
// caller starts whatever the machine runs after its boot.
func (n *Node) PowerOn() error {
	if err := n.Restore(); err != nil {
		return fmt.Errorf("power on %s: %w", n.name, err)
	}
	return nil
}

// dropCache writes a block device's dirty pages and drops its page cache
// (the BLKFLSBUF ioctl, `blockdev --flushbufs`). Pages someone has mapped
// stay.
func dropCache(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open disk %s: %w", dev, err)
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
		return fmt.Errorf("drop page cache of %s (BLKFLSBUF): %w", dev, err)
	}
	return nil
}
