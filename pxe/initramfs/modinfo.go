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

// ParseModinfo parses the contents of a module's .modinfo ELF section:
// NUL-separated "key=value" strings. It returns the module's name and
// the names of the modules it depends on ("depends="), in order.
func ParseModinfo(sec []byte) (name string, depends []string, err error) {
	for i, kv := range bytes.Split(sec, []byte{0}) {
		if len(kv) == 0 {
			continue
		}
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			return "", nil, fmt.Errorf("%w: modinfo string %d %q has no '='", ErrModule, i, kv)
		}
		switch k {
		case "name":
			name = v
		case "depends":
			for d := range strings.SplitSeq(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					depends = append(depends, d)
				}
			}
		}
	}
	return name, depends, nil
}

// moduleDeps reads the dependencies of the module file at p.
func moduleDeps(p string) ([]string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %v", ErrModule, p, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("%w: %s has no .modinfo section", ErrModule, p)
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("%w: read .modinfo of %s: %v", ErrModule, p, err)
	}
	_, deps, err := ParseModinfo(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return deps, nil
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
}

// ResolveModules finds the named modules under modDir (a
// lib/modules/VERSION folder) and returns them with every dependency,
// each once, in an order that loads a dependency before its users and
// otherwise keeps the order asked for. Only uncompressed .ko files are
// supported (Debian 12 kernels ship them so).
func ResolveModules(modDir string, names []string) ([]Module, error) {
	index := map[string]string{}
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
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
		return nil, fmt.Errorf("%w: scan %s: %v", ErrModule, modDir, err)
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
		deps, err := moduleDeps(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, n)); err != nil {
				return err
			}
		}
		state[n] = 2
		rel, _ := filepath.Rel(modDir, p)
		out = append(out, Module{Name: n, Path: p, Rel: filepath.ToSlash(rel)})
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readFileLimit reads a build input, naming it in the error.
func readInput(what, p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, p, err)
	}
	return b, nil
}
