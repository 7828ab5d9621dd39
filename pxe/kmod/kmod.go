// Package kmod decides which kernel modules a machine needs and loads
// them, as udev and modprobe would, inside herd's initramfs (which has
// neither). "herd initramfs build" writes an Index of the modules the
// image holds: for each its file, its dependencies and the device
// aliases it serves (from the modules' own .modinfo). At boot the agent
// reads the modalias of every device under /sys, loads the modules whose
// aliases match (dependencies first), and repeats until no new device
// asks for a module: a bus driver (virtio_pci, a SAS controller) makes
// the devices behind it appear, which then ask for theirs.
//
// The index and the matching hold no I/O and are tested without a
// kernel; Loader does the I/O (sysfs, finit_module) on Linux.
//
// Usage:
//
//	idx, err := kmod.Parse(data)                  // /etc/herd/modules.idx
//	names := idx.Match("pci:v00008086d000010D3sv…") // ["e1000e"]
//	order, err := idx.Order(names)                // dependencies first
//
// Public: the index format is what a site's own image builder writes to
// use herd's agent with its own kernel.
package kmod

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
)

// ErrIndex means an index file is malformed; the error names the line.
var ErrIndex = errors.New("kmod: bad module index")

// ErrModule means a module, or one it depends on, is not in the index,
// or the dependencies form a cycle.
var ErrModule = errors.New("kmod: module")

// MaxIndexSize bounds an index file (a full Debian kernel's is ~2 MiB).
const MaxIndexSize = 16 << 20

// header is the first line of every index file.
const header = "# herd module index v1"

// Module is one module of the image.
type Module struct {
	// Name is the module's name with '-' as '_' ("virtio_net").
	Name string
	// Path is the module file relative to lib/modules/VERSION.
	Path string
	// Deps are the modules it needs loaded first.
	Deps []string
	// Always means load it whatever the hardware (loop, for example).
	Always bool
}

// Alias maps a device alias pattern (shell glob, as in modules.alias)
// to the module that serves it.
type Alias struct {
	Pattern, Module string
}

// Index is the set of modules an image holds and the aliases that
// select them.
type Index struct {
	Modules map[string]*Module
	Aliases []Alias
}

// Name normalizes a module name: '-' and '_' are the same to the kernel.
func Name(s string) string { return strings.ReplaceAll(s, "-", "_") }

// Add records m (replacing a module of the same name).
func (x *Index) Add(m Module) {
	if x.Modules == nil {
		x.Modules = map[string]*Module{}
	}
	m.Name = Name(m.Name)
	for i, d := range m.Deps {
		m.Deps[i] = Name(d)
	}
	x.Modules[m.Name] = &m
}

// AddAlias records that pattern selects module.
func (x *Index) AddAlias(pattern, module string) {
	x.Aliases = append(x.Aliases, Alias{Pattern: pattern, Module: Name(module)})
}

// Format writes the index as text: a header line, then one line per
// module ("module NAME PATH [DEP,DEP…]", "always NAME") and per alias
// ("alias PATTERN NAME"), sorted, so the same index gives the same bytes.
func (x *Index) Format() []byte {
	var b bytes.Buffer
	b.WriteString(header + "\n")
	names := make([]string, 0, len(x.Modules))
	for n := range x.Modules {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m := x.Modules[n]
		fmt.Fprintf(&b, "module %s %s", m.Name, m.Path)
		if len(m.Deps) > 0 {
			fmt.Fprintf(&b, " %s", strings.Join(m.Deps, ","))
		}
		b.WriteByte('\n')
		if m.Always {
			fmt.Fprintf(&b, "always %s\n", m.Name)
		}
	}
	as := append([]Alias(nil), x.Aliases...)
	sort.Slice(as, func(i, j int) bool {
		if as[i].Module != as[j].Module {
			return as[i].Module < as[j].Module
		}
		return as[i].Pattern < as[j].Pattern
	})
	for _, a := range as {
		fmt.Fprintf(&b, "alias %s %s\n", a.Pattern, a.Module)
	}
	return b.Bytes()
}

