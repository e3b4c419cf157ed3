package pipelinetest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/convsync/convsync"

// pkg is what `go list -json` says of one package.
type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// stages are the folders of the data flow; a stage's subpackages belong to it.
var stages = []string{"ingest", "processor", "projector"}

// stageOf returns the stage a package path belongs to, or "".
func stageOf(path string) string {
	rel, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	for _, s := range stages {
		if rel == s || strings.HasPrefix(rel, s+"/") {
			return s
		}
	}
	return ""
}

// under reports whether path is dir or a package below it, dir relative to the module.
func under(path, dir string) bool {
	return path == module+"/"+dir || strings.HasPrefix(path, module+"/"+dir+"/")
}

// layoutViolations returns the imports that break the layout rules, one sentence each:
//   - a stage (ingest, processor, projector and their subpackages) never imports
//     another stage: stages meet only through the topics and the contracts in schemas/;
//   - internal/ is plumbing that knows no stage: no package under it imports a stage,
//     app or pipelinetest;
//   - schemas/ is the contract: it imports nothing of the module outside schemas/;
//   - pipelinetest is test support: only test files import it;
//   - app is the one assembly of the roles, the one package that imports every stage:
//     no stage imports it, and outside it and the command line (cmd/, whose jobs each
//     use a stage) no package imports more than one stage, so nothing (pipelinetest
//     included) wires stages together a second way.
//
// Test files may import other stages and app (a test of the whole pipeline does).
func layoutViolations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		var uses []string // the stages p imports
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			from, to := stageOf(p.ImportPath), stageOf(imp)
			if to != "" && !slices.Contains(uses, to) {
				uses = append(uses, to)
			}
			switch {
			case from != "" && to != "" && from != to:
				out = append(out, p.ImportPath+" (stage "+from+") imports "+imp+" (stage "+to+")")
			case from != "" && under(imp, "app"):
				out = append(out, p.ImportPath+" (stage "+from+") imports the assembly "+imp)
			case under(p.ImportPath, "internal") && (to != "" || under(imp, "pipelinetest") || under(imp, "app")):
				out = append(out, p.ImportPath+" (plumbing) imports "+imp)
			case under(p.ImportPath, "schemas") && !under(imp, "schemas"):
				out = append(out, p.ImportPath+" (contract) imports "+imp)
			case under(imp, "pipelinetest"):
				out = append(out, p.ImportPath+" imports the test support "+imp+" outside its tests")
			}
		}
		if len(uses) > 1 && stageOf(p.ImportPath) == "" && !under(p.ImportPath, "app") && !under(p.ImportPath, "cmd") {
			out = append(out, p.ImportPath+" imports the stages "+strings.Join(uses, ", ")+": only app assembles stages")
		}
	}
	return out
}

func TestStagesMeetOnlyThroughSchemas(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	for _, want := range []string{"app", "processor", "projector", "schemas/deltas", "schemas/dlq", "internal/kafka", "pipelinetest"} {
		if !slices.ContainsFunc(pkgs, func(p pkg) bool { return p.ImportPath == module+"/"+want }) {
			t.Fatalf("go list does not list %s/%s: the check would look at nothing", module, want)
		}
	}
	for _, v := range layoutViolations(pkgs) {
		t.Error(v)
	}
}

// The rules themselves, on made-up import graphs: each broken rule is found.
func TestLayoutViolationsFindsEachBrokenRule(t *testing.T) {
	m := func(s string) string { return module + "/" + s }
	tests := []struct {
		name string
		p    pkg
		bad  bool
	}{
		{"projector imports processor", pkg{ImportPath: m("projector"), Imports: []string{m("processor")}}, true},
		{"readapi imports ingest", pkg{ImportPath: m("projector/readapi"), Imports: []string{m("ingest/graph")}}, true},
		{"readapi imports its own stage", pkg{ImportPath: m("projector/readapi"), Imports: []string{m("projector")}}, false},
		{"a stage imports the contracts", pkg{ImportPath: m("processor"), Imports: []string{m("schemas/deltas"), m("internal/kafka")}}, false},
		{"plumbing imports a stage", pkg{ImportPath: m("internal/kafka"), Imports: []string{m("processor")}}, true},
		{"plumbing imports the test support", pkg{ImportPath: m("internal/testenv"), Imports: []string{m("pipelinetest")}}, true},
		{"schemas imports plumbing", pkg{ImportPath: m("schemas"), Imports: []string{m("internal/kafka")}}, true},
		{"schemas/dlq imports schemas", pkg{ImportPath: m("schemas/dlq"), Imports: []string{m("schemas"), "github.com/twmb/franz-go/pkg/kgo"}}, false},
		{"the binary imports the test support", pkg{ImportPath: m("cmd/convsync"), Imports: []string{m("pipelinetest")}}, true},
		{"a test imports the test support", pkg{ImportPath: m("projector"), XTestImports: []string{m("pipelinetest"), m("processor")}}, false},
		{"the assembly imports every stage", pkg{ImportPath: m("app"), Imports: []string{m("ingest"), m("ingest/backfill"), m("processor"),
			m("projector"), m("projector/readapi"), m("internal/kafka"), m("schemas")}}, false},
		{"a stage imports the assembly", pkg{ImportPath: m("projector/readapi"), Imports: []string{m("app")}}, true},
		{"plumbing imports the assembly", pkg{ImportPath: m("internal/server"), Imports: []string{m("app")}}, true},
		{"the binary's jobs import the stages they run", pkg{ImportPath: m("cmd/convsync"), Imports: []string{m("app"), m("processor"), m("projector")}}, false},
		{"test support wires two stages itself", pkg{ImportPath: m("pipelinetest"), Imports: []string{m("processor"), m("projector")}}, true},
		{"test support starts roles through the assembly", pkg{ImportPath: m("pipelinetest"), Imports: []string{m("app"), m("projector"), m("schemas")}}, false},
		{"a stage's test starts roles through the assembly", pkg{ImportPath: m("ingest/backfill"), XTestImports: []string{m("app"), m("pipelinetest")}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := layoutViolations([]pkg{tt.p})
			if (len(got) > 0) != tt.bad {
				t.Errorf("layoutViolations(%s imports %v) = %q, want a violation: %v", tt.p.ImportPath, tt.p.Imports, got, tt.bad)
			}
		})
	}
}
