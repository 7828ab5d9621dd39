package kmod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sample() *Index {
	var x Index
	x.Add(Module{Name: "virtio_pci", Path: "kernel/drivers/virtio/virtio_pci.ko", Deps: []string{"virtio", "virtio_ring"}})
	x.Add(Module{Name: "virtio", Path: "kernel/drivers/virtio/virtio.ko"})
	x.Add(Module{Name: "virtio_ring", Path: "kernel/drivers/virtio/virtio_ring.ko"})
	x.Add(Module{Name: "virtio-net", Path: "kernel/drivers/net/virtio_net.ko", Deps: []string{"virtio", "virtio-ring"}})
	x.Add(Module{Name: "e1000e", Path: "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko"})
	x.Add(Module{Name: "loop", Path: "kernel/drivers/block/loop.ko", Always: true})
	x.AddAlias("pci:v00001AF4d*sv*sd*bc*sc*i*", "virtio_pci")
	x.AddAlias("virtio:d00000001v*", "virtio_net")
	x.AddAlias("pci:v00008086d000010D3sv*sd*bc*sc*i*", "e1000e")
	return &x
}

func TestFormatParseRoundTrip(t *testing.T) {
	x := sample()
	b := x.Format()
	y, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Format()): %v\n%s", err, b)
	}
	if got := string(y.Format()); got != string(b) {
		t.Fatalf("second Format differs:\n%s\nwant\n%s", got, b)
	}
	if !y.Modules["loop"].Always || y.Modules["e1000e"].Always {
		t.Fatalf("always flags lost: %+v %+v", y.Modules["loop"], y.Modules["e1000e"])
	}
	if d := y.Modules["virtio_net"].Deps; strings.Join(d, ",") != "virtio,virtio_ring" {
		t.Fatalf("deps of virtio_net = %v", d)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "empty"},
		{"not a header\n", "line 1"},
		{header + "\nmodule a\n", "line 2"},
		{header + "\nmodule a a.ko\nmodule a b.ko\n", "line 3: module listed twice"},
		{header + "\nmodule a /abs/a.ko\n", "line 2: bad name or path"},
		{header + "\nmodule a ../a.ko\n", "line 2: bad name or path"},
		{header + "\nmodule a a.ko b\n", "needs b"},
		{header + "\nalias pci:* nope\n", "no module nope"},
		{header + "\nalias [ a\nmodule a a.ko\n", "line 2: bad pattern"},
		{header + "\nalways zz\n", "always zz"},
		{header + "\nfrobnicate x\n", "line 2: unknown record"},
		{header + "\nmodule a a.ko\nmodule " + strings.Repeat("x", 70000) + " b.ko\n", "line 3"},
	} {
		_, err := Parse([]byte(c.in))
		if !errors.Is(err, ErrIndex) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%.40q) = %v, want ErrIndex with %q", c.in, err, c.want)
		}
	}
}

