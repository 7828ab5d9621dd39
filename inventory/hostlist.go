package inventory

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxHostlist is the most names ExpandHostlist makes from one hostlist.
const MaxHostlist = 100000

// ErrHostlist is wrapped by every error of ExpandHostlist.
var ErrHostlist = errors.New("inventory: bad hostlist")

// maxRangeDigits bounds a number in a range (nine digits fit an int on
// every platform).
const maxRangeDigits = 9

// ExpandHostlist expands a hostlist, as cluster tools write machine names,
// into the names in order (duplicates kept):
//
//	node[01-04]           node01 node02 node03 node04
//	node[1-3,7],gpu[1-2]  node1 node2 node3 node7 gpu1 gpu2
//	rack[1-2]-n[01-02]    rack1-n01 rack1-n02 rack2-n01 rack2-n02
//
// Names are separated by commas outside brackets; a bracket holds numbers
// and ranges LO-HI separated by commas; several brackets in one name give
// every combination, the last bracket varying fastest. A number written
// with leading zeros (01) gives names padded to its width. Empty entries
// (a trailing comma) are skipped; text without brackets is one name
// (a MAC address too). A reversed range (5-1), an empty or unclosed
// bracket, anything but digits, commas and dashes inside one, and a list
// of more than MaxHostlist names are errors wrapping ErrHostlist.
func ExpandHostlist(s string) ([]string, error) {
	items, err := splitHostlist(s)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, it := range items {
		names, err := expandOne(it, MaxHostlist-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, names...)
	}
	return out, nil
}

// splitHostlist splits s at the commas outside brackets.
func splitHostlist(s string) ([]string, error) {
	var items []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			if depth > 0 {
				return nil, fmt.Errorf("%w: %q: a bracket inside a bracket at byte %d", ErrHostlist, s, i+1)
			}
			depth++
		case ']':
			if depth == 0 {
				return nil, fmt.Errorf("%w: %q: ']' without '[' at byte %d", ErrHostlist, s, i+1)
			}
			depth--
		case ',':
			if depth == 0 {
				items = appendItem(items, s[start:i])
				start = i + 1
			}
		}
	}
	if depth > 0 {
		return nil, fmt.Errorf("%w: %q: '[' without ']'", ErrHostlist, s)
	}
	return appendItem(items, s[start:]), nil
}

func appendItem(items []string, it string) []string {
	if it = strings.TrimSpace(it); it != "" {
		items = append(items, it)
	}
	return items
}

// part is one piece of a name: fixed text, or the numbers of a bracket.
type part struct {
	text string
	nums []string // set for a bracket
}

// expandOne expands one name with brackets into at most limit names.
func expandOne(item string, limit int) ([]string, error) {
	var parts []part
	count := 1
	for rest := item; rest != ""; {
		i := strings.IndexByte(rest, '[')
		if i < 0 {
			parts = append(parts, part{text: rest})
			break
		}
		if i > 0 {
			parts = append(parts, part{text: rest[:i]})
		}
		j := strings.IndexByte(rest, ']') // splitHostlist checked it is there
		nums, err := expandBracket(item, rest[i+1:j], limit)
		if err != nil {
			return nil, err
		}
		if len(nums) > limit/count {
			return nil, fmt.Errorf("%w: %q: more than %d names", ErrHostlist, item, MaxHostlist)
		}
		count *= len(nums)
		parts = append(parts, part{nums: nums})
		rest = rest[j+1:]
	}
	if count > limit {
		return nil, fmt.Errorf("%w: %q: more than %d names", ErrHostlist, item, MaxHostlist)
	}
	names := []string{""}
	for _, p := range parts {
		if p.nums == nil {
			for k := range names {
				names[k] += p.text
			}
			continue
		}
		next := make([]string, 0, len(names)*len(p.nums))
		for _, n := range names {
			for _, v := range p.nums {
				next = append(next, n+v)
			}
		}
		names = next
	}
	return names, nil
}

// expandBracket expands the inside of one bracket: "01-03,7".
func expandBracket(item, inner string, limit int) ([]string, error) {
	if strings.TrimSpace(inner) == "" {
		return nil, fmt.Errorf("%w: %q: empty brackets", ErrHostlist, item)
	}
	var out []string
	for _, r := range strings.Split(inner, ",") {
		r = strings.TrimSpace(r)
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, err := rangeNumber(item, lo)
		if err != nil {
			return nil, err
		}
		b, err := rangeNumber(item, hi)
		if err != nil {
			return nil, err
		}
		if b < a {
			return nil, fmt.Errorf("%w: %q: range %s goes down; write %s-%s", ErrHostlist, item, r, hi, lo)
		}
		if b-a >= limit-len(out) {
			return nil, fmt.Errorf("%w: %q: more than %d names", ErrHostlist, item, MaxHostlist)
		}
		width := 0
		if len(lo) > 1 && lo[0] == '0' {
			width = len(lo)
		}
		for n := a; n <= b; n++ {
			out = append(out, fmt.Sprintf("%0*d", width, n))
		}
	}
	return out, nil
}

// rangeNumber reads one number of a bracket.
func rangeNumber(item, s string) (int, error) {
	if s == "" || len(s) > maxRangeDigits || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w: %q: %q in brackets: want numbers and ranges like [01-64] or [1-3,7]", ErrHostlist, item, s)
	}
	return strconv.Atoi(s)
}
