package sh

import (
	"os/exec"
	"testing"
)

// FuzzQuote: sh reads every quoted word back as it was.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "a b", "it's", "'", `\'"$x` + "`id`", "a\nb"} {
		f.Add(s)
	}
	if _, err := exec.LookPath("sh"); err != nil {
		f.Skip("no sh")
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range []byte(s) {
			if c == 0 {
				return // no word holds a NUL
			}
		}
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != s {
			t.Fatalf("sh read %q back as %q", s, out)
		}
	})
}
