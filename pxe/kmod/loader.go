package kmod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/herd-cluster/herd/internal/sysfs"
)

// Loader loads the modules a machine's devices ask for.
type Loader struct {
	// Index lists the modules of the image (required).
	Index *Index
	// Dir is the lib/modules/VERSION folder the index's paths are
	// relative to (required).
	Dir string
	// Sys is where sysfs is mounted (default "/sys").
	Sys string
	// Insert loads one module file; the default is finit_module(2),
	// with "already loaded" not an error. Tests replace it.
	Insert func(path string) error
	// Settle is how long to wait after a round that loaded modules,
	// for the devices behind them to appear (default 1 s).
	Settle time.Duration
	// Rounds bounds the scan-and-load rounds (default 8).
	Rounds int
	// Logf receives one line per module loaded or failed (optional).
	Logf func(format string, args ...any)
}

// Result says what a Loader did.
type Result struct {
	// Loaded are the modules loaded, in load order.
	Loaded []string
	// Failed maps a module to why it could not be loaded (its
	// dependents are then not tried).
	Failed map[string]error
	// Unclaimed are the PCI devices no module of the image serves, as
	// "pci 0000:00:02.0 8086:10d3 class 020000".
	Unclaimed []string
}

// Run scans the devices and loads their modules, round after round,
// until a round loads nothing new (or Rounds is reached). A module that
// fails to load is reported in the result, not as an error: the
// machine may not need it. The error is for a missing sysfs or a
// cancelled ctx.
func (l *Loader) Run(ctx context.Context) (*Result, error) {
	if l.Index == nil || l.Dir == "" {
		return nil, errors.New("kmod: loader needs an index and a module folder")
	}
	sys := l.Sys
	if sys == "" {
		sys = "/sys"
	}
	insert := l.Insert
	if insert == nil {
		insert = insertModule
	}
	settle := l.Settle
	if settle == 0 {
		settle = time.Second
	}
	rounds := l.Rounds
	if rounds == 0 {
		rounds = 8
	}
	res := &Result{Failed: map[string]error{}}
	done := map[string]bool{}
	for round := 0; round < rounds; round++ {
		devs, err := Devices(sys)
		if err != nil {
			return res, err
		}
		want := l.Index.Always()
		for _, d := range devs {
			want = append(want, l.Index.Match(d.Alias)...)
		}
		loaded := 0
		for _, name := range want {
			if done[name] {
				continue
			}
			order, err := l.Index.Order([]string{name})
			if err != nil {
				done[name] = true
				res.Failed[name] = err
				continue
			}
			for _, m := range order {
				if done[m.Name] {
					if _, failed := res.Failed[m.Name]; failed {
						done[name] = true
						res.Failed[name] = fmt.Errorf("needs %s, which failed", m.Name)
						break
					}
					continue
				}
				done[m.Name] = true
				if err := insert(filepath.Join(l.Dir, m.Path)); err != nil {
					res.Failed[m.Name] = err
					l.logf("module %s: %v", m.Name, err)
					if m.Name != name {
						done[name] = true
						res.Failed[name] = fmt.Errorf("needs %s, which failed", m.Name)
					}
					break
				}
				loaded++
				res.Loaded = append(res.Loaded, m.Name)
			}
		}
		if loaded == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(settle):
		}
	}
	devs, err := Devices(sys)
	if err != nil {
		return res, err
	}
	for _, d := range devs {
		if d.Bus == "pci" && !d.Bound {
			res.Unclaimed = append(res.Unclaimed, d.String())
		}
	}
	return res, nil
}

func (l *Loader) logf(format string, args ...any) {
	if l.Logf != nil {
		l.Logf(format, args...)
	}
}

// Device is one device found under /sys/bus.
type Device struct {
	// Bus is the bus name ("pci", "virtio", "scsi").
	Bus string
	// Name is the device's name on its bus ("0000:00:02.0").
	Name string
	// Alias is its modalias.
	Alias string
	// Bound says a driver is bound to it, Driver which.
	Bound  bool
	Driver string
	// Vendor, DeviceID and Class are read for PCI devices ("0x8086").
	Vendor, DeviceID, Class string
}

// String describes the device for a diagnostic line.
func (d Device) String() string {
	if d.Bus == "pci" {
		return fmt.Sprintf("pci %s %s:%s class %s", d.Name, strings.TrimPrefix(d.Vendor, "0x"), strings.TrimPrefix(d.DeviceID, "0x"), strings.TrimPrefix(d.Class, "0x"))
	}
	return d.Bus + " " + d.Name + " " + d.Alias
}

// Devices lists every device under sys/bus/*/devices that has a
// modalias, sorted by bus and name.
func Devices(sys string) ([]Device, error) {
	buses, err := os.ReadDir(filepath.Join(sys, "bus"))
	if err != nil {
		return nil, fmt.Errorf("kmod: read %s/bus: %w", sys, err)
	}
	var out []Device
	for _, b := range buses {
		dir := filepath.Join(sys, "bus", b.Name(), "devices")
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			alias := sysfs.Attr(filepath.Join(p, "modalias"))
			if alias == "" {
				continue
			}
			d := Device{Bus: b.Name(), Name: e.Name(), Alias: alias}
			if _, err := os.Stat(filepath.Join(p, "driver")); err == nil {
				d.Bound = true
				if l, err := os.Readlink(filepath.Join(p, "driver")); err == nil {
					d.Driver = filepath.Base(l)
				}
			}
			if d.Bus == "pci" {
				d.Vendor = sysfs.Attr(filepath.Join(p, "vendor"))
				d.DeviceID = sysfs.Attr(filepath.Join(p, "device"))
				d.Class = sysfs.Attr(filepath.Join(p, "class"))
			}
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Bus != out[j].Bus {
			return out[i].Bus < out[j].Bus
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}
