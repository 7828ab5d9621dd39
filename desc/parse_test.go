package desc

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The two descs of the seed document (KA's default and the large-disk fix).
const (
	seedKA = `linux 3500
extended fill
logical swap 500
logical linux fill
`
	seedLarge = `swap 509
linux 5992
extended fill
logical linux 52281
logical linux 19375
logical linux 78167
logical linux fill
`
)

func TestDescParseSeedExamples(t *testing.T) {
	d, err := Parse(seedKA)
	require.NoError(t, err)
	require.Len(t, d.Parts, 4)
	assert.Equal(t, MBR, d.Table)
	assert.Equal(t, "linux", d.Parts[0].Type.Name)
	assert.Equal(t, byte(0x83), d.Parts[0].Type.MBR)
	assert.Equal(t, 3500*MiB, d.Parts[0].Size.Bytes)
	assert.True(t, d.Parts[1].Type.IsExtended())
	assert.Equal(t, SizeFill, d.Parts[1].Size.Kind)
	assert.True(t, d.Parts[2].Logical)
	assert.Equal(t, byte(0x82), d.Parts[2].Type.MBR)
	assert.Equal(t, "swap", d.Parts[2].Filesystem())
	assert.Equal(t, "ext4", d.Parts[3].Filesystem())
	assert.Equal(t, seedKA, d.String(), "a KA desc prints back unchanged")

	d, err = Parse(seedLarge)
	require.NoError(t, err)
	require.Len(t, d.Parts, 7)
	assert.Equal(t, seedLarge, d.String())
}

func TestDescParseExtensions(t *testing.T) {
	text := `# herd desc with extensions
table gpt
esp 512M fs=vfat label=EFI mount=/boot/efi   # EFI system partition
bios 1M
linux 20G fs=xfs label=root mount=/ boot
swap 5%
linux fill fs=ext3 label=var mount=/var uuid=0b9c1c8e-3b1a-4b6e-9c4d-1b2a3c4d5e6f name=data
`
	d, err := Parse(text)
	require.NoError(t, err)
	assert.Equal(t, GPT, d.Table)
	require.Len(t, d.Parts, 5)
	assert.Equal(t, "esp", d.Parts[0].Type.Name)
	assert.Equal(t, 512*MiB, d.Parts[0].Size.Bytes)
	assert.Equal(t, "vfat", d.Parts[0].FS)
	assert.Equal(t, "/boot/efi", d.Parts[0].Mount)
	assert.Equal(t, "bios", d.Parts[1].Type.Name)
	assert.Equal(t, 20*GiB, d.Parts[2].Size.Bytes)
	assert.True(t, d.Parts[2].Boot)
	assert.Equal(t, Size{Kind: SizePercent, Percent: 5}, d.Parts[3].Size)
	assert.Equal(t, "ext3", d.Parts[4].Filesystem())
	assert.Equal(t, "data", d.Parts[4].Name)

	// String → Parse gives the same model.
	d2, err := Parse(d.String())
	require.NoError(t, err)
	assert.Equal(t, d.String(), d2.String())
	for i := range d.Parts {
		a, b := d.Parts[i], d2.Parts[i]
		a.Line, b.Line, a.cols, b.cols = 0, 0, [2]int{}, [2]int{}
		assert.Equal(t, a, b)
	}
}

func TestDescParseQuotedValues(t *testing.T) {
	d, err := Parse("table gpt\nesp 100M label=\"EFI\" name=\"EFI System Partition\" # ESP\nlinux fill name=\"a#b\"\n")
	require.NoError(t, err)
	assert.Equal(t, "EFI", d.Parts[0].Label)
	assert.Equal(t, "EFI System Partition", d.Parts[0].Name)
	assert.Equal(t, "a#b", d.Parts[1].Name)
	assert.Equal(t, "table gpt\nesp 100 label=EFI name=\"EFI System Partition\"\nlinux fill name=\"a#b\"\n", d.String())
}

func TestDescParseTypeNN(t *testing.T) {
	d, err := Parse("type83 100\ntypeb 200 # fat32\ntype0F fill\nlogical type7 fill\n")
	require.NoError(t, err)
	assert.Equal(t, byte(0x83), d.Parts[0].Type.MBR)
	assert.Equal(t, "ext4", d.Parts[0].Filesystem(), "type83 is linux")
	assert.Equal(t, byte(0x0b), d.Parts[1].Type.MBR)
	assert.Equal(t, "none", d.Parts[1].Filesystem())
	assert.True(t, d.Parts[2].Type.IsExtended(), "type0f is an extended (LBA) container")
	assert.Equal(t, byte(0x07), d.Parts[3].Type.MBR)
}

func TestDescParseSizes(t *testing.T) {
	for in, want := range map[string]Size{
		"3500":  {Bytes: 3500 * MiB},
		"512M":  {Bytes: 512 * MiB},
		"512MB": {Bytes: 512e6},
		"2GiB":  {Bytes: 2 * GiB},
		"2g":    {Bytes: 2 * GiB},
		"1T":    {Bytes: TiB},
		"4096B": {Bytes: 4096},
		"64K":   {Bytes: 64 * KiB},
		"25%":   {Kind: SizePercent, Percent: 25},
		"FILL":  Fill,
	} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "M", "0", "12Q", "0%", "101%", "-5", "1.5G", "99999999999999999999", "9999999999T"} {
		_, err := ParseSize(in)
		assert.Error(t, err, in)
	}
}

