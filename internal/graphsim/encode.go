package graphsim

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// marshal encodes an answer as encoding/json does without HTML escaping, byte for byte,
// but without reflection for the shapes answers are built of (maps of strings to
// values, lists, strings, integers, booleans). The simulator shares the machine with
// the client it serves in tests and benchmarks: the encoding's CPU is time the client
// would wait that Meta does not make it wait.
func marshal(v any) []byte {
	b, err := appendJSON(make([]byte, 0, 1024), v)
	if err != nil {
		return []byte(`{"error":{"message":"encode response","type":"OAuthException","code":1,"error_subcode":0}}`)
	}
	return b
}

func appendJSON(b []byte, v any) ([]byte, error) {
	var err error
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(appendString(b, k), ':')
			if b, err = appendJSON(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case rawJSON:
		return append(b, x...), nil
	case []rawJSON:
		return appendList(b, x)
	case []map[string]any:
		return appendList(b, x)
	case []any:
		return appendList(b, x)
	case []string:
		return appendList(b, x)
	}
	// Anything else (none today) the slow way.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return append(b, bytes.TrimRight(buf.Bytes(), "\n")...), nil
}

func appendList[T any](b []byte, xs []T) ([]byte, error) {
	if xs == nil {
		return append(b, "null"...), nil
	}
	var err error
	b = append(b, '[')
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendJSON(b, x); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// appendString quotes s as encoding/json does with HTML escaping off: short escapes for
// \", \\, \b, \f, \n, \r, \t, \u00XX for other control characters, U+FFFD for invalid
// UTF-8, and U+2028 and U+2029 escaped for JavaScript.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
