package blockdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Confinement is where a receiving node lets itself write, whatever the
// sender names: everything under Root (each destination is taken inside
// it; block devices excepted), and what Allow names (a block device
// only when a pattern names it). With both, a destination must satisfy
// both. The zero value allows nothing. herd recv builds it from --root
// and --allow.
type Confinement struct {
	// Root is absolute with its symbolic links resolved; "" for none.
	Root  string
	Allow *AllowList // nil for none
}

// NewConfinement checks root (an existing directory, "" for none) and
// parses the allow patterns (none: nil). Its errors name what is wrong
// with which.
func NewConfinement(root string, allow []string) (Confinement, error) {
	var c Confinement
	if root != "" {
		abs, err := filepath.Abs(root)
		if err == nil {
			abs, err = filepath.EvalSymlinks(abs)
		}
		if err != nil {
			return c, fmt.Errorf("root %s: %w", root, err)
		}
		if st, err := os.Stat(abs); err != nil || !st.IsDir() {
			return c, fmt.Errorf("root %s is not a directory", root)
		}
		c.Root = abs
	}
	if len(allow) > 0 {
		l, err := ParseAllowList(allow)
		if err != nil {
			return c, fmt.Errorf("allow: %w", err)
		}
		c.Allow = l
	}
	return c, nil
}

// AllowsNothing reports whether c has neither a root nor an allow list.
func (c Confinement) AllowsNothing() bool { return c.Root == "" && c.Allow == nil }

// String says where c lets the node write, for messages.
func (c Confinement) String() string {
	var s []string
	if c.Root != "" {
		s = append(s, "under --root "+c.Root)
	}
	if c.Allow != nil {
		s = append(s, "--allow "+c.Allow.String())
	}
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, " and ")
}

// Target returns the real path where an item whose destination is dest
// is written, and whether it may be a block device (an allow pattern
// names it, not a directory pattern above it): dest is taken inside Root
// when set, its symbolic links are resolved, and the result must lie
// under Root and match Allow (each when set). The error wraps
// ErrNotAllowed and names dest and the rule that refused it; nothing
// has been created then. Callers open the returned path, never dest.
func (c Confinement) Target(dest string) (real string, device bool, err error) {
	p := dest
	if c.Root != "" {
		p = filepath.Join(c.Root, filepath.Clean("/"+dest))
	} else if !filepath.IsAbs(dest) {
		return "", false, fmt.Errorf("refused: destination %q is not an absolute path (this node has no --root): %w", dest, ErrNotAllowed)
	}
	if c.Allow != nil {
		real, err = c.Allow.Check(p)
	} else {
		real, err = ResolvePath(p)
	}
	switch {
	case errors.Is(err, ErrNotAllowed):
		return "", false, fmt.Errorf("refused by this node's --allow: destination %w", err)
	case err != nil:
		return "", false, fmt.Errorf("refused: destination %s: %w", dest, err)
	case c.Root != "" && real != c.Root && !strings.HasPrefix(real, c.Root+string(filepath.Separator)):
		return "", false, fmt.Errorf("refused: destination %s resolves to %s, outside --root %s: %w", dest, real, c.Root, ErrNotAllowed)
	case c.AllowsNothing():
		return "", false, fmt.Errorf("refused: destination %s: this node allows nothing (no --allow, no --root): %w", dest, ErrNotAllowed)
	}
	return real, c.Allow.AllowsDevice(real), nil
}
