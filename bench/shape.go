package main

import (
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/herd-cluster/herd/harness"
)

// tbfWindow is how much traffic the bench's token buckets let through in
// one burst, and how much more they queue: 50 ms of the rate. The
// harness's own SetRate allows 10 ms; on a loaded two-core host the
// qdisc's softirq work is sometimes delayed by more than that, and the
// tokens that overflow a small bucket are lost for good, so a link shaped
// to R then carries less than R. A 50 ms bucket absorbs such gaps; over a
// run of S seconds it lets at most 0.05/S more than the rate through
// (0.3 % for 15 s).
const tbfWindow = 50 * time.Millisecond

// tbfParams returns the bucket of a TBF at bits per second: rate and
// burst in bytes, and the queue limit in bytes.
func tbfParams(bits uint64) (rate, burst, limit uint64) {
	rate = bits / 8
	burst = max(uint64(float64(rate)*tbfWindow.Seconds()), 64<<10) // at least one GSO frame
	limit = min(burst+uint64(float64(rate)*tbfWindow.Seconds()), 1<<31)
	return rate, burst, limit
}

// shape sets every node's link to bits per second in both directions: the
// harness's SetRate (its shaping, or none for 0), then, for bits > 0, the
// bench's TBF (see tbfWindow) in its place on the same two interfaces:
// eth0 in the node and the node's bridge port ("v" + name) in golden.
func shape(c *harness.Cluster, bits uint64) error {
	for _, n := range c.Nodes() {
		if err := n.SetRate(bits); err != nil {
			return err
		}
		if bits == 0 {
			continue
		}
		if err := replaceTBF(n.NetNS(), "eth0", bits); err != nil {
			return fmt.Errorf("%s: %w", n.Name(), err)
		}
		if err := replaceTBF(c.Golden().NetNS(), "v"+n.Name(), bits); err != nil {
			return fmt.Errorf("%s: %w", n.Name(), err)
		}
	}
	return nil
}

// replaceTBF replaces the root qdisc of link in the network namespace
// pinned at nsPath with a TBF at bits per second.
func replaceTBF(nsPath, link string, bits uint64) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("find link %s: %w", link, err)
	}
	rate, burst, limit := tbfParams(bits)
	q := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       rate, Limit: uint32(limit), Buffer: netlink.Xmittime(rate, uint32(burst)),
	}
	if err := h.QdiscReplace(q); err != nil {
		return fmt.Errorf("rate limit %s to %d bit/s: %w", link, bits, err)
	}
	return nil
}
