package schemas

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenPath is the golden record of an event type: the encoder's exact output plus a
// newline, one record per line as kcat -P reads it.
func goldenPath(typ string) string { return filepath.Join("testdata", typ+".json") }

func TestGolden(t *testing.T) {
	for _, ex := range examples() {
		typ := ex.data.EventType()
		t.Run(typ, func(t *testing.T) {
			b, _, err := Encode(ex.source, testReceived, ex.data)
			if err != nil {
				t.Fatalf("Encode(%s) returned error %v, want none", typ, err)
			}
			got := append(b, '\n')
			path := goldenPath(typ)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file: %v (run go test ./schemas -run Golden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Encode(%s) differs from %s (-want +got), run with -update if the change is intended:\n%s",
					typ, path, cmp.Diff(indent(t, want), indent(t, got)))
			}
		})
	}
}

func indent(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return string(b)
	}
	return buf.String()
}

func TestGoldenFilesDecode(t *testing.T) {
	c := newTestCodec(t)
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			env, d, err := c.Decode(bytes.TrimSuffix(b, []byte("\n")))
			if err != nil {
				t.Fatalf("Decode(%s) returned error %v, want none", path, err)
			}
			if want := strings.TrimSuffix(filepath.Base(path), ".json"); env.Type != want {
				t.Errorf("%s holds an event of type %s, want %s", path, env.Type, want)
			}
			if got := ID(d); got != env.ID {
				t.Errorf("%s has id %s, but its data hashes to %s", path, env.ID, got)
			}
			types = append(types, env.Type)
		})
	}
	for _, typ := range Types() {
		if !slices.Contains(types, typ) {
			t.Errorf("type %s has no golden file %s", typ, goldenPath(typ))
		}
	}
}

func newTestCodec(tb testing.TB) *Codec {
	tb.Helper()
	c, err := NewCodec()
	if err != nil {
		tb.Fatalf("NewCodec() returned error %v, want none", err)
	}
	return c
}
