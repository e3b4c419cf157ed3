package schemas

import (
	"encoding/json"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEachSchemaFileCompiles(t *testing.T) {
	names, err := fs.Glob(schemaFiles, "json/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(Types())+1 {
		t.Errorf("json/ holds %d schemas, want one per type plus the envelope's (%d)", len(names), len(Types())+1)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			b, err := fs.ReadFile(schemaFiles, name)
			if err != nil {
				t.Fatal(err)
			}
			// Alone, so that no file depends on another being there.
			if _, err := compileSchemas(fstest.MapFS{name: {Data: b}}); err != nil {
				t.Fatalf("compile %s alone: %v", name, err)
			}
			var s map[string]any
			if err := json.Unmarshal(b, &s); err != nil {
				t.Fatal(err)
			}
			if got := s["$schema"]; got != "https://json-schema.org/draft/2020-12/schema" {
				t.Errorf("%s has $schema %v, want draft 2020-12", name, got)
			}
			if id, _ := s["$id"].(string); !strings.HasSuffix(id, "/"+strings.TrimPrefix(name, "json/")) {
				t.Errorf("%s has $id %q, want one ending in its file name", name, id)
			}
			for _, kw := range []string{"title", "description"} {
				if v, _ := s[kw].(string); v == "" {
					t.Errorf("%s has no %s", name, kw)
				}
			}
			for prop, p := range s["properties"].(map[string]any) {
				if d, _ := p.(map[string]any)["description"].(string); d == "" {
					t.Errorf("%s: property %s has no description; the schemas are the docs of other producers", name, prop)
				}
			}
		})
	}
}

// TestSchemasMatchGoTypes checks that each schema and the Go struct it decodes into
// agree: the same properties, required exactly when the field has no omitempty, and
// compatible JSON types. It catches a field added on one side only.
func TestSchemasMatchGoTypes(t *testing.T) {
	tests := []struct {
		file string
		at   string // JSON pointer of the object schema inside the file
		typ  reflect.Type
	}{
		{"envelope.v1.json", "", reflect.TypeFor[Envelope]()},
		{TypeMessage + ".json", "/$defs/attachment", reflect.TypeFor[Attachment]()},
		{TypeEcho + ".json", "/$defs/attachment", reflect.TypeFor[Attachment]()},
		{TypeMessageObserved + ".json", "/$defs/attachment", reflect.TypeFor[Attachment]()},
	}
	for _, ex := range examples() {
		tests = append(tests, struct {
			file string
			at   string
			typ  reflect.Type
		}{ex.data.EventType() + ".json", "", reflect.TypeOf(ex.data)})
	}
	for _, tt := range tests {
		t.Run(tt.file+tt.at, func(t *testing.T) {
			b, err := fs.ReadFile(schemaFiles, "json/"+tt.file)
			if err != nil {
				t.Fatal(err)
			}
			var s map[string]any
			if err := json.Unmarshal(b, &s); err != nil {
				t.Fatal(err)
			}
			for _, tok := range strings.Split(tt.at, "/")[1:] {
				s = s[tok].(map[string]any)
			}
			props := s["properties"].(map[string]any)
			var fields, required []string
			for f := range tt.typ.Fields() {
				name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
				if name == "-" {
					continue // never on the wire (an id fingerprint)
				}
				fields = append(fields, name)
				if !strings.Contains(opts, "omitempty") {
					required = append(required, name)
				}
				p, ok := props[name].(map[string]any)
				if !ok {
					t.Errorf("%s has no property %q for %s.%s", tt.file, name, tt.typ.Name(), f.Name)
					continue
				}
				got, want := typeSet(p["type"]), jsonTypes(f.Type)
				if f.Type == reflect.TypeFor[json.RawMessage]() && cmp.Equal(got, []string{"null", "object"}) {
					got = want // raw JSON kept as Meta sent it may be null (attachment payloads)
				}
				if f.Type == reflect.TypeFor[json.RawMessage]() && len(got) == 0 {
					got = want // any JSON value (Unknown.raw keeps whatever stood under an unknown key)
				}
				if !cmp.Equal(got, want) {
					t.Errorf("%s: property %q has type %v, want %v for Go type %s", tt.file, name, got, want, f.Type)
				}
				if f.Type == reflect.TypeFor[time.Time]() && p["format"] != "date-time" {
					t.Errorf("%s: property %q is a time without format date-time", tt.file, name)
				}
			}
			var propNames []string
			for name := range props {
				propNames = append(propNames, name)
			}
			slices.Sort(fields)
			slices.Sort(propNames)
			if diff := cmp.Diff(fields, propNames); diff != "" {
				t.Errorf("%s properties differ from the fields of %s (-go +schema):\n%s", tt.file, tt.typ.Name(), diff)
			}
			slices.Sort(required)
			if diff := cmp.Diff(required, stringSet(s["required"])); diff != "" {
				t.Errorf("%s required differs from the fields of %s without omitempty (-go +schema):\n%s", tt.file, tt.typ.Name(), diff)
			}
		})
	}
}

// jsonTypes is the schema type a Go field must have.
func jsonTypes(t reflect.Type) []string {
	switch {
	case t == reflect.TypeFor[time.Time]():
		return []string{"string"}
	case t == reflect.TypeFor[json.RawMessage]():
		return []string{"object"}
	}
	switch t.Kind() {
	case reflect.String:
		return []string{"string"}
	case reflect.Int:
		return []string{"integer"}
	case reflect.Bool:
		return []string{"boolean"}
	case reflect.Slice:
		return []string{"array"}
	}
	return []string{t.String()}
}
