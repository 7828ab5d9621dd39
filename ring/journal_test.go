package ring

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/ring/seal"
	"github.com/herd-cluster/herd/ring/wire"
)

// sampleJournal writes a journal of two chunks and an item end.
func sampleJournal(t testing.TB) []byte {
	dir := t.TempDir()
	m := &wire.Manifest{Session: wire.SessionID{7}, ChunkSize: 8, Nodes: []string{"a:1", "b:2"},
		Items: []wire.ManifestItem{{Name: "img", Dest: "/img", Size: 16}}}
	jw, err := createJournal(dir, 1, m, seal.JournalKey(testKey, m.Session, 1))
	require.NoError(t, err)
	jw.chunk(0, 0, []byte("abcdefgh"))
	jw.chunk(0, 8, []byte("ijklmnop"))
	jw.itemEnd(&wire.ItemEnd{Item: 0, Size: 16, Bytes: 16, Digest: [wire.DigestSize]byte{1}, Layout: 9})
	jw.close()
	b, err := os.ReadFile(filepath.Join(dir, journalName))
	require.NoError(t, err)
	return b
}

func TestJournalRoundTrip(t *testing.T) {
	b := sampleJournal(t)
	j, err := parseJournal(b)
	require.NoError(t, err)
	assert.Equal(t, wire.SessionID{7}, j.session)
	assert.Equal(t, uint32(1), j.index)
	assert.Equal(t, []string{"a:1", "b:2"}, j.man.Nodes)
	require.Len(t, j.recs, 3)
	assert.Equal(t, int64(8), j.recs[1].off)
	assert.Equal(t, 8, j.recs[1].n)
	require.NotNil(t, j.recs[2].end)
	assert.Equal(t, int64(len(b)), j.recs[2].at)

	// A torn last record (a crash while it was written) is dropped.
	j, err = parseJournal(b[:len(b)-3])
	require.NoError(t, err)
	assert.Len(t, j.recs, 2)

	// Garbage is refused with its offset.
	bad := append(append([]byte(nil), b...), 'Z')
	_, err = parseJournal(bad)
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrJournal))
	assert.Contains(t, err.Error(), "unknown record")
	_, err = parseJournal([]byte("HERDJNL0 nothing here at all"))
	assert.ErrorIs(t, err, ErrJournal)
}

func FuzzParseJournal(f *testing.F) {
	b := sampleJournal(f)
	f.Add(b)
	f.Add(b[:len(b)-5])
	f.Add([]byte(journalMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := parseJournal(b)
		if err != nil {
			return
		}
		for _, r := range j.recs {
			if r.end == nil && (r.n <= 0 || r.n > int(j.man.ChunkSize) || r.item >= len(j.man.Items)) {
				t.Fatalf("accepted a bad chunk record %+v", r)
			}
			if r.at > int64(len(b)) {
				t.Fatalf("record ends past the journal")
			}
		}
	})
}
