package schemas

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// breakingChanges lists the changes from prev to cur that are not additive: a property
// removed, a property's type changed, a property newly required, an enum value removed.
// It walks both schemas in step through properties, items, $defs and the branches of
// allOf/anyOf/oneOf. Each finding names its place with a JSON pointer.
func breakingChanges(prev, cur map[string]any) []string {
	var out []string
	compareSchema("", prev, cur, &out)
	return out
}

func compareSchema(at string, prev, cur map[string]any, out *[]string) {
	report := func(format string, args ...any) {
		where := at
		if where == "" {
			where = "/"
		}
		*out = append(*out, where+": "+fmt.Sprintf(format, args...))
	}

	if pt, ct := typeSet(prev["type"]), typeSet(cur["type"]); !slices.Equal(pt, ct) {
		report("type changed from %v to %v", pt, ct)
	}

	prevReq, curReq := stringSet(prev["required"]), stringSet(cur["required"])
	for _, name := range curReq {
		if !slices.Contains(prevReq, name) {
			report("property %q became required", name)
		}
	}

	if prevEnum, ok := prev["enum"].([]any); ok {
		curEnum, curHas := cur["enum"].([]any)
		for _, v := range prevEnum {
			if curHas && !slices.ContainsFunc(curEnum, func(w any) bool { return reflect.DeepEqual(v, w) }) {
				report("enum value %v removed", v)
			}
		}
	} else if _, ok := cur["enum"]; ok {
		report("enum added")
	}

	for _, kw := range []string{"properties", "$defs"} {
		prevProps, _ := prev[kw].(map[string]any)
		curProps, _ := cur[kw].(map[string]any)
		for _, name := range slices.Sorted(maps.Keys(prevProps)) {
			p, _ := prevProps[name].(map[string]any)
			c, ok := curProps[name].(map[string]any)
			if !ok {
				if kw == "properties" {
					report("property %q removed", name)
				} else {
					report("definition %q removed", name)
				}
				continue
			}
			compareSchema(at+"/"+kw+"/"+name, p, c, out)
		}
	}

	if p, ok := prev["items"].(map[string]any); ok {
		if c, ok := cur["items"].(map[string]any); ok {
			compareSchema(at+"/items", p, c, out)
		} else {
			report("items schema removed")
		}
	}

	// More anyOf branches accept more; fewer, or a new anyOf, accept less. Any change
	// to allOf or oneOf may reject what was valid.
	for _, kw := range []string{"allOf", "anyOf", "oneOf"} {
		p, _ := prev[kw].([]any)
		c, _ := cur[kw].([]any)
		widened := kw == "anyOf" && len(p) > 0 && len(c) > len(p)
		if len(p) != len(c) && !widened {
			report("%s changed from %d to %d branches", kw, len(p), len(c))
		}
		for i := range min(len(p), len(c)) {
			pb, _ := p[i].(map[string]any)
			cb, _ := c[i].(map[string]any)
			compareSchema(fmt.Sprintf("%s/%s/%d", at, kw, i), pb, cb, out)
		}
	}
}

// typeSet reads "type" (a string or a list of strings) as a sorted list.
func typeSet(v any) []string {
	if s, ok := v.(string); ok {
		return []string{s}
	}
	return stringSet(v)
}

