package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ok(b bool) *bool { return &b }

// Every event kind, every field, written and read back the same.
func TestRoundTrip(t *testing.T) {
	items := []Item{{Name: "disk.img", Dest: "/dev/sda", Bytes: 1 << 20, Digest: "ab12", Verified: true}}
	for _, ev := range []Event{
		{Event: Progress, Seconds: 1.5, Total: 2 << 20, Bytes: 1 << 20,
			Nodes: []Node{{Index: 0, Addr: "10.0.0.1:9998", State: "receiving", Bytes: 1 << 20, Rate: 1e6}}},
		{Event: Summary, OK: ok(false), Seconds: 3, Bytes: 2 << 20, Items: items,
			Nodes: []Node{
				{Index: 0, Addr: "10.0.0.1:9998", State: "done", Bytes: 2 << 20, Items: items},
				{Index: 1, Addr: "10.0.0.2:9998", State: "failed", Bytes: 5, Error: "dead at offset 5: EOF"},
			},
			Stats:    []Stats{{Item: "disk.img", DeviceBytes: 4 << 20, UsedBytes: 2 << 20, WireBytes: 1 << 20, Method: "ext4"}},
			Compress: "zstd", WireBytes: 1 << 20, Insecure: true},
		{Event: Deploy, OK: ok(false), Seconds: 90,
			Machines: []Machine{
				{MAC: "52:54:00:00:00:01", Name: "n1", IP: "10.0.0.1", OK: true, State: "local"},
				{MAC: "52:54:00:00:00:02", IP: "10.0.0.2", State: "failed", Reason: "agent: read-back mismatch"},
			},
			Chains: []Chain{{Name: "image", Error: "1 of 2 nodes failed", Nodes: []ChainNode{
				{MAC: "52:54:00:00:00:01", Addr: "10.0.0.1:9998", State: "done"},
				{MAC: "52:54:00:00:00:02", Addr: "10.0.0.2:9998", State: "failed", Error: "dead at offset 0: EOF"},
			}}}},
	} {
		var b bytes.Buffer
		require.NoError(t, Write(&b, ev))
		assert.True(t, strings.HasSuffix(b.String(), "}\n"))
		assert.Contains(t, b.String(), `"version":1`)
		got, err := Parse(bytes.TrimSpace(b.Bytes()))
		require.NoError(t, err)
		ev.Version = Version
		assert.Equal(t, ev, *got)
	}
}

// A line of herd before versions reads as version 1; a newer version is
// refused, not misread; a line that is no event is said to be none.
func TestParseVersionsAndBadLines(t *testing.T) {
	ev, err := Parse([]byte(`{"event":"summary","ok":true,"seconds":1,"bytes":4,"nodes":[{"index":0,"addr":"a","state":"done","bytes":4,"rate":0,"error":""}]}`))
	require.NoError(t, err)
	assert.Equal(t, 1, ev.Version)
	assert.True(t, ev.IsSummary())
	assert.Equal(t, "", ev.Failed())

	_, err = Parse([]byte(`{"version":2,"event":"summary","ok":true}`))
	assert.ErrorIs(t, err, ErrVersion)
	assert.ErrorContains(t, err, "version 2")
	_, err = Parse([]byte(`{"version":-1,"event":"summary"}`))
	assert.ErrorIs(t, err, ErrVersion)

	for _, line := range []string{"", "herd: listening on :9998", "{}", `{"event":""}`, "[1,2]", `{"event":3}`, "null"} {
		_, err := Parse([]byte(line))
		assert.ErrorIs(t, err, ErrNotEvent, line)
	}
	_, err = Parse(bytes.Repeat([]byte(" "), MaxLine+1))
	assert.ErrorIs(t, err, ErrNotEvent)
}

func TestScanAndLastSummary(t *testing.T) {
	in := `log line
{"version":1,"event":"progress","seconds":1,"bytes":1,"nodes":[]}
{"version":1,"event":"summary","ok":false,"seconds":2,"bytes":2,"nodes":[{"index":0,"addr":"a","state":"failed","bytes":0,"rate":0,"error":"unreachable"}]}
`
	var kinds []string
	require.NoError(t, Scan(strings.NewReader(in), func(ev *Event) error { kinds = append(kinds, ev.Event); return nil }))
	assert.Equal(t, []string{Progress, Summary}, kinds)
	last, err := LastSummary(strings.NewReader(in))
	require.NoError(t, err)
	require.NotNil(t, last)
	assert.False(t, *last.OK)
	assert.Equal(t, "unreachable", last.Failed())

	last, err = LastSummary(strings.NewReader("no summary\n"))
	require.NoError(t, err)
	assert.Nil(t, last)
	_, err = LastSummary(strings.NewReader(`{"version":9,"event":"summary","ok":true}` + "\n"))
	assert.ErrorIs(t, err, ErrVersion)
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"event":"summary","ok":true,"nodes":[{"index":0}]}`))
	f.Add([]byte(`{"event":"progress","total":5}`))
	f.Add([]byte(`not json`))
	f.Add([]byte(`{"version":1,"event":"deploy","ok":false,"machines":[{"mac":"52:54:00:00:00:01","ok":true,"state":"local"}],"chains":[{"name":"image","ok":true,"nodes":[{"mac":"52:54:00:00:00:01","addr":"a:1","state":"done"}]}]}`))
	f.Add([]byte(`{"event":"deploy","machines":null,"chains":[{"nodes":[null]}]}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, err := Parse(line)
		if err != nil {
			return
		}
		if ev.Event == "" || ev.Version != Version {
			t.Fatalf("%q: %+v", line, ev)
		}
		var b bytes.Buffer
		if err := Write(&b, *ev); err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(bytes.TrimSpace(b.Bytes())); err != nil {
			t.Fatalf("%q written back does not parse: %v", b.String(), err)
		}
	})
}
