package agent

import (
	"errors"
	"github.com/herd-cluster/herd/blockdev/disksel"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A line as pxe/bootcfg writes it, inside a real kernel command line.
const sampleLine = "BOOT_IMAGE=vmlinuz initrd=initrd.img herd.server=10.0.0.1:8080 herd.session=lab herd.port=9100 herd.method=raw herd.disk=/dev/sda herd.agentkey=" + sampleKeyHex + " herd.timeout=30 herd.retries=5 console=ttyS0 quiet"

const sampleKeyHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

func TestParseCmdline(t *testing.T) {
	c, err := ParseCmdline(sampleLine)
	require.NoError(t, err)
	assert.Equal(t, Config{Server: "10.0.0.1:8080", Session: "lab", Port: 9100, Method: "raw", Disk: "/dev/sda",
		AgentKey: sampleKey(), Timeout: 30 * time.Second, Retries: 5}, c)
}

func sampleKey() []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

func TestParseCmdlineDefaults(t *testing.T) {
	c, err := ParseCmdline("herd.server=[fd00::1]:80\n")
	require.NoError(t, err)
	assert.Equal(t, Config{Server: "[fd00::1]:80", Session: DefaultSession, Port: DefaultPort, Method: DefaultMethod,
		Disk: DefaultDisk, Timeout: DefaultTimeout, Retries: DefaultRetries}, c)
	c, err = ParseCmdline("herd.server=1.2.3.4:1 herd.retries=0 herd.retries=0")
	require.NoError(t, err)
	assert.Equal(t, 1, c.Retries, "zero retries still means one attempt")
	c, err = ParseCmdline("herd.server=1.2.3.4:1 herd.session=a herd.session=b herd.unknown=1")
	require.NoError(t, err)
	assert.Equal(t, "b", c.Session, "the last value wins")
	assert.False(t, c.Stage2)
	c, err = ParseCmdline("herd.server=1.2.3.4:1 herd.stage2=1")
	require.NoError(t, err)
	assert.True(t, c.Stage2)
	c, err = ParseCmdline("herd.server=1.2.3.4:1 herd.stage2=1 herd.stage2=0")
	require.NoError(t, err)
	assert.False(t, c.Stage2)
}

func TestParseCmdlineErrors(t *testing.T) {
	for _, line := range []string{
		"", "console=ttyS0", "herd.server=", "herd.server=host:80", "herd.server=1.2.3.4", "herd.server=1.2.3.4:0",
		"herd.server=1.2.3.4:80 herd.port=70000", "herd.server=1.2.3.4:80 herd.port=x",
		"herd.server=1.2.3.4:80 herd.agentkey=xyz", "herd.server=1.2.3.4:80 herd.agentkey=abc", "herd.server=1.2.3.4:80 herd.agentkey=00ff",
		"herd.server=1.2.3.4:80 herd.agentkey=" + sampleKeyHex + "00",
		"herd.server=1.2.3.4:80 herd.key=" + sampleKeyHex, "herd.server=1.2.3.4:80 herd.key=",
		"herd.server=1.2.3.4:80 herd.timeout=0", "herd.server=1.2.3.4:80 herd.retries=-1",
		"herd.server=1.2.3.4:80 herd.disk=/etc/passwd", "herd.server=1.2.3.4:80 herd.disk=/dev/../etc",
		"herd.server=1.2.3.4:80 herd.method=RAW;", "herd.server=1.2.3.4:80 herd.session=", "herd.server=1.2.3.4:80 herd.stage2=maybe",
	} {
		_, err := ParseCmdline(line)
		assert.ErrorIs(t, err, ErrCmdline, "%q", line)
	}
	_, err := ParseCmdline("herd.server=1.2.3.4:80 herd.timeout=soon")
	assert.ErrorContains(t, err, `herd.timeout="soon"`)
	_, err = ParseCmdline("herd.server=1.2.3.4:80 herd.key=00ff")
	assert.ErrorContains(t, err, "a session key on the kernel line is not read")
	c, err := ParseCmdline("herd.server=1.2.3.4:80 herd.agentkey=" + sampleKeyHex + " herd.agentkey=")
	require.NoError(t, err)
	assert.Nil(t, c.AgentKey, "the last value wins")
}

func TestParseCmdlineBootIf(t *testing.T) {
	c, err := ParseCmdline("herd.server=10.0.0.1:8080 BOOTIF=01-52-54-00-AB-cd-EF")
	if err != nil || c.BootMAC != "52:54:00:ab:cd:ef" {
		t.Fatalf("BOOTIF: %+v, %v", c, err)
	}
	for _, bad := range []string{"BOOTIF=52-54-00-ab-cd-ef", "BOOTIF=01-52-54-00-ab-cd", "BOOTIF=01-zz-54-00-ab-cd-ef", "BOOTIF=01-00-11-22-33-44-55-66-77"} {
		if _, err := ParseCmdline("herd.server=10.0.0.1:8080 " + bad); !errors.Is(err, ErrCmdline) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add(sampleLine)
	f.Add("herd.server=10.0.0.1:8080")
	f.Add("herd.server=[::1]:1 herd.agentkey= herd.retries=1000")
	f.Add("herd.server=[::1]:1 herd.key=00ff")
	f.Add("herd.disk=/dev/vda herd.server=x")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCmdline(s)
		if err != nil {
			return
		}
		if c.Server == "" || c.Retries < 1 || c.Timeout <= 0 || c.Port < 1 || c.Port > 65535 {
			t.Fatalf("accepted invalid config %+v from %q", c, s)
		}
		if _, err := disksel.Parse(c.Disk); err != nil || strings.ContainsAny(c.Session, " \t\n") {
			t.Fatalf("unsafe value in %+v", c)
		}
		if c.AgentKey != nil && len(c.AgentKey) != AgentKeySize {
			t.Fatalf("agent key of %d bytes accepted from %q", len(c.AgentKey), s)
		}
	})
}

func TestParseSummary(t *testing.T) {
	s, ok := ParseSummary([]byte(`{"event":"summary","ok":true,"seconds":1.5,"bytes":1048576,"nodes":[{"index":1,"addr":"","state":"done","bytes":1048576,"rate":0,"error":""}]}`))
	require.True(t, ok)
	assert.Equal(t, Summary{OK: true, Bytes: 1 << 20}, *s)
	s, ok = ParseSummary([]byte(`{"event":"summary","ok":false,"bytes":10,"nodes":[{"error":"digest mismatch"}]}`))
	require.True(t, ok)
	assert.Equal(t, Summary{OK: false, Bytes: 10, Error: "digest mismatch"}, *s)
	for _, l := range []string{`{"event":"progress","bytes":5,"nodes":[]}`, `{"event":"summary"}`, `garbage`, ``} {
		_, ok = ParseSummary([]byte(l))
		assert.False(t, ok, l)
	}
}

func FuzzParseSummary(f *testing.F) {
	f.Add([]byte(`{"event":"summary","ok":true,"bytes":1,"nodes":[]}`))
	f.Add([]byte(`{"event":"progress"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, ok := ParseSummary(b); ok && s == nil {
			t.Fatal("ok without a summary")
		}
	})
}
