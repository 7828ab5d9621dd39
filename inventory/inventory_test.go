package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `# the lab
credentials: bmc.cred
machines:
  - name: node01
    mac: 52:54:00:12:34:01
    bmc: ipmi://10.0.1.101
    firmware: uefi
  - name: node02
    mac: 52-54-00-12-34-02
    bmc: redfish://10.0.1.102
    credentials: /etc/herd/node02.cred
    disk: size>=100G
    ip: 10.0.0.102
    group: rack1
  - name: node03
    mac: "52:54:00:12:34:03"
`

func TestParse(t *testing.T) {
	inv, err := Parse([]byte(sample), "/etc/herd")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Machines) != 3 {
		t.Fatalf("%d machines", len(inv.Machines))
	}
	m1, m2, m3 := inv.Machines[0], inv.Machines[1], inv.Machines[2]
	if m1.Name != "node01" || m1.MAC != "52:54:00:12:34:01" || m1.BMC.String() != "ipmi://10.0.1.101:623" ||
		m1.Credentials != "/etc/herd/bmc.cred" || m1.Firmware != "uefi" || m1.Line != 4 {
		t.Errorf("node01 = %+v", m1)
	}
	if m2.MAC != "52:54:00:12:34:02" || m2.Credentials != "/etc/herd/node02.cred" || m2.Disk != "size>=100G" ||
		m2.IP != "10.0.0.102" || m2.Group != "rack1" || m2.Firmware != "bios" {
		t.Errorf("node02 = %+v", m2)
	}
	if m3.HasBMC() || m3.Credentials != "/etc/herd/bmc.cred" {
		t.Errorf("node03 = %+v", m3)
	}
	sel, err := inv.Select([]string{"node03", "52:54:00:12:34:01", "node03"})
	if err != nil || len(sel) != 2 || sel[0].Name != "node03" || sel[1].Name != "node01" {
		t.Fatalf("Select = %+v, %v", sel, err)
	}
	if _, err := inv.Select([]string{"node09"}); !errors.Is(err, ErrInventory) || !strings.Contains(err.Error(), `"node09"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                                       "empty file",
		"- a\n":                                  "line 1: want a mapping",
		"machines: []\n":                         "no machines",
		"machine:\n  - name: a\n":                `line 1: unknown key "machine"`,
		"machines:\n  - name: a\n    mac: 1:2\n": "line 3: mac",
		"machines:\n  - name: a\n":               "line 2: machine a without a mac",
		"machines:\n  - mac: 52:54:00:00:00:01\n":                                                       "line 2: machine without a name",
		"machines:\n  - name: a b\n":                                                                    `line 2: name "a b"`,
		"machines:\n  - name: a\n    bmc: x\n":                                                          "line 3: bmc: bad address",
		"machines:\n  - name: a\n    disk: huge\n":                                                      "line 3:",
		"machines:\n  - name: a\n    ip: 1.2.3\n":                                                       "line 3: ip",
		"machines:\n  - name: a\n    colour: red\n":                                                     `line 3: unknown key "colour"`,
		"machines:\n  - name: a\n    name: b\n":                                                         "line 3: name already set on line 2",
		"machines:\n  - name: a\n    firmware: efi\n":                                                   "line 3: firmware",
		"machines:\n  - name: a\n    mac: [1]\n":                                                        "line 3: want a single value",
		"machines:\n  - name: a\n    mac: 52:54:00:00:00:01\n    bmc: ipmi://h\n":                       "line 2: machine a has a bmc but no credentials",
		"machines:\n  - name: a\n    mac: 52:54:00:00:00:01\n  - name: a\n    mac: 52:54:00:00:00:02\n": "line 4: name a already on line 2",
		"machines:\n  - name: a\n    mac: 52:54:00:00:00:01\n  - name: b\n    mac: 52:54:00:00:00:01\n": "line 4: mac 52:54:00:00:00:01 already on line 2",
		"machines:\n  - &x name: a\n  - *x\n":                                                           "",
		"machines: [\n":                                                                                 "",
	} {
		_, err := Parse([]byte(in), "/x")
		if !errors.Is(err, ErrInventory) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", in, err, want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "inv.yaml")
	os.WriteFile(p, []byte(sample), 0o644)
	inv, err := Load(p)
	if err != nil || inv.Machines[0].Credentials != filepath.Join(dir, "bmc.cred") || inv.Path != p {
		t.Fatalf("%+v, %v", inv, err)
	}
	if _, err := Load(filepath.Join(dir, "none")); !errors.Is(err, ErrInventory) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("machines:\n  - name: a\n    mac: 52:54:00:00:00:01\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse(data, "/d")
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, m := range inv.Machines {
			if m.Name == "" || m.MAC == "" || seen[m.Name] || seen[m.MAC] {
				t.Fatalf("accepted %+v", m)
			}
			seen[m.Name], seen[m.MAC] = true, true
			if m.HasBMC() && m.Credentials == "" {
				t.Fatalf("a bmc without credentials: %+v", m)
			}
		}
	})
}
