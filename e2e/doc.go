// Package e2e holds end-to-end suites (Ginkgo v2 and Gomega) that run the
// real herd binary on a whole cluster built by package harness: herd recv in
// every node, herd send from golden, and checks of what every node wrote.
//
// Run them like any Go tests (root needed, they skip without it):
//
//	go test -v ./e2e/...
//	go test ./e2e/... -ginkgo.focus="raw clone"
//
// The suite builds bin/herd into a temporary folder first, so it always
// tests the tree it runs in; HERD_E2E_BIN=/path/to/herd tests that binary
// instead. Specs of features not in herd yet are skipped with a message
// starting "PENDING"; HERD_E2E_PENDING=1 runs them.
package e2e
