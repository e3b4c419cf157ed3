package graphsim

import (
	"fmt"
	"strconv"
	"strings"
)

// field is one entry of a fields parameter: name, .limit(n) and a {sub-selection}, as in
// messages.limit(20){id,created_time,from}. Other modifiers (.order, .summary) are
// accepted and ignored.
type field struct {
	name  string
	limit int // 0 when not given
	sub   []field
	raw   string // the sub-selection's text, for next links
}

func parseFields(s string) ([]field, error) {
	p := fieldParser{s: s}
	fs, err := p.list()
	if err != nil {
		return nil, err
	}
	if p.i != len(s) {
		return nil, fmt.Errorf("unexpected %q at offset %d", s[p.i], p.i)
	}
	return fs, nil
}

type fieldParser struct {
	s string
	i int
}

func (p *fieldParser) space() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *fieldParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *fieldParser) ident() string {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			break
		}
		p.i++
	}
	return p.s[start:p.i]
}

func (p *fieldParser) list() ([]field, error) {
	var out []field
	for {
		p.space()
		if c := p.peek(); c == 0 || c == '}' {
			return out, nil
		}
		f, err := p.field()
		if err != nil {
			return nil, err
		}
		out = append(out, f)
		p.space()
		if p.peek() != ',' {
			return out, nil
		}
		p.i++
	}
}

func (p *fieldParser) field() (field, error) {
	f := field{name: p.ident()}
	if f.name == "" {
		return f, fmt.Errorf("expected a field name at offset %d", p.i)
	}
	for p.peek() == '.' {
		p.i++
		mod := p.ident()
		if p.peek() != '(' {
			return f, fmt.Errorf("expected ( after .%s", mod)
		}
		end := strings.IndexByte(p.s[p.i:], ')')
		if end < 0 {
			return f, fmt.Errorf("unclosed .%s(", mod)
		}
		arg := p.s[p.i+1 : p.i+end]
		p.i += end + 1
		if mod == "limit" {
			n, err := strconv.Atoi(strings.TrimSpace(arg))
			if err != nil || n < 0 {
				return f, fmt.Errorf("bad limit %q", arg)
			}
			f.limit = n
		}
	}
	if p.peek() == '{' {
		p.i++
		start := p.i
		sub, err := p.list()
		if err != nil {
			return f, err
		}
		if p.peek() != '}' {
			return f, fmt.Errorf("unclosed { of %s", f.name)
		}
		f.raw, f.sub = p.s[start:p.i], sub
		p.i++
	}
	return f, nil
}

// project keeps the selected keys of a rendered object (and "id"), or of each element of
// an edge's data list; no selection keeps everything.
func project(v any, fs []field) any {
	if len(fs) == 0 {
		return v
	}
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	if data, ok := m["data"].([]map[string]any); ok {
		out := make([]map[string]any, len(data))
		for i, e := range data {
			out[i] = project(e, fs).(map[string]any)
		}
		return map[string]any{"data": out}
	}
	out := map[string]any{}
	if id, ok := m["id"]; ok {
		out["id"] = id
	}
	for _, f := range fs {
		if x, ok := m[f.name]; ok {
			out[f.name] = project(x, f.sub)
		}
	}
	return out
}
