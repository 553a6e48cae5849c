package restorer

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Printable returns s with every control character and invalid byte
// written as a Go escape (\n, \x1b, \u2028), and everything else as it is:
// names in an image are untrusted and must not drive the terminal that
// prints a check, a plan or a warning. Every such output goes through it.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			q := strconv.QuoteRune(r)
			if r == utf8.RuneError {
				q = `'\x` + strconv.FormatUint(uint64(s[i]), 16) + `'`
			}
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
