package projector

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// What Postgres cannot store is made storable here, so that one odd value in a webhook
// cannot stop a partition: text cannot hold NUL, and jsonb refuses the escape \u0000 and
// a UTF-16 surrogate escape that is not one half of a pair (Meta's payloads are JSON that
// other parsers accept). Each becomes U+FFFD, as invalid UTF-8 already does when the
// events are decoded. What Postgres still refuses is isolated by the worker (refused.go).

// nullString is s for a text column: NULL when empty; NUL becomes U+FFFD.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return pgText(s)
}

// pgText is s with NUL, and any invalid UTF-8, as U+FFFD.
func pgText(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
}

// jsonText is raw JSON for a jsonb column, with \u0000 and every unpaired surrogate
// escape inside its strings written as \ufffd. It reads escapes as JSON does: "\\u0000"
// is a backslash and five letters, and stays.
func jsonText(b []byte) string {
	if !strings.Contains(string(b), `\u`) && utf8.Valid(b) {
		return string(b)
	}
	var out strings.Builder
	out.Grow(len(b))
	for i := 0; i < len(b); {
		c := b[i]
		if c != '\\' || i+1 >= len(b) {
			out.WriteByte(c)
			i++
			continue
		}
		if b[i+1] != 'u' || i+6 > len(b) {
			out.Write(b[i : i+2]) // \" \\ \n …: the escaped character cannot start another escape
			i += 2
			continue
		}
		r, ok := hex4(b[i+2 : i+6])
		switch {
		case !ok:
			out.Write(b[i : i+2])
			i += 2
		case r == 0:
			out.WriteString(`\ufffd`)
			i += 6
		case r >= 0xD800 && r <= 0xDBFF: // a high half: valid only before a low half
			if i+12 <= len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
				if lo, ok := hex4(b[i+8 : i+12]); ok && lo >= 0xDC00 && lo <= 0xDFFF {
					out.Write(b[i : i+12])
					i += 12
					continue
				}
			}
			out.WriteString(`\ufffd`)
			i += 6
		case r >= 0xDC00 && r <= 0xDFFF: // a low half with no high half before it
			out.WriteString(`\ufffd`)
			i += 6
		default:
			out.Write(b[i : i+6])
			i += 6
		}
	}
	return strings.ToValidUTF8(out.String(), "\uFFFD")
}

func hex4(b []byte) (rune, bool) {
	n, err := strconv.ParseUint(string(b), 16, 16)
	return rune(n), err == nil
}
