package filelevel

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// VerifyItemName is the name of a file-level session's last item when
// the sender sends the digests of the golden files (Header.Verify).
const VerifyItemName = "herd-files.verify"

// ErrSumLine is wrapped by errors about a line of the digest list.
var ErrSumLine = errors.New("filelevel: bad digest line")

// FileSum is the BLAKE3 digest of one regular file of the golden system
// (its logical contents: holes read as zeros).
type FileSum struct {
	Mount string   // mount point of the filesystem holding it ("/var")
	Path  string   // path inside that filesystem ("log/syslog")
	Size  int64    // bytes
	Sum   [32]byte // BLAKE3-256
}

// MarshalText formats s as one line of the digest list (with its
// newline): hex digest, size, then the mount point and the path quoted
// like Go strings, so any name fits on one line.
func (s FileSum) MarshalText() ([]byte, error) {
	return fmt.Appendf(nil, "%x %d %s %s\n", s.Sum, s.Size, strconv.Quote(s.Mount), strconv.Quote(s.Path)), nil
}

// ParseFileSum reads one line of the digest list (without its newline).
func ParseFileSum(line string) (FileSum, error) {
	var s FileSum
	bad := func(what string) (FileSum, error) {
		return FileSum{}, fmt.Errorf("%w: %s in %.80q", ErrSumLine, what, line)
	}
	h, rest, ok := strings.Cut(line, " ")
	if !ok || len(h) != 64 {
		return bad("no 64-digit digest")
	}
	if _, err := hex.Decode(s.Sum[:], []byte(h)); err != nil {
		return bad("digest is not hex")
	}
	n, rest, ok := strings.Cut(rest, " ")
	size, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || size < 0 || strings.HasPrefix(n, "+") {
		return bad("no size")
	}
	s.Size = size
	q, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return bad("no quoted mount point")
	}
	s.Mount, _ = strconv.Unquote(q)
	rest, ok = strings.CutPrefix(rest[len(q):], " ")
	if !ok {
		return bad("no path")
	}
	q, err = strconv.QuotedPrefix(rest)
	if err != nil || len(q) != len(rest) {
		return bad("no quoted path")
	}
	s.Path, _ = strconv.Unquote(q)
	return s, nil
}
