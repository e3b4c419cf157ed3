// Package prometheus holds convsync's Prometheus scrape configuration, recording rules
// and alert rules (with runbooks); its test checks them with the real promtool.
package prometheus

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed: run `make services-up` (Debian's prometheus package)")
		}
		t.Skip("promtool is not installed: run `make services-up`")
	}
	out, err := exec.Command("promtool", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The scrape configuration and the rules it loads are valid.
func TestConfigAndRulesAreValid(t *testing.T) {
	out := promtool(t, "check", "config", "prometheus.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check config said:\n%s", out)
	}
}

// Every alert has a unit test that makes it fire, and fails when its rule changes
// (rules_test.yml, run by promtool test rules).
func TestAlertsFireOnTheirConditions(t *testing.T) {
	out := promtool(t, "test", "rules", "rules_test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules said:\n%s", out)
	}
	rules, err := os.ReadFile("rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("rules_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: ")
		if ok && !strings.Contains(string(tests), "alertname: "+name) {
			t.Errorf("alert %s has no case in rules_test.yml", name)
		}
	}
}
