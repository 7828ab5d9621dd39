// Package e2e holds end-to-end suites (Ginkgo v2 and Gomega) that run the
// real herd binary on a whole cluster built by package harness: herd recv in
// every node, herd send from golden, and checks of what every node wrote.
//
// The suites: raw and Dolly+ clones (clone_test.go); issue #4, nothing
// stops the chain (faults_test.go: a node killed first, middle or last,
// frozen, cut off, killed during set-up or its final sync, two adjacent
// nodes, a second kill right after a bypass; slow_rejoin_test.go: a slow
// disk moved to the tail or dropped, a slow last node fed from its
// upstream's output, a slow node of a cooked (image.gz >> disk) session fed
// by the source aside, a restarted herd recv and a rebooted machine (with
// and without --state) taken back, a node that never comes back not
// waited for, herd send itself restarted with --resume; slowlink_test.go: a
// slow card moved or dropped); issue #5, only used blocks on the wire
// (usedonly_test.go: a 2 GiB ext4 disk with ~280 MB of files, fsck and file
// trees compared); issue #6, file-level clones (files_test.go).
// Faults are triggered from herd send's --json progress lines and the
// nodes' TCP tables, not from timers.
//
// Run them like any Go tests (root needed, they skip without it):
//
//	go test -v ./e2e/...
//	go test ./e2e/... -ginkgo.focus="raw clone"
//
// The suite builds bin/herd into a temporary folder first, so it always
// tests the tree it runs in; HERD_E2E_BIN=/path/to/herd tests that binary
// instead.
package e2e
