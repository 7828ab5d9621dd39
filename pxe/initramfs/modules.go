package initramfs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/herd-cluster/herd/pxe/kmod"
)

// addModules stores mods under lib/modules/VERSION in t and returns the
// index the agent loads them from: each module's file, dependencies and
// device aliases; always marks those loaded whatever the hardware.
func addModules(t *Tree, version string, mods []Module, always []string) (*kmod.Index, error) {
	var idx kmod.Index
	for _, m := range mods {
		data, err := readInput("module", m.Path)
		if err != nil {
			return nil, err
		}
		if err := t.File("lib/modules/"+version+"/"+m.Rel, 0o644, data); err != nil {
			return nil, err
		}
		idx.Add(kmod.Module{Name: m.Name, Path: m.Rel, Deps: append([]string(nil), m.Deps...)})
		for _, a := range m.Info.Aliases {
			idx.AddAlias(a, m.Name)
		}
	}
	for _, a := range always {
		if m, ok := idx.Modules[kmod.Name(a)]; ok {
			m.Always = true
		}
	}
	// What the agent will parse must parse: a module name or alias the
	// index format cannot hold is a build error, not a boot failure.
	if _, err := kmod.Parse(idx.Format()); err != nil {
		return nil, fmt.Errorf("initramfs: module index: %w", err)
	}
	return &idx, nil
}

// addFirmware copies the regular files under dir into lib/firmware of
// t, keeping their paths, and returns those paths. An empty dir adds
// nothing.
func addFirmware(t *Tree, dir string) ([]string, error) {
	if dir == "" {
		return nil, nil
	}
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			if rel != "." {
				return t.Dir("lib/firmware/"+rel, 0o755)
			}
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("initramfs: firmware %s is not a regular file", p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, rel)
		return t.File("lib/firmware/"+rel, 0o644, data)
	})
	if err != nil {
		return nil, fmt.Errorf("initramfs: firmware folder %s: %w", dir, err)
	}
	sort.Strings(out)
	return out, nil
}

// wantedFirmware lists, as "module: file", the firmware files the
// modules declare that are not among have.
func wantedFirmware(mods []Module, have []string) []string {
	got := map[string]bool{}
	for _, h := range have {
		got[h] = true
	}
	var out []string
	for _, m := range mods {
		for _, f := range m.Info.Firmware {
			if !got[f] && !strings.Contains(f, "*") {
				out = append(out, m.Name+": "+f)
			}
		}
	}
	return out
}
