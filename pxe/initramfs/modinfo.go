package initramfs

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrModule means a kernel module is missing or unreadable.
var ErrModule = errors.New("initramfs: kernel module")

// Modinfo is what herd reads from a module's .modinfo section.
type Modinfo struct {
	// Name is the module's name ("name=").
	Name string
	// Depends are the modules it needs loaded first ("depends=", the
	// list depmod's modules.dep is made of), in order.
	Depends []string
	// SoftPre are the modules it would like loaded first ("softdep=pre:").
	SoftPre []string
	// Aliases are the device patterns it serves ("alias=").
	Aliases []string
	// Firmware are the firmware files it may request ("firmware=").
	Firmware []string
}

// ParseModinfo parses the contents of a module's .modinfo ELF section:
// NUL-separated "key=value" strings.
func ParseModinfo(sec []byte) (Modinfo, error) {
	var mi Modinfo
	for i, kv := range bytes.Split(sec, []byte{0}) {
		if len(kv) == 0 {
			continue
		}
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			return Modinfo{}, fmt.Errorf("%w: modinfo string %d %q has no '='", ErrModule, i, kv)
		}
		switch k {
		case "name":
			mi.Name = v
		case "depends":
			for d := range strings.SplitSeq(v, ",") {
				if d = strings.TrimSpace(d); d == "" {
					continue
				}
				if !moduleName(d) {
					return Modinfo{}, fmt.Errorf("%w: modinfo string %d: dependency %q is not a module name", ErrModule, i, d)
				}
				mi.Depends = append(mi.Depends, d)
			}
		case "softdep":
			// "pre: a b post: c"
			pre := false
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre && moduleName(w) {
						mi.SoftPre = append(mi.SoftPre, w)
					}
				}
			}
		case "alias":
			if v != "" && !strings.ContainsAny(v, " \t\n") {
				mi.Aliases = append(mi.Aliases, v)
			}
		case "firmware":
			if v != "" {
				mi.Firmware = append(mi.Firmware, v)
			}
		}
	}
	return mi, nil
}

// moduleName reports whether s can be a module's name.
func moduleName(s string) bool {
	return len(s) <= 64 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

// readModinfo reads the .modinfo section of the module file at p.
func readModinfo(p string) (Modinfo, error) {
	f, err := elf.Open(p)
	if err != nil {
		return Modinfo{}, fmt.Errorf("%w: open %s: %v", ErrModule, p, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return Modinfo{}, fmt.Errorf("%w: %s has no .modinfo section", ErrModule, p)
	}
	data, err := s.Data()
	if err != nil {
		return Modinfo{}, fmt.Errorf("%w: read .modinfo of %s: %v", ErrModule, p, err)
	}
	mi, err := ParseModinfo(data)
	if err != nil {
		return Modinfo{}, fmt.Errorf("%s: %w", p, err)
	}
	return mi, nil
}

// Module is a kernel module chosen for the initramfs.
type Module struct {
	// Name is the module name ("virtio_net").
	Name string
	// Path is the module file on the build host.
	Path string
	// Rel is the path relative to the modules directory
	// ("kernel/drivers/net/virtio_net.ko").
	Rel string
	// Info is what its .modinfo says.
	Info Modinfo
	// Deps are the modules of the image it needs first: Info.Depends
	// and those of Info.SoftPre the kernel has.
	Deps []string
}

// ResolveModules finds the named modules under modDir (a
// lib/modules/VERSION folder) and returns them with every dependency,
// each once, in an order that loads a dependency before its users and
// otherwise keeps the order asked for. Only uncompressed .ko files are
// supported (Debian 12 kernels ship them so).
func ResolveModules(modDir string, names []string) ([]Module, error) {
	mods, missing, err := resolveModules(modDir, names, func(string) bool { return false })
	if err == nil && len(missing) > 0 {
		err = fmt.Errorf("%w: %s not found under %s", ErrModule, missing[0], modDir)
	}
	return mods, err
}

// resolveModules is ResolveModules; a name asked for that the kernel
// does not have and that optional accepts is returned in missing
// instead of being an error (a missing dependency is always an error).
func resolveModules(modDir string, names []string, optional func(string) bool) (mods []Module, missing []string, err error) {
	index := map[string]string{}
	err = filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			n := strings.ReplaceAll(strings.TrimSuffix(d.Name(), ".ko"), "-", "_")
			if _, dup := index[n]; !dup {
				index[n] = p
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: scan %s: %v", ErrModule, modDir, err)
	}
	var out []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string, chain []string) error
	visit = func(n string, chain []string) error {
		n = strings.ReplaceAll(n, "-", "_")
		switch state[n] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("%w: dependency cycle %s", ErrModule, strings.Join(append(chain, n), " -> "))
		}
		p, ok := index[n]
		if !ok {
			return fmt.Errorf("%w: %s not found under %s (needed by %s)", ErrModule, n, modDir, strings.Join(append(chain, n), " -> "))
		}
		state[n] = 1
		mi, err := readModinfo(p)
		if err != nil {
			return err
		}
		deps := append([]string(nil), mi.Depends...)
		for _, d := range mi.SoftPre {
			if _, ok := index[strings.ReplaceAll(d, "-", "_")]; ok {
				deps = append(deps, d)
			}
		}
		for i, d := range deps {
			deps[i] = strings.ReplaceAll(d, "-", "_")
			if err := visit(d, append(chain, n)); err != nil {
				return err
			}
		}
		state[n] = 2
		rel, _ := filepath.Rel(modDir, p)
		out = append(out, Module{Name: n, Path: p, Rel: filepath.ToSlash(rel), Info: mi, Deps: deps})
		return nil
	}
	for _, n := range names {
		if _, ok := index[strings.ReplaceAll(n, "-", "_")]; !ok && optional(n) {
			missing = append(missing, n)
			continue
		}
		if err := visit(n, nil); err != nil {
			return nil, nil, err
		}
	}
	return out, missing, nil
}

// readFileLimit reads a build input, naming it in the error.
func readInput(what, p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, p, err)
	}
	return b, nil
}
