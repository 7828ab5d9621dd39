// Package ipmitool reads what ipmitool says, for the bmc package and the
// test BMC of package qemu. It is internal: no API.
package ipmitool

import "strings"

// Failed reports whether ipmitool's standard error tells of a failure: a
// line with "failed", or one that starts with "error" or "unable".
// ipmitool exits 0 after some refused requests, so its exit code alone
// does not tell; other messages on its standard error are no failure.
func Failed(stderr string) bool {
	for _, line := range strings.Split(stderr, "\n") {
		l := strings.ToLower(strings.TrimSpace(line))
		if strings.Contains(l, "failed") || strings.HasPrefix(l, "error") || strings.HasPrefix(l, "unable") {
			return true
		}
	}
	return false
}