func TestDescParseErrors(t *testing.T) {
	cases := []struct {
		name, text string
		line, col  int
		msg        string
	}{
		{"unknown type", "linux 100\nwindows 200\n", 2, 1, "unknown partition type"},
		{"bad size", "linux 100\n  swap 12Q\n", 2, 8, "bad size unit"},
		{"missing size", "linux\n", 1, 6, "missing size"},
		{"missing type", "logical\n", 1, 8, "missing partition type"},
		{"too many primaries", "linux 1\nlinux 1\nlinux 1\nswap 1\nlinux fill\n", 5, 1, "too many primary partitions"},
		{"fill not last", "linux fill\nswap 500\n", 1, 7, "`fill` must be the last primary"},
		{"logical fill not last", "extended fill\nlogical linux fill\nlogical swap 1\n", 2, 15, "`fill` must be the last logical"},
		{"logical without extended", "linux 100\nlogical swap 500\n", 2, 1, "without an extended"},
		{"logical not after extended", "extended 1000\nlinux 100\nlogical swap 500\n", 3, 1, "must follow its extended"},
		{"two extended", "extended 100\nextended 100\n", 2, 1, "second extended"},
		{"logicals do not fit", "extended 1000\nlogical linux 500\nlogical swap 500\n", 3, 14, "do not fit"},
		{"gpt logical", "table gpt\nlinux 100\nlogical linux 100\n", 3, 1, "GPT has no extended"},
		{"gpt typeNN without guid", "table gpt\ntype07 100\n", 2, 1, "no GPT type GUID"},
		{"mbr bios", "bios 1\n", 1, 1, "only in GPT"},
		{"table late", "linux 1\ntable gpt\n", 2, 1, "before the first partition"},
		{"table twice", "table gpt\ntable mbr\n", 2, 1, "second `table`"},
		{"table kind", "table apm\n", 1, 7, "unknown table kind"},
		{"unknown key", "linux 1 color=red\n", 1, 9, "unknown key"},
		{"unknown flag", "linux 1 fast\n", 1, 9, "unknown flag"},
		{"unknown fs", "linux 1 fs=btrfs\n", 1, 12, "unknown filesystem"},
		{"relative mount", "linux 1 mount=var\n", 1, 15, "absolute path"},
		{"key twice", "linux 1 fs=xfs fs=ext4\n", 1, 16, "given twice"},
		{"label too long", "linux 1 fs=xfs label=abcdefghijklm\n", 1, 1, "too long for xfs"},
		{"percent sum", "linux 60%\nlinux 50%\n", 2, 1, "add up to 110%"},
		{"empty value", "linux 1 label=\n", 1, 15, "empty value"},
		{"bad uuid", "linux 1 uuid=xyz\n", 1, 14, "bad uuid"},
		{"extended with fs", "extended 100 fs=ext4\n", 1, 1, "holds no filesystem"},
		{"no partitions", "# nothing\n\n", 3, 1, "no partitions"},
		{"unterminated quote", "linux 1 label=\"a b\n", 1, 15, "unterminated double quote"},
		{"bad quotes", "linux 1 label=a\"b\"c\n", 1, 15, "bad quotes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.text)
			require.Error(t, err)
			var pe *ParseError
			require.True(t, errors.As(err, &pe), "error %v is not a *ParseError", err)
			assert.Equal(t, c.line, pe.Line, "line of %v", err)
			assert.Equal(t, c.col, pe.Col, "column of %v", err)
			assert.Contains(t, pe.Msg, c.msg)
			assert.Contains(t, err.Error(), "desc:")
		})
	}
}

func TestDescParseErrorTooSmallSentinel(t *testing.T) {
	_, err := Parse("extended 10\nlogical linux 10\n")
	require.ErrorIs(t, err, ErrTooSmall)
}
