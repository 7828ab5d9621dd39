// Package sysfs reads the small text attributes of /sys.
//
// Internal: no API.
package sysfs

import (
	"os"
	"strings"
)

// Attr returns the attribute file at path, at most 4 KiB of it, without
// surrounding white space; "" when it cannot be read.
func Attr(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 4096)
	n, _ := f.Read(b)
	return strings.TrimSpace(string(b[:n]))
}
