package fsmap

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ParseError is a syntax error in a text map, with its 1-based line.
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("fsmap: line %d: %s", e.Line, e.Msg) }

// ParseDomain reads a ddrescue domain (map) file as written by
// `partclone.<fs> -D -s DEV -o FILE` and returns the ranges marked '+'
// (used), normalized. Lines starting with '#' are comments; the first other
// line is the "current_pos current_status" line; every later line is
// "pos size status" with hexadecimal (0x) or decimal numbers.
func ParseDomain(r io.Reader) ([]Extent, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	var ext []Extent
	line, seenPos := 0, false
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || t[0] == '#' {
			continue
		}
		f := strings.Fields(t)
		if !seenPos {
			if len(f) < 2 {
				return nil, &ParseError{line, fmt.Sprintf("want \"current_pos status\", got %q", t)}
			}
			if _, err := parseNum(f[0]); err != nil {
				return nil, &ParseError{line, fmt.Sprintf("current position %q: %v", f[0], err)}
			}
			seenPos = true
			continue
		}
		if len(f) != 3 || len(f[2]) != 1 {
			return nil, &ParseError{line, fmt.Sprintf("want \"pos size status\", got %q", t)}
		}
		pos, err := parseNum(f[0])
		if err != nil {
			return nil, &ParseError{line, fmt.Sprintf("position %q: %v", f[0], err)}
		}
		n, err := parseNum(f[1])
		if err != nil {
			return nil, &ParseError{line, fmt.Sprintf("size %q: %v", f[1], err)}
		}
		if pos+n < pos {
			return nil, &ParseError{line, "range overflows"}
		}
		if !strings.ContainsAny(f[2], "+?*/-") {
			return nil, &ParseError{line, fmt.Sprintf("unknown status %q", f[2])}
		}
		if f[2] == "+" {
			ext = append(ext, Extent{pos, n})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fsmap: read domain map: %w", err)
	}
	if !seenPos {
		return nil, &ParseError{line, "empty domain map"}
	}
	return Normalize(ext, -1), nil
}

func parseNum(s string) (int64, error) {
	base := 10
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		s, base = s[2:], 16
	}
	v, err := strconv.ParseInt(s, base, 64)
	if err == nil && v < 0 {
		return 0, fmt.Errorf("negative")
	}
	return v, err
}

// Probe names the filesystem in r by its signature: "ext2", "ext3", "ext4",
// "fat" (12/16/32), "xfs", "btrfs", "ntfs", "exfat", "f2fs", "hfsplus", or
// "" when none matches. The names other than ext and fat are partclone's.
func Probe(r io.ReaderAt) string {
	sig := func(off int64, want string) bool {
		b := make([]byte, len(want))
		_, err := r.ReadAt(b, off)
		return err == nil && bytes.Equal(b, []byte(want))
	}
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, extSuperOff); err == nil {
		if s, err := parseExtSuper(sb, -1); err == nil {
			return s.fsName
		}
	}
	switch {
	case sig(3, "NTFS    "):
		return "ntfs"
	case sig(3, "EXFAT   "):
		return "exfat"
	case IsFAT(r):
		return "fat"
	case sig(0, "XFSB"):
		return "xfs"
	case sig(0x10040, "_BHRfS_M"):
		return "btrfs"
	case sig(0x400, "\x10\x20\xF5\xF2"):
		return "f2fs"
	case sig(0x400, "H+"), sig(0x400, "HX"):
		return "hfsplus"
	}
	return ""
}

// Detect reads the native used-block map of the ext2/3/4 or FAT filesystem
// in r. It returns ErrUnknownFS for anything else.
func Detect(r io.ReaderAt, size int64) (*Map, error) {
	if IsExt(r) {
		return ExtMap(r, size)
	}
	if IsFAT(r) {
		return FATMap(r, size)
	}
	return nil, ErrUnknownFS
}
