package bootcfg

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(p, []byte(got), 0o644))
	}
	want, err := os.ReadFile(p)
	require.NoError(t, err, "run go test -update to create %s", p)
	assert.Equal(t, string(want), got)
}

func TestKernelArgs(t *testing.T) {
	a := Agent{Server: "10.0.0.1:8080"}
	require.NoError(t, a.Validate())
	assert.Equal(t, "herd.server=10.0.0.1:8080 herd.session=herd herd.port=9998 herd.method=raw herd.disk=auto herd.timeout=300 herd.retries=3 console=ttyS0", a.KernelArgs())

	key := strings.Repeat("0f", 32)
	a = Agent{Server: "10.0.0.1:80", Session: "lab", Port: 7000, Disk: "/dev/sda", AgentKey: key, Timeout: 10, Retries: 1, Console: "-", Extra: "quiet"}
	require.NoError(t, a.Validate())
	assert.Equal(t, "herd.server=10.0.0.1:80 herd.session=lab herd.port=7000 herd.method=raw herd.disk=/dev/sda herd.agentkey="+key+" herd.timeout=10 herd.retries=1 quiet", a.KernelArgs())
	a = Agent{Server: "10.0.0.1:80", Stage2: true, Console: "-"}
	assert.Equal(t, "herd.server=10.0.0.1:80 herd.session=herd herd.port=9998 herd.method=raw herd.disk=auto herd.timeout=300 herd.retries=3 herd.stage2=1", a.KernelArgs())
}

func TestKernelArgsBootIf(t *testing.T) {
	a := Agent{Server: "10.0.0.1:8080", BootMAC: "52:54:00:AB:cd:ef"}
	require.NoError(t, a.Validate())
	assert.Contains(t, a.KernelArgs(), " BOOTIF=01-52-54-00-ab-cd-ef ")
	assert.ErrorIs(t, Agent{Server: "10.0.0.1:8080", BootMAC: "nope"}.Validate(), ErrBadParam)
}

func TestValidateRefuses(t *testing.T) {
	for name, a := range map[string]Agent{
		"no server":          {},
		"no port":            {Server: "10.0.0.1"},
		"space":              {Server: "10.0.0.1:80", Session: "a b"},
		"quote":              {Server: "10.0.0.1:80", Disk: `/dev/"x`},
		"key not hex":        {Server: "10.0.0.1:80", AgentKey: strings.Repeat("xy", 32)},
		"key short":          {Server: "10.0.0.1:80", AgentKey: "00ff"},
		"key upper":          {Server: "10.0.0.1:80", AgentKey: strings.Repeat("AB", 32)},
		"key in extra":       {Server: "10.0.0.1:80", Extra: "quiet herd.key=00ff"},
		"agent key in extra": {Server: "10.0.0.1:80", Extra: "herd.agentkey=00ff"},
		"extra break":        {Server: "10.0.0.1:80", Extra: "a\nLABEL x"},
		"port too big":       {Server: "10.0.0.1:80", Port: 70000},
		"bad disk rule":      {Server: "10.0.0.1:80", Disk: "biggest"},
		"disk outside /dev":  {Server: "10.0.0.1:80", Disk: "/etc/shadow"},
	} {
		t.Run(name, func(t *testing.T) { require.ErrorIs(t, a.Validate(), ErrBadParam) })
	}
}

func TestPXELinuxFileName(t *testing.T) {
	assert.Equal(t, "pxelinux.cfg/01-52-54-00-ab-cd-ef", PXELinuxFileName("52:54:00:AB:CD:EF"))
	assert.Equal(t, "", PXELinuxFileName("nope"))
	mac, ok := MACFromPXELinuxFileName("pxelinux.cfg/01-52-54-00-ab-cd-ef")
	require.True(t, ok)
	assert.Equal(t, "52:54:00:ab:cd:ef", mac)
	_, ok = MACFromPXELinuxFileName("pxelinux.cfg/default")
	assert.False(t, ok)
	_, ok = MACFromPXELinuxFileName("pxelinux.cfg/01-52-54-00-ab-cd-zz")
	assert.False(t, ok)
}

func TestGolden(t *testing.T) {
	args := Agent{Server: "10.0.0.1:8080", Session: "lab"}.KernelArgs()
	golden(t, "local.pxelinux", PXELinuxLocal())
	golden(t, "install.pxelinux", PXELinuxInstall("vmlinuz", "initrd.img", args))
	golden(t, "menu.pxelinux", PXELinuxMenu(Menu{Kernel: "images/vmlinuz", Initrd: "images/all.rdz", Args: args, NFSURL: "10.0.1.253:/cs4", HTTPURL: "10.0.1.253:/cs4", Seed: true}))
	golden(t, "chain.ipxe", IPXEChain("http://10.0.0.1:8080/"))
	golden(t, "install.ipxe", IPXEInstall("http://10.0.0.1:8080/vmlinuz", "http://10.0.0.1:8080/initrd.img", args))
	golden(t, "local.ipxe", IPXELocal())
	golden(t, "main.grub", GrubMain())
	golden(t, "install.grub", GrubInstall("vmlinuz", "initrd.img", args))
	golden(t, "local.grub", GrubLocal())
}

func TestGrubFileNameAndQuoting(t *testing.T) {
	assert.Equal(t, "grub/herd/52:54:00:ab:cd:ef.cfg", GrubFileName("52-54-00-AB-CD-EF"))
	assert.Equal(t, "", GrubFileName("nope"))
	mac, ok := MACFromGrubFileName("/grub/herd/52:54:00:AB:cd:ef.cfg")
	require.True(t, ok)
	assert.Equal(t, "52:54:00:ab:cd:ef", mac)
	for _, bad := range []string{"grub/grub.cfg", "grub/herd/52:54:00:ab:cd:ef", "grub/herd/../52:54:00:ab:cd:ef.cfg", "grub/herd/52:54:00:ab:cd:ef:01:02.cfg"} {
		_, ok := MACFromGrubFileName(bad)
		assert.False(t, ok, bad)
	}
	// GRUB expands $ and splits on ; outside single quotes: an extra
	// parameter reaches the kernel as written.
	got := GrubInstall("vmlinuz", "initrd.img", "a=$x b=it's;reboot")
	assert.Contains(t, got, `linux '/vmlinuz' 'a=$x' 'b=it'\''s;reboot'`+"\n")
}

func FuzzMACFromGrubFileName(f *testing.F) {
	for _, s := range []string{"grub/herd/52:54:00:ab:cd:ef.cfg", "grub/grub.cfg", "grub/herd/.cfg"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		mac, ok := MACFromGrubFileName(name)
		if !ok {
			return
		}
		if again, ok := MACFromGrubFileName(GrubFileName(mac)); !ok || again != mac {
			t.Fatalf("round trip %q -> %q", mac, again)
		}
	})
}

func FuzzMACFromPXELinuxFileName(f *testing.F) {
	for _, s := range []string{"pxelinux.cfg/01-52-54-00-ab-cd-ef", "/pxelinux.cfg/01-52:54:00:ab:cd:ef", "pxelinux.cfg/default", "pxelinux.cfg/0A000001", "pxelinux.cfg/01-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		mac, ok := MACFromPXELinuxFileName(name)
		if !ok {
			return
		}
		if back := PXELinuxFileName(mac); back == "" {
			t.Fatalf("%q gave MAC %q that does not name a file", name, mac)
		}
		if again, ok := MACFromPXELinuxFileName(PXELinuxFileName(mac)); !ok || again != mac {
			t.Fatalf("round trip %q -> %q", mac, again)
		}
	})
}
