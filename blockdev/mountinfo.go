package blockdev

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	ID, Parent   int    // mount IDs: this mount's and the one it sits on
	Major, Minor uint32 // st_dev of the mounted filesystem
	Root         string // the path of the filesystem mounted here (a bind's source)
	Point        string // mount point
	Options      string // per-mount options, e.g. "rw,relatime"
	Shared       bool   // propagation: in a peer group ("shared:N")
	FSType       string
	Source       string // e.g. /dev/sda1
}

// ParseMountinfo parses the format of /proc/self/mountinfo (see proc(5)).
// Octal escapes (\040 for a space) in paths are decoded. A malformed line is
// reported with its number.
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		t := sc.Text()
		if strings.TrimSpace(t) == "" {
			continue
		}
		f := strings.Fields(t)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 7 || sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("blockdev: mountinfo line %d: too few fields", line)
		}
		id, err1 := strconv.Atoi(f[0])
		parent, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("blockdev: mountinfo line %d: bad mount IDs %q %q", line, f[0], f[1])
		}
		maj, min, ok := strings.Cut(f[2], ":")
		a, err1 := strconv.ParseUint(maj, 10, 32)
		b, err2 := strconv.ParseUint(min, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("blockdev: mountinfo line %d: bad device %q", line, f[2])
		}
		m := Mount{
			ID: id, Parent: parent,
			Major: uint32(a), Minor: uint32(b),
			Root:    unescapeOctal(f[3]),
			Point:   unescapeOctal(f[4]),
			Options: f[5],
			FSType:  f[sep+1],
			Source:  unescapeOctal(f[sep+2]),
		}
		for _, opt := range f[6:sep] {
			if strings.HasPrefix(opt, "shared:") {
				m.Shared = true
			}
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("blockdev: read mountinfo: %w", err)
	}
	return out, nil
}

// ReadOnly reports whether the mount is read-only.
func (m Mount) ReadOnly() bool {
	for _, o := range strings.Split(m.Options, ",") {
		if o == "ro" {
			return true
		}
	}
	return false
}

// ParseSwaps returns the file names listed in /proc/swaps.
func ParseSwaps(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if line == 1 || len(f) == 0 {
			continue // header "Filename Type Size Used Priority"
		}
		out = append(out, unescapeOctal(f[0]))
	}
	return out, sc.Err()
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
