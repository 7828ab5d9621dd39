package filelevel

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const debianFstab = `# /etc/fstab: static file system information.
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=11111111-1111-4111-8111-111111111111 /               ext4    errors=remount-ro 0       1
UUID=33333333-3333-4333-8333-333333333333 /var            xfs     defaults        0       2
# swap was on /dev/sda5 during installation
UUID=22222222-2222-4222-8222-222222222222 none            swap    sw              0       0
tmpfs /tmp tmpfs defaults,size=1G 0 0
/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0
`

var newFS = []NewFS{
	{Mount: "/", FS: "ext4", UUID: "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"},
	{FS: "swap", UUID: "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"},
	{Mount: "/var", FS: "xfs", UUID: "cccccccc-cccc-4ccc-8ccc-cccccccccccc"},
}

func TestParseFstab(t *testing.T) {
	ents, err := ParseFstab([]byte(debianFstab + "/dev/sdb1 /srv/my\\040data ext4 defaults 0 2\n"))
	require.NoError(t, err)
	require.Len(t, ents, 6)
	assert.Equal(t, FstabEntry{Line: 4, Spec: "UUID=11111111-1111-4111-8111-111111111111", File: "/", Type: "ext4"}, ents[0])
	assert.Equal(t, "swap", ents[2].Type)
	assert.Equal(t, 7, ents[2].Line)
	assert.Equal(t, "/srv/my data", ents[5].File, "octal escape decoded")

	_, err = ParseFstab([]byte("# ok\n\nUUID=x\n"))
	var fe *FstabError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, 3, fe.Line)
	assert.Contains(t, err.Error(), "fstab:3:")
}

func TestRewriteFstab(t *testing.T) {
	out, changes, specs, err := RewriteFstab([]byte(debianFstab), newFS)
	require.NoError(t, err)
	want := strings.NewReplacer(
		"11111111-1111-4111-8111-111111111111", "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
		"22222222-2222-4222-8222-222222222222", "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
		"33333333-3333-4333-8333-333333333333", "cccccccc-cccc-4ccc-8ccc-cccccccccccc",
	).Replace(debianFstab)
	assert.Equal(t, want, string(out), "only the specs change, spacing and other lines kept")
	require.Len(t, changes, 3)
	assert.Equal(t, Change{File: "/etc/fstab", Line: 4, Old: "UUID=11111111-1111-4111-8111-111111111111", New: "UUID=aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"}, changes[0])
	assert.Equal(t, "UUID=bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb", specs["UUID=22222222-2222-4222-8222-222222222222"])
}

func TestRewriteFstabKeepsLabelsAndAppendsMissing(t *testing.T) {
	in := "LABEL=root / ext4 defaults 0 1\n/dev/sda2 /var xfs defaults 0 2" // no final newline, no swap
	fss := []NewFS{
		{Mount: "/", FS: "ext4", UUID: "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", Label: "root"},
		{FS: "swap", UUID: "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"},
		{Mount: "/var", FS: "xfs", UUID: "cccccccc-cccc-4ccc-8ccc-cccccccccccc"},
		{Mount: "/srv/my data", FS: "ext4", UUID: "dddddddd-dddd-4ddd-8ddd-dddddddddddd"},
	}
	out, changes, _, err := RewriteFstab([]byte(in), fss)
	require.NoError(t, err)
	assert.Equal(t, "LABEL=root / ext4 defaults 0 1\n"+
		"UUID=cccccccc-cccc-4ccc-8ccc-cccccccccccc /var xfs defaults 0 2\n"+
		"UUID=bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb none swap sw 0 0\n"+
		"UUID=dddddddd-dddd-4ddd-8ddd-dddddddddddd /srv/my\\040data ext4 defaults 0 2\n", string(out))
	require.Len(t, changes, 3)
	assert.Equal(t, 3, changes[1].Line)
	assert.Contains(t, changes[1].String(), "added UUID=bbbb")

	// The appended line reads back as the new filesystem's mount point.
	ents, err := ParseFstab(out)
	require.NoError(t, err)
	assert.Equal(t, "/srv/my data", ents[3].File)
}

func TestRewriteBootConfig(t *testing.T) {
	conf := `DEFAULT linux
LABEL linux
  KERNEL /boot/vmlinuz
  APPEND root=UUID=11111111-1111-4111-8111-111111111111 ro quiet resume=/dev/sda5
LABEL rescue
  APPEND	root=/dev/sda1 single
# search --fs-uuid 33333333-3333-4333-8333-333333333333
`
	uuids := map[string]string{"33333333-3333-4333-8333-333333333333": "cccccccc-cccc-4ccc-8ccc-cccccccccccc"}
	out, changes := RewriteBootConfig("/boot/extlinux/extlinux.conf", []byte(conf), "UUID=aaaa", "UUID=bbbb", uuids)
	assert.Equal(t, `DEFAULT linux
LABEL linux
  KERNEL /boot/vmlinuz
  APPEND root=UUID=aaaa ro quiet resume=UUID=bbbb
LABEL rescue
  APPEND	root=UUID=aaaa single
# search --fs-uuid cccccccc-cccc-4ccc-8ccc-cccccccccccc
`, string(out))
	require.Len(t, changes, 3)
	assert.Equal(t, 4, changes[0].Line)

	same, none := RewriteBootConfig("x", []byte("DEFAULT linux\n"), "UUID=aaaa", "", nil)
	assert.Equal(t, "DEFAULT linux\n", string(same))
	assert.Empty(t, none)
}

func FuzzParseFstab(f *testing.F) {
	f.Add([]byte(debianFstab))
	f.Add([]byte("LABEL=root / ext4 defaults 0 1\n/dev/sda2 /srv/a\\040b xfs defaults 0 2"))
	f.Add([]byte("proc /proc proc defaults 0 0\n#x\n\tUUID=1 \\\n"))
	f.Add([]byte("onlyonefield\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ents, err := ParseFstab(b)
		if err != nil {
			var fe *FstabError
			if !assert.ErrorAs(t, err, &fe) || fe.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		out, _, _, err := RewriteFstab(b, newFS)
		if err != nil {
			t.Fatalf("rewrite of a parsed fstab failed: %v", err)
		}
		again, err := ParseFstab(out)
		if err != nil {
			t.Fatalf("rewritten fstab does not parse: %v\n%q", err, out)
		}
		if len(again) < len(ents) {
			t.Fatalf("rewrite lost entries: %d -> %d", len(ents), len(again))
		}
	})
}
