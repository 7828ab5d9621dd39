package filelevel

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/herd-cluster/herd/desc"
)

// HeaderItemName is the name of a file-level session's first item, the
// header, and the prefix of its later items' names.
const HeaderItemName = "herd-files.header"

// HeaderVersion is the header version this package writes and reads.
const HeaderVersion = 1

// maxHeader bounds the header item a node accepts.
const maxHeader = 1 << 20

// ErrHeader is wrapped by errors about a session's header item.
var ErrHeader = errors.New("filelevel: bad session header")

// Header is the first item of a file-level session: the desc every node
// lays out for its own disk, and the mount point each later item
// (one tar stream per filesystem) unpacks into, in item order.
type Header struct {
	Version int    `json:"version"`
	Desc    string `json:"desc"`
	// Mounts[i] is the mount point of item i+1 ("/", "/var"...).
	Mounts []string `json:"mounts"`
	// Golden is the golden node's host name, for logs.
	Golden string `json:"golden,omitempty"`
	// Verify says a last item follows the filesystems: the digest list
	// of the golden files (VerifyItemName), which nodes check their
	// unpacked files against.
	Verify bool `json:"verify,omitempty"`
}

// Dests returns the Dest every item of the session has, in order: the
// header, the mount points, then the digest list when Verify is set.
func (h *Header) Dests() []string {
	d := append([]string{headerDest}, h.Mounts...)
	if h.Verify {
		d = append(d, verifyDest)
	}
	return d
}

// IsSessionItem reports whether an item name belongs to a file-level
// session (a node not set up for one should refuse every such item).
func IsSessionItem(name string) bool {
	return name == HeaderItemName || name == VerifyItemName || strings.HasPrefix(name, fsItemPrefix)
}

// fsItemPrefix starts the names of the filesystem items ("files:/var").
const fsItemPrefix = "files:"

// Dests of the header and digest list items.
const (
	headerDest = "header"
	verifyDest = "verify"
)

// Encode returns h as the bytes of the header item.
func (h *Header) Encode() ([]byte, error) {
	if _, err := h.check(); err != nil {
		return nil, err
	}
	return json.Marshal(h)
}

// DecodeHeader parses and checks a header item: version, desc syntax,
// and that every mount point is a mounted filesystem of the desc, each
// once, parents before children.
func DecodeHeader(b []byte) (*Header, *desc.Desc, error) {
	if len(b) > maxHeader {
		return nil, nil, fmt.Errorf("%w: %d bytes, more than %d", ErrHeader, len(b), maxHeader)
	}
	var h Header
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	d, err := h.check()
	if err != nil {
		return nil, nil, err
	}
	return &h, d, nil
}

// check validates h and returns its parsed desc.
func (h *Header) check() (*desc.Desc, error) {
	if h.Version != HeaderVersion {
		return nil, fmt.Errorf("%w: version %d, this herd reads %d", ErrHeader, h.Version, HeaderVersion)
	}
	d, err := desc.Parse(h.Desc)
	if err != nil {
		return nil, fmt.Errorf("%w: desc: %w", ErrHeader, err)
	}
	mounts := MountedParts(d)
	seen := map[string]bool{}
	for i, m := range h.Mounts {
		if m != path.Clean("/"+m) {
			return nil, fmt.Errorf("%w: item %d: mount point %q is not a clean absolute path", ErrHeader, i+1, m)
		}
		if seen[m] {
			return nil, fmt.Errorf("%w: item %d: mount point %s listed twice", ErrHeader, i+1, m)
		}
		if _, ok := mounts[m]; !ok {
			return nil, fmt.Errorf("%w: item %d: %s is not the mount point of a filesystem in the desc", ErrHeader, i+1, m)
		}
		seen[m] = true
	}
	for i, m := range h.Mounts {
		if m == "/" {
			continue
		}
		// The filesystem holding m must be unpacked before m is.
		if pm := parentMount(path.Dir(m), mounts); pm != "" && seen[pm] && indexOf(h.Mounts, pm) > i {
			return nil, fmt.Errorf("%w: item %d: %s comes before %s, the filesystem holding it", ErrHeader, i+1, m, pm)
		}
	}
	return d, nil
}

// parentMount returns the longest key of set that is dir or one of its
// parents ("" when none).
func parentMount[V any](dir string, set map[string]V) string {
	for {
		if _, ok := set[dir]; ok {
			return dir
		}
		if dir == "/" || dir == "." || dir == "" {
			return ""
		}
		dir = path.Dir(dir)
	}
}

// MountedParts returns the parts of d that get a filesystem mounted for
// the copy, by clean mount point. Swap and parts without a filesystem
// are not mounted, whatever their mount= says.
func MountedParts(d *desc.Desc) map[string]desc.Part {
	m := map[string]desc.Part{}
	for _, p := range d.Parts {
		fs := p.Filesystem()
		if p.Mount == "" || fs == "swap" || fs == "none" || p.Type.IsExtended() {
			continue
		}
		m[path.Clean("/"+p.Mount)] = p
	}
	return m
}

// MountOrder returns the mount points of d's mounted parts, parents
// before children ("/" first).
func MountOrder(d *desc.Desc) []string {
	var ms []string
	for m := range MountedParts(d) {
		ms = append(ms, m)
	}
	sortMounts(ms)
	return ms
}

// sortMounts sorts mount points by depth, then by name.
func sortMounts(ms []string) {
	depth := func(m string) int {
		if m == "/" {
			return 0
		}
		return strings.Count(m, "/")
	}
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && (depth(ms[j]) < depth(ms[j-1]) || depth(ms[j]) == depth(ms[j-1]) && ms[j] < ms[j-1]); j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}

func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}
