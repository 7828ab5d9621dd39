package inventory

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExpandHostlist(t *testing.T) {
	for in, want := range map[string][]string{
		"node[01-04]":             {"node01", "node02", "node03", "node04"},
		"node[1-3,7],gpu[01-02]":  {"node1", "node2", "node3", "node7", "gpu01", "gpu02"},
		"rack[1-2]-n[01-02]":      {"rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"},
		"node[8-11]":              {"node8", "node9", "node10", "node11"},
		"node[098-101]":           {"node098", "node099", "node100", "node101"},
		"n[0-1]":                  {"n0", "n1"},
		"[1-2]x":                  {"1x", "2x"},
		"a, b ,c,":                {"a", "b", "c"},
		"52:54:00:00:00:01,node1": {"52:54:00:00:00:01", "node1"},
		"plain":                   {"plain"},
		"":                        nil,
		"n[5]":                    {"n5"},
		"x[1-2]y[1-1]z":           {"x1y1z", "x2y1z"},
		"node[01-02],node01":      {"node01", "node02", "node01"},
	} {
		got, err := ExpandHostlist(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	all, err := ExpandHostlist("n[00001-100000]")
	require.NoError(t, err)
	assert.Len(t, all, MaxHostlist)
	assert.Equal(t, "n00001", all[0])
	assert.Equal(t, "n100000", all[len(all)-1])
}

func TestExpandHostlistErrors(t *testing.T) {
	for in, want := range map[string]string{
		"node[5-1]":             `range 5-1 goes down; write 1-5`,
		"node[]":                "empty brackets",
		"node[1-2":              "'[' without ']'",
		"node1-2]":              "']' without '['",
		"node[[1-2]]":           "a bracket inside a bracket",
		"node[a-b]":             `"a" in brackets`,
		"node[1-2-3]":           `"2-3" in brackets`,
		"node[-3]":              `"" in brackets`,
		"node[1,]":              `"" in brackets`,
		"node[1234567890]":      `"1234567890" in brackets`,
		"n[1-100001]":           "more than 100000 names",
		"n[1-1000]m[1-1000]":    "more than 100000 names",
		"a[1-60000],b[1-60000]": "more than 100000 names",
		"n[1-999999999]":        "more than 100000 names",
		"node[ 1 - 2 ]":         `"1 " in brackets`,
	} {
		_, err := ExpandHostlist(in)
		require.ErrorIs(t, err, ErrHostlist, in)
		assert.Contains(t, err.Error(), want, in)
	}
}

func FuzzExpandHostlist(f *testing.F) {
	for _, s := range []string{"node[01-64]", "node[1-3,7],gpu[01-02]", "rack[1-2]-n[01-04]", "a,b", "n[5-1]", "[", "]", "x[0001-0003]y", "52:54:00:00:00:01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names, err := ExpandHostlist(s)
		if err != nil {
			require.ErrorIs(t, err, ErrHostlist)
			return
		}
		require.LessOrEqual(t, len(names), MaxHostlist)
		for _, n := range names {
			require.NotEmpty(t, n)
			require.NotContains(t, n, "[")
			require.NotContains(t, n, "]")
		}
		// Text without brackets comes back as its comma-separated parts.
		if !strings.ContainsAny(s, "[]") {
			var want []string
			for _, p := range strings.Split(s, ",") {
				if p = strings.TrimSpace(p); p != "" {
					want = append(want, p)
				}
			}
			require.Equal(t, want, names)
		}
	})
}