// Parse reads an index written by Format. Every alias and dependency
// must name a module of the index; errors name the line.
func Parse(data []byte) (*Index, error) {
	if len(data) > MaxIndexSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrIndex, len(data), MaxIndexSize)
	}
	x := &Index{Modules: map[string]*Module{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 64<<10)
	line := 0
	var always []string
	for sc.Scan() {
		line++
		text := sc.Text()
		if line == 1 {
			if text != header {
				return nil, fmt.Errorf("%w: line 1: want %q", ErrIndex, header)
			}
			continue
		}
		f := strings.Fields(text)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		bad := func(why string) error { return fmt.Errorf("%w: line %d: %s: %q", ErrIndex, line, why, text) }
		switch f[0] {
		case "module":
			if len(f) < 3 || len(f) > 4 {
				return nil, bad("want module NAME PATH [DEPS]")
			}
			if !validName(f[1]) || !validPath(f[2]) {
				return nil, bad("bad name or path")
			}
			m := Module{Name: Name(f[1]), Path: f[2]}
			if _, dup := x.Modules[m.Name]; dup {
				return nil, bad("module listed twice")
			}
			if len(f) == 4 {
				for d := range strings.SplitSeq(f[3], ",") {
					if !validName(d) {
						return nil, bad("bad dependency name")
					}
					m.Deps = append(m.Deps, Name(d))
				}
			}
			x.Modules[m.Name] = &m
		case "always":
			if len(f) != 2 || !validName(f[1]) {
				return nil, bad("want always NAME")
			}
			always = append(always, Name(f[1]))
		case "alias":
			if len(f) != 3 || !validName(f[2]) {
				return nil, bad("want alias PATTERN NAME")
			}
			if _, err := path.Match(f[1], ""); err != nil {
				return nil, bad("bad pattern")
			}
			x.Aliases = append(x.Aliases, Alias{Pattern: f[1], Module: Name(f[2])})
		default:
			return nil, bad("unknown record")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: line %d: %v", ErrIndex, line+1, err)
	}
	if line == 0 {
		return nil, fmt.Errorf("%w: empty", ErrIndex)
	}
	for _, n := range always {
		m, ok := x.Modules[n]
		if !ok {
			return nil, fmt.Errorf("%w: always %s: no such module", ErrIndex, n)
		}
		m.Always = true
	}
	for _, a := range x.Aliases {
		if _, ok := x.Modules[a.Module]; !ok {
			return nil, fmt.Errorf("%w: alias %s: no module %s", ErrIndex, a.Pattern, a.Module)
		}
	}
	for _, m := range x.Modules {
		for _, d := range m.Deps {
			if _, ok := x.Modules[d]; !ok {
				return nil, fmt.Errorf("%w: module %s needs %s, which is not in the index", ErrIndex, m.Name, d)
			}
		}
	}
	return x, nil
}

func validName(s string) bool {
	return s != "" && len(s) <= 64 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

func validPath(s string) bool {
	return s != "" && len(s) <= 512 && strings.HasSuffix(s, ".ko") && !strings.HasPrefix(s, "/") &&
		path.Clean(s) == s && !strings.HasPrefix(s, "../") && s != ".."
}

// Match returns the modules whose aliases match the device alias
// modalias (as read from /sys/…/modalias), each once, sorted.
func (x *Index) Match(modalias string) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range x.Aliases {
		if seen[a.Module] {
			continue
		}
		if ok, _ := path.Match(a.Pattern, modalias); ok {
			seen[a.Module] = true
			out = append(out, a.Module)
		}
	}
	sort.Strings(out)
	return out
}

// Always returns the modules to load whatever the hardware, sorted.
func (x *Index) Always() []string {
	var out []string
	for n, m := range x.Modules {
		if m.Always {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Order returns names with every dependency, each once, dependencies
// before the modules that need them, otherwise in the order given.
func (x *Index) Order(names []string) ([]*Module, error) {
	var out []*Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string, chain []string) error
	visit = func(n string, chain []string) error {
		n = Name(n)
		switch state[n] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("%w: dependency cycle %s", ErrModule, strings.Join(append(chain, n), " -> "))
		}
		m, ok := x.Modules[n]
		if !ok {
			return fmt.Errorf("%w: %s is not in the image (needed by %s)", ErrModule, n, strings.Join(append(chain, n), " -> "))
		}
		state[n] = 1
		for _, d := range m.Deps {
			if err := visit(d, append(chain, n)); err != nil {
				return err
			}
		}
		state[n] = 2
		out = append(out, m)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}
