package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/convsync/convsync/app"
)

// Every setting the binary reads is in the README's configuration tables, with its
// flag, and every variable those tables name is one the binary reads: the README is
// where operators look, and it drifted once (variables documented, never bound).
func TestREADMEConfigurationMatchesTheBinder(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	fs := flag.NewFlagSet("convsync", flag.ContinueOnError)
	s := app.Defaults()
	app.Bind(fs, &s)
	bound := map[string]bool{}
	envPattern := regexp.MustCompile(`\(env ([A-Z0-9_, ]+)\)( \(default .*\))?$`)
	fs.VisitAll(func(f *flag.Flag) {
		m := envPattern.FindStringSubmatch(f.Usage)
		if m == nil {
			return
		}
		for _, env := range strings.Split(m[1], ", ") {
			bound[env] = true
			if !strings.Contains(text, "`"+env+"`") {
				t.Errorf("README does not document %s (flag --%s)", env, f.Name)
			}
		}
		if !strings.Contains(text, "`--"+f.Name+"`") {
			t.Errorf("README does not name the flag --%s", f.Name)
		}
	})
	if len(bound) < 50 {
		t.Fatalf("found only %d variables in the flags' usage: the test no longer reads them", len(bound))
	}
	// Rows of the configuration tables: | `NAME` ... | `--flag` ... |
	row := regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]+)`(?:, `([A-Z][A-Z0-9_]+)`)? \\| `--")
	rows := row.FindAllStringSubmatch(text, -1)
	if len(rows) < 40 {
		t.Fatalf("found only %d configuration rows in the README", len(rows))
	}
	// Commands bind a few of their own (backfill, pages import): those must at least be
	// bound somewhere in the command's sources.
	var sources strings.Builder
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			b, _ := os.ReadFile(f)
			sources.Write(b)
		}
	}
	for _, r := range rows {
		for _, env := range r[1:] {
			if env != "" && !bound[env] && !strings.Contains(sources.String(), `"`+env+`")`) {
				t.Errorf("README documents %s, which the binary does not read", env)
			}
		}
	}
}