func TestMatchAndOrder(t *testing.T) {
	x := sample()
	if got := x.Match("pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00"); strings.Join(got, ",") != "e1000e" {
		t.Fatalf("Match e1000e = %v", got)
	}
	if got := x.Match("pci:v000010DEd00001234sv0sd0bc03sc00i00"); len(got) != 0 {
		t.Fatalf("Match of an unknown GPU = %v", got)
	}
	order, err := x.Order([]string{"virtio_net", "virtio_pci"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range order {
		names = append(names, m.Name)
	}
	if got := strings.Join(names, ","); got != "virtio,virtio_ring,virtio_net,virtio_pci" {
		t.Fatalf("Order = %s", got)
	}
	if _, err := x.Order([]string{"nvme"}); !errors.Is(err, ErrModule) {
		t.Fatalf("Order of a missing module: %v", err)
	}
	var cyc Index
	cyc.Add(Module{Name: "a", Path: "a.ko", Deps: []string{"b"}})
	cyc.Add(Module{Name: "b", Path: "b.ko", Deps: []string{"a"}})
	if _, err := cyc.Order([]string{"a"}); !errors.Is(err, ErrModule) || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("Order of a cycle: %v", err)
	}
}

// fakeSys writes a sysfs-like tree: bus/BUS/devices/NAME/modalias.
type fakeSys string

func (s fakeSys) add(t *testing.T, bus, name, alias string, attrs map[string]string) {
	t.Helper()
	d := filepath.Join(string(s), "bus", bus, "devices", name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	attrs["modalias"] = alias
	for k, v := range attrs {
		if err := os.WriteFile(filepath.Join(d, k), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (s fakeSys) bind(t *testing.T, bus, name string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(string(s), "bus", bus, "devices", name, "driver"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestLoaderFollowsTheBus checks the rounds: loading virtio_pci for the
// PCI function makes a virtio device appear, whose alias then loads
// virtio_net; a device nobody serves is reported unclaimed; a module
// that fails does not stop the others.
func TestLoaderFollowsTheBus(t *testing.T) {
	sys := fakeSys(t.TempDir())
	sys.add(t, "pci", "0000:00:02.0", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", map[string]string{"vendor": "0x1af4", "device": "0x1000", "class": "0x020000"})
	sys.add(t, "pci", "0000:00:03.0", "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00", map[string]string{"vendor": "0x8086", "device": "0x10d3", "class": "0x020000"})
	sys.add(t, "pci", "0000:00:04.0", "pci:v000010DEd00001234sv00000000sd00000000bc03sc00i00", map[string]string{"vendor": "0x10de", "device": "0x1234", "class": "0x030000"})
	var inserted []string
	l := &Loader{Index: sample(), Dir: "/lib/modules/v", Sys: string(sys), Settle: time.Millisecond,
		Insert: func(p string) error {
			inserted = append(inserted, filepath.Base(p))
			switch filepath.Base(p) {
			case "virtio_pci.ko":
				sys.bind(t, "pci", "0000:00:02.0")
				sys.add(t, "virtio", "virtio0", "virtio:d00000001v00001AF4", map[string]string{})
			case "e1000e.ko":
				return errors.New("no firmware")
			}
			return nil
		}}
	res, err := l.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Loaded, ","); got != "loop,virtio,virtio_ring,virtio_pci,virtio_net" {
		t.Fatalf("loaded %s (inserted %v)", got, inserted)
	}
	if res.Failed["e1000e"] == nil || len(res.Failed) != 1 {
		t.Fatalf("failed = %v", res.Failed)
	}
	if got := strings.Join(res.Unclaimed, ";"); got != "pci 0000:00:03.0 8086:10d3 class 020000;pci 0000:00:04.0 10de:1234 class 030000" {
		t.Fatalf("unclaimed = %q", got)
	}
	if len(inserted) != 6 {
		t.Fatalf("inserted %v: each module once", inserted)
	}
}

func TestLoaderWithoutSysfs(t *testing.T) {
	l := &Loader{Index: sample(), Dir: "/x", Sys: filepath.Join(t.TempDir(), "none"), Insert: func(string) error { return nil }}
	if _, err := l.Run(context.Background()); err == nil {
		t.Fatal("a missing sysfs must be an error")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample().Format())
	f.Add([]byte(header + "\nmodule a a.ko b\nmodule b b.ko a\nalias * a\nalways b\n"))
	f.Add([]byte(header + "\nalias [ a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := Parse(b)
		if err != nil {
			return
		}
		y, err := Parse(x.Format())
		if err != nil {
			t.Fatalf("Format of a parsed index does not parse: %v", err)
		}
		if string(y.Format()) != string(x.Format()) {
			t.Fatal("Format is not stable")
		}
		for n := range x.Modules {
			x.Order([]string{n}) // may report a cycle, must not loop or panic
		}
		x.Match("pci:v00008086d000010D3")
	})
}
