// Package docs holds no code: its tests check the Kubernetes manifests that
// deploy.md explains, run (or check) every shell command of README.md and
// docs/*.md, and resolve every relative link (commands_test.go).
package docs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type object = map[string]any

func field(o object, path ...string) any {
	var cur any = o
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// load parses every document of every manifest.
func load(t *testing.T) map[string]object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("deploy", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	out := map[string]object{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(b), "\n---\n") {
			var o object
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			kind, _ := o["kind"].(string)
			name, _ := field(o, "metadata", "name").(string)
			if o["apiVersion"] == nil || kind == "" || name == "" {
				t.Fatalf("%s document %d lacks apiVersion, kind or metadata.name", f, i)
			}
			out[kind+"/"+name] = o
		}
	}
	return out
}

func TestManifests(t *testing.T) {
	objs := load(t)
	for _, want := range []string{"Service/etcd", "StatefulSet/etcd", "Deployment/fileserver", "PersistentVolumeClaim/fileserver-files"} {
		if objs[want] == nil {
			t.Errorf("no %s", want)
		}
	}
	if r, _ := field(objs["StatefulSet/etcd"], "spec", "replicas").(float64); r != 3 {
		t.Errorf("etcd replicas %v, want 3", r)
	}
	d := objs["Deployment/fileserver"]
	pod := field(d, "spec", "template", "spec").(map[string]any)
	c := pod["containers"].([]any)[0].(map[string]any)
	if p := field(c, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Errorf("readiness probe %v, want /readyz", p)
	}
	if p := field(c, "livenessProbe", "httpGet", "path"); p != "/healthz" {
		t.Errorf("liveness probe %v, want /healthz", p)
	}
	if field(c, "resources", "limits", "memory") == nil || field(c, "resources", "requests", "cpu") == nil {
		t.Error("no resource requests and limits")
	}
	env := map[string]any{}
	for _, e := range c["env"].([]any) {
		m := e.(map[string]any)
		env[m["name"].(string)] = m
	}
	if field(env["POD_IP"].(map[string]any), "valueFrom", "fieldRef", "fieldPath") != "status.podIP" {
		t.Error("POD_IP is not the pod IP")
	}
	if v, _ := env["SVCKIT_ADVERTISE"].(map[string]any)["value"].(string); !strings.HasPrefix(v, "$(POD_IP):") {
		t.Errorf("SVCKIT_ADVERTISE %q is not the pod IP", v)
	}
	grace, _ := pod["terminationGracePeriodSeconds"].(float64)
	if grace <= 16 { // 1s propagation delay + 15s shutdown timeout
		t.Errorf("terminationGracePeriodSeconds %v does not cover the drain", grace)
	}
}
