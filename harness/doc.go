// Package harness builds a whole cluster on one Linux box for tests, demos
// and benchmarks of herd.
//
// A cluster is a "golden" network namespace holding a bridge (br0) and N
// node namespaces, each joined to the bridge by a veth pair (eth0 inside the
// node). Every node also has its own mount namespace with a private tmpfs at
// NodeDir, holding NodeDisk: a block device node for that node's own
// loop-backed disk. The same path therefore names a different disk on every
// node, so one herd config (`outfile /run/herd-lab/node/disk`) serves all.
//
// Addresses (default subnet 10.99.0.0/24, all with a broadcast address):
// golden is .1 on br0, node i is .(10+i) on eth0, so node1 is 10.99.0.11.
// Because the bridge lives in the golden namespace and not in the host, two
// clusters never collide even when they use the same subnet.
//
// Links can be shaped (TBF), made lossy (nftables numgen), cut and
// restored; node processes can be killed, frozen and thawed; a whole node
// can be powered off (link cut, every process killed, disk cache dropped)
// and on again; a node's disk can be slowed (blkio throttling).
// Everything is released by Close, by the testing cleanup registered by
// harnesstest.New, on SIGINT/SIGTERM once HandleInterrupts was called, and, after a
// crash, by the next New (every object carries the prefix "herdlab-<name>"
// and a state file under StateDir records what was made).
//
// Usage in a test:
//
//	c := harnesstest.New(t, harness.Config{Nodes: 3, DiskSize: 64 << 20})
//	p, err := c.Nodes()[0].Start(ctx, "sh", "-c", "blockdev --getsize64 "+harness.NodeDisk)
//	require.NoError(t, err)
//	require.NoError(t, p.Wait())
//	fmt.Print(string(p.Stdout()))
//
// Root is required; harnesstest.New skips the test with a message when it is missing.
//
// Public: herd lab, the benches and the end-to-end suites build clusters
// with it; its test helpers are in harness/harnesstest.
package harness
