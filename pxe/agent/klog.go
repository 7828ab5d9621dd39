package agent

import (
	"strings"

	"golang.org/x/sys/unix"
)

// KernelLog returns the last n lines of the kernel's log buffer (what
// dmesg prints), without their <level> prefixes; none when it cannot be
// read.
func KernelLog(n int) []string {
	size, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil || size <= 0 {
		return nil
	}
	buf := make([]byte, min(size, 4<<20))
	got, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil || got <= 0 {
		return nil
	}
	return tailLines(string(buf[:got]), n)
}

// tailLines returns the last n non-empty lines of log, each without a
// leading "<N>" syslog level.
func tailLines(log string, n int) []string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	var out []string
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		l := lines[i]
		if len(l) > 2 && l[0] == '<' {
			if j := strings.IndexByte(l, '>'); j > 0 && j < 5 {
				l = l[j+1:]
			}
		}
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
