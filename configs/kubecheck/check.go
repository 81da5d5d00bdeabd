// Package kubecheck checks Kubernetes manifests the way a cluster would
// see them: every document is decoded strictly into its Kubernetes API type
// (an unknown or misspelt field is an error, as with kubectl's server-side
// field validation), and pod templates are held to the Restricted Pod
// Security profile and to what a kubelet needs to probe them.
//
// It is a module of its own so that the main module does not depend on
// k8s.io (docs/dependencies.md).
package kubecheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Objects are the decoded documents of one manifest file.
type Objects struct {
	Services     []corev1.Service
	StatefulSets []appsv1.StatefulSet
	PDBs         []policyv1.PodDisruptionBudget
	Others       []any
}

// Decode splits a multi-document YAML manifest and decodes each document
// strictly into the type its apiVersion and kind name.
func Decode(manifest []byte) (*Objects, error) {
	out := &Objects{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		where := fmt.Sprintf("document %d (%s %s)", n, tm.APIVersion, tm.Kind)
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Service":
			obj = &corev1.Service{}
		case "v1 ConfigMap":
			obj = &corev1.ConfigMap{}
		case "v1 ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "apps/v1 StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "policy/v1 PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		default:
			return nil, fmt.Errorf("%s: a kind this checker does not know", where)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		switch o := obj.(type) {
		case *corev1.Service:
			out.Services = append(out.Services, *o)
		case *appsv1.StatefulSet:
			out.StatefulSets = append(out.StatefulSets, *o)
		case *policyv1.PodDisruptionBudget:
			out.PDBs = append(out.PDBs, *o)
		default:
			out.Others = append(out.Others, o)
		}
	}
}

// allowedVolume reports whether the Restricted profile allows v's type.
func allowedVolume(v corev1.Volume) bool {
	s := v.VolumeSource
	return s.ConfigMap != nil || s.CSI != nil || s.DownwardAPI != nil || s.EmptyDir != nil ||
		s.Ephemeral != nil || s.PersistentVolumeClaim != nil || s.Projected != nil || s.Secret != nil
}

// Restricted returns the ways spec breaks the Restricted Pod Security
// profile (https://kubernetes.io/docs/concepts/security/pod-security-standards/).
func Restricted(spec corev1.PodSpec) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		bad("pod: host namespaces")
	}
	for _, v := range spec.Volumes {
		if !allowedVolume(v) {
			bad("volume %s: type not allowed", v.Name)
		}
	}
	pod := spec.SecurityContext
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	containers := append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...)
	for _, c := range containers {
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		if sc.Privileged != nil && *sc.Privileged {
			bad("container %s: privileged", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("container %s: allowPrivilegeEscalation must be false", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			bad("container %s: capabilities must drop ALL", c.Name)
		} else if slices.ContainsFunc(sc.Capabilities.Add, func(c corev1.Capability) bool { return c != "NET_BIND_SERVICE" }) {
			bad("container %s: only NET_BIND_SERVICE may be added", c.Name)
		}
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && pod.RunAsNonRoot != nil && *pod.RunAsNonRoot)
		if !nonRoot {
			bad("container %s: runAsNonRoot must be true (pod or container)", c.Name)
		}
		if (sc.RunAsUser != nil && *sc.RunAsUser == 0) || (sc.RunAsUser == nil && pod.RunAsUser != nil && *pod.RunAsUser == 0) {
			bad("container %s: runs as UID 0", c.Name)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = pod.SeccompProfile
		}
		if seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
			bad("container %s: seccompProfile must be RuntimeDefault or Localhost (pod or container)", c.Name)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				bad("container %s: hostPort %d", c.Name, p.HostPort)
			}
		}
	}
	return errs
}

// Probes returns what keeps a kubelet from running c's probes and hooks
// as written: a host set on an HTTP probe (the kubelet would probe that
// host, not the pod, and Baseline forbids it) or a named port c does not
// declare.
func Probes(c corev1.Container) []error {
	var errs []error
	check := func(what string, h *corev1.ProbeHandler) {
		if h == nil || h.HTTPGet == nil {
			return
		}
		if h.HTTPGet.Host != "" {
			errs = append(errs, fmt.Errorf("container %s: %s sets host %q", c.Name, what, h.HTTPGet.Host))
		}
		if name := h.HTTPGet.Port.StrVal; name != "" && !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == name }) {
			errs = append(errs, fmt.Errorf("container %s: %s names port %q, which the container does not declare", c.Name, what, name))
		}
	}
	for what, p := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
		if p != nil {
			check(what, &p.ProbeHandler)
		}
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.HTTPGet != nil && c.Lifecycle.PreStop.HTTPGet.Host != "" {
		errs = append(errs, fmt.Errorf("container %s: preStop sets host", c.Name))
	}
	return errs
}

// Resources returns the containers of spec without a CPU and memory
// request and a memory limit.
func Resources(spec corev1.PodSpec) []error {
	var errs []error
	for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
		r := c.Resources
		if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
			errs = append(errs, fmt.Errorf("container %s: needs cpu and memory requests and a memory limit", c.Name))
		}
	}
	return errs
}
