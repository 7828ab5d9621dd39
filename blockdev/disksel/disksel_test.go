package disksel

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const gib = 1 << 30

func cluster() []Disk {
	return []Disk{
		{Name: "sda", Path: "/dev/sda", Size: 480 * gib, Model: "PERC H740P Adp", Serial: "00a1"},
		{Name: "sdb", Path: "/dev/sdb", Size: 3700 * gib, Model: "PERC H740P Adp", Serial: "00b2"},
		{Name: "sdc", Path: "/dev/sdc", Size: 32 * gib, Model: "Cruzer", Removable: true},
		{Name: "nvme0n1", Path: "/dev/nvme0n1", Size: 960 * gib, Model: "SAMSUNG MZ7LH960", Serial: "S3Z8NB0K"},
	}
}

func TestSelect(t *testing.T) {
	for _, c := range []struct{ rule, want string }{
		{"largest", "/dev/sdb"},
		{"smallest", "/dev/sda"},
		{"model=PERC*,smallest", "/dev/sda"},
		{"model=perc*,size>=1T", "/dev/sdb"},
		{"serial=S3Z8*", "/dev/nvme0n1"},
		{"size>=500G,size<=1T", "/dev/nvme0n1"},
		{"/dev/sda", "/dev/sda"},
	} {
		r, err := Parse(c.rule)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.rule, err)
		}
		d, err := r.Select(cluster())
		if err != nil || d.Path != c.want {
			t.Errorf("%s picked %s, %v; want %s", c.rule, d.Path, err, c.want)
		}
	}
}

func TestSelectRefuses(t *testing.T) {
	for _, c := range []struct {
		rule string
		want error
		text string
	}{
		{"auto", ErrAmbiguous, "/dev/nvme0n1 960.0GiB model=\"SAMSUNG MZ7LH960\" serial=S3Z8NB0K; /dev/sda"},
		{"model=PERC*", ErrAmbiguous, "narrow it"},
		{"model=Cruzer", ErrNoDisk, "/dev/sdc 32.0GiB model=Cruzer removable"},
		{"/dev/sdc", ErrNoDisk, "/dev/sdc is removable"},
		{"/dev/vda", ErrNoDisk, "no disk /dev/vda"},
		{"size>=10T", ErrNoDisk, "no disk fits rule size>=10T"},
	} {
		r, err := Parse(c.rule)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.rule, err)
		}
		_, err = r.Select(cluster())
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: %v; want %v with %q", c.rule, err, c.want, c.text)
		}
	}
	two := []Disk{{Name: "sda", Path: "/dev/sda", Size: gib}, {Name: "sdb", Path: "/dev/sdb", Size: gib}}
	r, _ := Parse("largest")
	if _, err := r.Select(two); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("largest of two equal disks: %v", err)
	}
	one := []Disk{{Name: "vda", Path: "/dev/vda", Size: gib}, {Name: "vdb", Path: "/dev/vdb", Size: gib, Mounted: true}}
	if d, err := (Rule{text: Auto}).Select(one); err != nil || d.Path != "/dev/vda" {
		t.Errorf("auto with one writable disk: %v %v", d, err)
	}
	if _, err := (Rule{text: Auto}).Select(nil); !errors.Is(err, ErrNoDisk) || !strings.Contains(err.Error(), "disks: none") {
		t.Errorf("auto without disks: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, bad := range []string{"biggest", "model=", "size>=lots", "size>=0", "largest,smallest", "/dev/../etc/passwd",
		"/etc/passwd", "model=a b", "model=[", "size>=2T,size<=1T", strings.Repeat("x", 300), "model=\"x\""} {
		if _, err := Parse(bad); !errors.Is(err, ErrBadRule) {
			t.Errorf("Parse(%q) = %v, want ErrBadRule", bad, err)
		}
	}
}

func TestScan(t *testing.T) {
	sys := t.TempDir()
	add := func(name string, attrs map[string]string) {
		dir := filepath.Join(sys, "block", name)
		for k, v := range attrs {
			p := filepath.Join(dir, k)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("sda", map[string]string{"size": "2097152\n", "removable": "0\n", "ro": "0\n", "device/model": "QEMU HARDDISK   \n",
		"device/vpd_pg80": "\x00\x80\x00\x08QM00001 ", "sda1/partition": "1\n"})
	add("nvme0n1", map[string]string{"size": "4194304\n", "removable": "0\n", "device/model": "QEMU NVMe Ctrl\n", "device/serial": "herd-x\n"})
	add("loop0", map[string]string{"size": "100\n"}) // no device: not a disk
	add("sr0", map[string]string{"size": "0\n", "removable": "1\n", "device/model": "QEMU DVD-ROM\n"})
	disks, err := Scan(sys, []byte("/dev/sda1 /boot ext4 rw 0 0\nproc /proc proc rw 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range disks {
		got = append(got, d.String())
	}
	want := "/dev/nvme0n1 2.0GiB model=\"QEMU NVMe Ctrl\" serial=herd-x|/dev/sda 1.0GiB model=\"QEMU HARDDISK\" serial=QM00001 mounted|/dev/sr0 0B model=\"QEMU DVD-ROM\" removable"
	if strings.Join(got, "|") != want {
		t.Fatalf("Scan:\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	d, err := Rule{text: Auto}.Select(disks)
	if err != nil || d.Path != "/dev/nvme0n1" {
		t.Fatalf("auto picked %v, %v: the mounted disk and the DVD drive are never candidates", d, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"auto", "/dev/sda", "model=PERC*,largest", "size>=100G,size<=2T", "serial=S3Z*", "model=[a-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		if strings.ContainsAny(r.String(), " \t\n\"'\\") {
			t.Fatalf("accepted rule %q cannot travel on a kernel command line", s)
		}
		r.Select(cluster()) // must not panic
	})
}
