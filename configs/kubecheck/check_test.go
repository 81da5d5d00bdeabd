package kubecheck

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// manifestPath is the shipped Kubernetes example.
const manifestPath = "../kubernetes-sidecar.yaml"

func decodeShipped(t *testing.T) *Objects {
	t.Helper()
	b, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(b)
	if err != nil {
		t.Fatalf("%s: %v", manifestPath, err)
	}
	return objs
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	i := slices.IndexFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == name })
	if i < 0 {
		t.Fatalf("no container %s", name)
	}
	return spec.Containers[i]
}

// The shipped manifest decodes strictly, and its pods would be admitted
// in a namespace that enforces the Restricted profile, with probes the
// kubelet can run, resources, a disruption budget and a headless service
// that publishes pods before they are ready.
func TestTheShippedManifestIsValidRestrictedAndProbeable(t *testing.T) {
	objs := decodeShipped(t)
	if len(objs.StatefulSets) != 1 || len(objs.Services) != 1 || len(objs.PDBs) != 1 {
		t.Fatalf("want one StatefulSet, Service and PodDisruptionBudget: %d, %d, %d", len(objs.StatefulSets), len(objs.Services), len(objs.PDBs))
	}
	sts := objs.StatefulSets[0]
	spec := sts.Spec.Template.Spec
	errs := append(Restricted(spec), Resources(spec)...)
	for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
		errs = append(errs, Probes(c)...)
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	agent := container(t, spec, "steward")
	if agent.LivenessProbe == nil || agent.ReadinessProbe == nil {
		t.Fatal("the agent container needs a liveness and a readiness probe")
	}
	if app := container(t, spec, "app"); app.Lifecycle == nil || app.Lifecycle.PreStop == nil {
		t.Fatal("the app container needs a preStop hook that waits for its agent's leave")
	}
	if svc := objs.Services[0]; svc.Spec.ClusterIP != "None" || !svc.Spec.PublishNotReadyAddresses || svc.Name != sts.Spec.ServiceName {
		t.Fatalf("service %s: want the StatefulSet's headless service publishing not-ready addresses", svc.Name)
	}
	sel, err := metav1.LabelSelectorAsSelector(objs.PDBs[0].Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Fatalf("the PodDisruptionBudget's selector does not select the StatefulSet's pods (%v)", err)
	}
}

// The checker catches what it is for: a misspelt field, a probe with a
// host, and a container that may escalate privileges.
func TestTheCheckerRefusesWhatAClusterWould(t *testing.T) {
	b, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	shipped := string(b)
	mustReplace := func(old, new string) []byte {
		t.Helper()
		if !strings.Contains(shipped, old) {
			t.Fatalf("the manifest no longer contains %q", old)
		}
		return []byte(strings.Replace(shipped, old, new, 1))
	}

	if _, err := Decode(mustReplace("publishNotReadyAddresses: true", "publishNotReadyAdresses: true")); err == nil || !strings.Contains(err.Error(), "publishNotReadyAdresses") {
		t.Fatalf("a misspelt field: %v", err)
	}

	objs, err := Decode(mustReplace("{httpGet: {path: /v1/health, port: health}", "{httpGet: {path: /v1/health, port: health, host: 127.0.0.1}"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := Probes(container(t, objs.StatefulSets[0].Spec.Template.Spec, "steward")); len(errs) != 1 || !strings.Contains(errs[0].Error(), "host") {
		t.Fatalf("a probe with host: %v", errs)
	}

	objs, err = Decode(mustReplace("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := Restricted(objs.StatefulSets[0].Spec.Template.Spec); len(errs) == 0 {
		t.Fatal("privilege escalation allowed, and Restricted found nothing")
	}
}
