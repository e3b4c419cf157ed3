// Package k8s holds convsync's Kubernetes manifests; its test decodes every one strictly
// with the Kubernetes API types, so a misspelt or misplaced field fails.
package k8s

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// strict decodes JSON into v, refusing unknown fields.
func strict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func TestManifestsDecodeStrictly(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	kinds := map[string]int{}
	roles := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(b), "\n---\n") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d is not YAML: %v", f, i, err)
			}
			var meta struct{ Kind string }
			_ = json.Unmarshal(js, &meta)
			kinds[meta.Kind]++
			switch meta.Kind {
			case "Deployment":
				var d appsv1.Deployment
				if err := strict(js, &d); err != nil {
					t.Errorf("%s: Deployment does not decode strictly: %v", f, err)
					continue
				}
				c := d.Spec.Template.Spec.Containers[0]
				if c.LivenessProbe == nil || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
					t.Errorf("%s: container %s lacks /healthz and /readyz probes", f, c.Name)
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s: container %s lacks resource requests and a memory limit", f, c.Name)
				}
				if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
					t.Errorf("%s: pods must run as non-root", f)
				}
				roles[c.Args[0]] = true
			case "Service":
				var s corev1.Service
				if err := strict(js, &s); err != nil {
					t.Errorf("%s: Service does not decode strictly: %v", f, err)
				}
			case "ConfigMap":
				var c corev1.ConfigMap
				if err := strict(js, &c); err != nil {
					t.Errorf("%s: ConfigMap does not decode strictly: %v", f, err)
				}
			case "Job":
				var j batchv1.Job
				if err := strict(js, &j); err != nil {
					t.Errorf("%s: Job does not decode strictly: %v", f, err)
				} else if j.Spec.Template.Spec.Containers[0].Args[0] != "migrate" {
					t.Errorf("%s: the Job must run convsync migrate", f)
				}
			case "PodDisruptionBudget":
				var p policyv1.PodDisruptionBudget
				if err := strict(js, &p); err != nil {
					t.Errorf("%s: PodDisruptionBudget does not decode strictly: %v", f, err)
				}
			default:
				t.Errorf("%s: unexpected kind %q", f, meta.Kind)
			}
		}
	}
	for _, r := range []string{"ingest", "process", "project", "api"} {
		if !roles[r] {
			t.Errorf("no Deployment runs convsync %s", r)
		}
	}
	if kinds["PodDisruptionBudget"] < 4 || kinds["Job"] != 1 {
		t.Errorf("kinds = %v, want a PodDisruptionBudget per role and one migration Job", kinds)
	}
}