func stringSet(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func TestBreakingChanges(t *testing.T) {
	base := `{
		"type": "object",
		"required": ["page_id"],
		"properties": {
			"page_id": {"type": "string"},
			"direction": {"type": "string", "enum": ["inbound", "outbound"]},
			"attachments": {"type": "array", "items": {"$ref": "#/$defs/attachment"}},
			"tags": {"type": "array", "items": {"type": "string"}}
		},
		"$defs": {"attachment": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}, "url": {"type": "string"}}}},
		"anyOf": [{"required": ["page_id"]}]
	}`
	tests := []struct {
		name   string
		change func(s map[string]any)
		want   []string
	}{
		{"no change", func(map[string]any) {}, nil},
		{"an optional property added", func(s map[string]any) {
			prop(s, "properties")["text"] = map[string]any{"type": "string"}
		}, nil},
		{"an enum value added", func(s map[string]any) {
			prop(prop(s, "properties"), "direction")["enum"] = []any{"inbound", "outbound", "sideways"}
		}, nil},
		{"a description changed", func(s map[string]any) {
			prop(prop(s, "properties"), "page_id")["description"] = "the page"
		}, nil},
		{"a required property no longer required", func(s map[string]any) {
			s["required"] = []any{}
		}, nil},
		{"a property removed", func(s map[string]any) {
			delete(prop(s, "properties"), "direction")
		}, []string{`/: property "direction" removed`}},
		{"a property's type changed", func(s map[string]any) {
			prop(prop(s, "properties"), "page_id")["type"] = "integer"
		}, []string{`/properties/page_id: type changed from [string] to [integer]`}},
		{"a property's type widened to a list", func(s map[string]any) {
			prop(prop(s, "properties"), "page_id")["type"] = []any{"string", "null"}
		}, []string{`/properties/page_id: type changed from [string] to [null string]`}},
		{"an array's item type changed", func(s map[string]any) {
			prop(prop(prop(s, "properties"), "tags"), "items")["type"] = "number"
		}, []string{`/properties/tags/items: type changed from [string] to [number]`}},
		{"a new required property", func(s map[string]any) {
			prop(s, "properties")["psid"] = map[string]any{"type": "string"}
			s["required"] = []any{"page_id", "psid"}
		}, []string{`/: property "psid" became required`}},
		{"an existing property made required", func(s map[string]any) {
			s["required"] = []any{"direction", "page_id"}
		}, []string{`/: property "direction" became required`}},
		{"an enum value removed", func(s map[string]any) {
			prop(prop(s, "properties"), "direction")["enum"] = []any{"inbound"}
		}, []string{`/properties/direction: enum value outbound removed`}},
		{"an enum put on a free string", func(s map[string]any) {
			prop(prop(s, "properties"), "page_id")["enum"] = []any{"1"}
		}, []string{`/properties/page_id: enum added`}},
		{"a property removed from a definition", func(s map[string]any) {
			delete(prop(prop(prop(s, "$defs"), "attachment"), "properties"), "url")
		}, []string{`/$defs/attachment: property "url" removed`}},
		{"a definition removed", func(s map[string]any) {
			delete(s, "$defs")
		}, []string{`/: definition "attachment" removed`}},
		{"a requirement added inside anyOf", func(s map[string]any) {
			s["anyOf"] = []any{map[string]any{"required": []any{"page_id", "psid"}}}
		}, []string{`/anyOf/0: property "psid" became required`}},
		{"an anyOf branch added", func(s map[string]any) {
			s["anyOf"] = append(s["anyOf"].([]any), map[string]any{"required": []any{"psid"}})
		}, nil},
		{"an anyOf branch removed", func(s map[string]any) {
			s["anyOf"] = []any{}
		}, []string{`/: anyOf changed from 1 to 0 branches`}},
		{"an anyOf added", func(s map[string]any) {
			prop(prop(s, "properties"), "direction")["anyOf"] = []any{map[string]any{"const": "inbound"}}
		}, []string{`/properties/direction: anyOf changed from 0 to 1 branches`}},
		{"an allOf branch added", func(s map[string]any) {
			s["allOf"] = []any{map[string]any{"required": []any{"psid"}}}
		}, []string{`/: allOf changed from 0 to 1 branches`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev, cur := decodeSchema(t, base), decodeSchema(t, base)
			tt.change(cur)
			got := breakingChanges(prev, cur)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("breakingChanges after %s (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func prop(s map[string]any, name string) map[string]any { return s[name].(map[string]any) }

func decodeSchema(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSchemasAreAdditive compares every schema with its previous revision in
// testdata/previous. When a release is cut, copy json/*.json there: that is the new
// baseline. A breaking change needs a new type version, not an edit.
func TestSchemasAreAdditive(t *testing.T) {
	current, err := filepath.Glob(filepath.Join("json", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	previous, err := filepath.Glob(filepath.Join("testdata", "previous", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(previous) == 0 {
		t.Fatal("testdata/previous holds no schemas, want the baseline revision of json/*.json")
	}
	for _, prevPath := range previous {
		name := filepath.Base(prevPath)
		t.Run(name, func(t *testing.T) {
			curPath := filepath.Join("json", name)
			if !slices.Contains(current, curPath) {
				t.Fatalf("%s was removed; a published schema must stay (old records are replayed)", curPath)
			}
			prev, cur := readSchema(t, prevPath), readSchema(t, curPath)
			if changes := breakingChanges(prev, cur); len(changes) > 0 {
				t.Errorf("%s changed in a way that is not additive since testdata/previous:\n\t%s\nadd a new version of the type instead",
					curPath, strings.Join(changes, "\n\t"))
			}
		})
	}
}

func readSchema(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return decodeSchema(t, string(b))
}
