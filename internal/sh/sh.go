// Package sh quotes words for sh. It is internal: no API.
package sh

import "strings"

// Quote returns s as one sh word, whatever it holds: single-quoted, with
// every ' in it as '\”.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
