package filelevel

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/desc"
)

// labDesc is the desc of the lab e2e: / (ext4, boot), swap, /var (xfs, fill).
const labDesc = `# golden node of the file-level e2e
linux 700 fs=ext4 mount=/ label=root boot
swap 128
linux fill fs=xfs mount=/var
`

func TestHeaderRoundTrip(t *testing.T) {
	h := Header{Version: HeaderVersion, Desc: labDesc, Mounts: []string{"/", "/var"}, Golden: "g"}
	b, err := h.Encode()
	require.NoError(t, err)
	got, d, err := DecodeHeader(b)
	require.NoError(t, err)
	assert.Equal(t, h, *got)
	require.Len(t, d.Parts, 3)
	assert.Equal(t, []string{"/", "/var"}, MountOrder(d))
}

func TestHeaderErrors(t *testing.T) {
	cases := map[string]struct {
		h    Header
		want string
	}{
		"version":     {Header{Version: 9, Desc: labDesc}, "version 9"},
		"desc":        {Header{Version: 1, Desc: "linux 10\nlinux fill\nlinux 5\n"}, "desc:"},
		"unknown":     {Header{Version: 1, Desc: labDesc, Mounts: []string{"/", "/home"}}, "/home is not the mount point"},
		"twice":       {Header{Version: 1, Desc: labDesc, Mounts: []string{"/", "/"}}, "listed twice"},
		"unclean":     {Header{Version: 1, Desc: labDesc, Mounts: []string{"/var/"}}, "not a clean absolute path"},
		"child first": {Header{Version: 1, Desc: labDesc, Mounts: []string{"/var", "/"}}, "comes before /"},
		"swap":        {Header{Version: 1, Desc: "swap 10 mount=/swap\nlinux fill mount=/\n", Mounts: []string{"/swap"}}, "not the mount point"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			b, err := c.h.Encode()
			assert.ErrorIs(t, err, ErrHeader)
			assert.Nil(t, b)
			raw, err := json.Marshal(c.h) // bypasses Encode's checks
			require.NoError(t, err)
			_, _, err = DecodeHeader(raw)
			require.ErrorIs(t, err, ErrHeader)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	_, _, err := DecodeHeader([]byte("{not json"))
	require.ErrorIs(t, err, ErrHeader)
	_, _, err = DecodeHeader(make([]byte, maxHeader+1))
	require.ErrorIs(t, err, ErrHeader)
}

// TestLayoutPerDiskSize checks what every lab node lays out: fixed parts
// keep their size, the fill partition takes the rest of each disk.
func TestLayoutPerDiskSize(t *testing.T) {
	d, err := desc.Parse(labDesc)
	require.NoError(t, err)
	for _, size := range []int64{1536 * desc.MiB, 2 * desc.GiB, 4 * desc.GiB} {
		p, err := d.Layout(size, 512)
		require.NoError(t, err, size)
		require.Len(t, p.Parts, 3)
		assert.Equal(t, int64(2048), p.Parts[0].Start)
		assert.Equal(t, 700*desc.MiB, p.Parts[0].Bytes(512))
		assert.True(t, p.Parts[0].Boot)
		assert.Equal(t, 128*desc.MiB, p.Parts[1].Bytes(512))
		assert.Equal(t, p.Parts[1].End(), p.Parts[2].Start)
		assert.Equal(t, size/512, p.Parts[2].End(), "fill reaches the end of a %d-byte disk", size)
		assert.Equal(t, "xfs", p.Parts[2].FS)
	}
	_, err = d.Layout(800*desc.MiB, 512)
	require.ErrorIs(t, err, desc.ErrTooSmall)
}

func FuzzDecodeHeader(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"desc":"linux 700 fs=ext4 mount=/ boot\nswap 128\nlinux fill fs=xfs mount=/var\n","mounts":["/","/var"],"golden":"g"}`,
		`{"version":1,"desc":"table gpt\nesp 100 mount=/boot/efi\nlinux fill mount=/\n","mounts":["/","/boot/efi"]}`,
		`{"version":1,"desc":"linux fill mount=/\n","mounts":["/var","/"]}`,
		`{"version":2}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, d, err := DecodeHeader(b)
		if err != nil {
			require.ErrorIs(t, err, ErrHeader)
			return
		}
		// A valid header encodes and decodes to itself.
		again, err := h.Encode()
		require.NoError(t, err)
		h2, d2, err := DecodeHeader(again)
		require.NoError(t, err)
		assert.Equal(t, h, h2)
		assert.Equal(t, len(d.Parts), len(d2.Parts))
	})
}

func TestIsSessionItem(t *testing.T) {
	for _, n := range []string{HeaderItemName, VerifyItemName, "files:/", "files:/var"} {
		assert.True(t, IsSessionItem(n), n)
	}
	for _, n := range []string{"", "disk.img", "/dev/sda", "files", "header"} {
		assert.False(t, IsSessionItem(n), n)
	}
}
