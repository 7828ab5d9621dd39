package ra

import (
	"encoding/hex"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var sample = Advert{HopLimit: 64, SourceMAC: net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}, Prefix: DefaultPrefix,
	OnLink: true, Auto: true, ValidLifetime: time.Hour, PreferredLife: 30 * time.Minute}

func TestMarshalBytes(t *testing.T) {
	b, err := sample.Marshal()
	require.NoError(t, err)
	// type 134, hop limit 64, lifetime 0; SLLA option; prefix option /64 L|A 3600 s 1800 s fd68:6572:6400::
	want := "86000000400000000000000000000000" + "0101525400123456" +
		"030440c0" + "00000e10" + "00000708" + "00000000" + "fd686572640000000000000000000000"
	assert.Equal(t, want, hex.EncodeToString(b))
	got, err := Parse(b)
	require.NoError(t, err)
	assert.Equal(t, sample, got)
}

func TestMarshalRefusesBadPrefix(t *testing.T) {
	a := sample
	a.Prefix = netip.MustParsePrefix("10.0.0.0/24")
	_, err := a.Marshal()
	require.ErrorIs(t, err, ErrPrefix)
	a.Prefix = netip.MustParsePrefix("fd00::/48")
	_, err = a.Marshal()
	require.ErrorIs(t, err, ErrPrefix)
}

func TestParseErrors(t *testing.T) {
	good, err := sample.Marshal()
	require.NoError(t, err)
	_, err = Parse(good[:10])
	require.ErrorIs(t, err, ErrShort)
	bad := append([]byte(nil), good...)
	bad[0] = 133
	_, err = Parse(bad)
	require.ErrorIs(t, err, ErrType)
	bad = append([]byte(nil), good...)
	bad[17] = 0 // option length 0
	_, err = Parse(bad)
	require.ErrorIs(t, err, ErrOption)
	_, err = Parse(good[:len(good)-4]) // truncated prefix option
	require.ErrorIs(t, err, ErrOption)
}

func FuzzParse(f *testing.F) {
	good, _ := sample.Marshal()
	f.Add(good)
	f.Add(good[:16])
	noLL := sample
	noLL.SourceMAC = nil
	b, _ := noLL.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Parse(b)
		if err != nil {
			return
		}
		if a.Prefix.IsValid() && a.Prefix.Bits() == 64 && a.Prefix.Addr().Is6() {
			// What parses re-encodes to something that parses the same.
			out, err := a.Marshal()
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			again, err := Parse(out)
			if err != nil || again.Prefix.Masked() != a.Prefix.Masked() || again.OnLink != a.OnLink || again.Auto != a.Auto {
				t.Fatalf("round trip changed %+v into %+v (%v)", a, again, err)
			}
		}
	})
}
