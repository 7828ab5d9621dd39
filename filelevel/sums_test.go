package filelevel

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFileSumRoundTrip(t *testing.T) {
	for _, fs := range []FileSum{
		{Mount: "/", Path: "etc/hostname", Size: 7, Sum: [32]byte{1, 2, 3}},
		{Mount: "/var", Path: "log/with space\nand newline\"quote\"", Size: 1 << 40, Sum: [32]byte{31: 0xff}},
		{Mount: "/srv/a b", Path: "\xff\x00odd", Size: 0},
	} {
		line, err := fs.MarshalText()
		require.NoError(t, err)
		require.Equal(t, byte('\n'), line[len(line)-1])
		got, err := ParseFileSum(string(line[:len(line)-1]))
		require.NoError(t, err, "%q", line)
		assert.Equal(t, fs, got)
	}
	for _, bad := range []string{
		"", "abc 1 \"/\" \"x\"",
		"0000000000000000000000000000000000000000000000000000000000000000 -1 \"/\" \"x\"",
		"000000000000000000000000000000000000000000000000000000000000000g 1 \"/\" \"x\"",
		"0000000000000000000000000000000000000000000000000000000000000000 1 / x",
		"0000000000000000000000000000000000000000000000000000000000000000 1 \"/\" \"x\" extra",
		"0000000000000000000000000000000000000000000000000000000000000000 1 \"/\"",
	} {
		_, err := ParseFileSum(bad)
		assert.ErrorIs(t, err, ErrSumLine, "%q", bad)
	}
}

func FuzzParseFileSum(f *testing.F) {
	f.Add("0102030000000000000000000000000000000000000000000000000000000000 7 \"/\" \"etc/hostname\"")
	f.Add("00000000000000000000000000000000000000000000000000000000000000ff 1099511627776 \"/var\" \"log/a\\nb\"")
	f.Add("zz 1 \"/\" \"x\"")
	f.Fuzz(func(t *testing.T, line string) {
		fs, err := ParseFileSum(line)
		if err != nil {
			require.ErrorIs(t, err, ErrSumLine)
			return
		}
		// What parses prints back to a line that parses the same.
		out, err := fs.MarshalText()
		require.NoError(t, err)
		again, err := ParseFileSum(string(out[:len(out)-1]))
		require.NoError(t, err)
		assert.Equal(t, fs, again)
	})
}
