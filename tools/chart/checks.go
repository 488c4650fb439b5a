package chart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The processes a container may run, as named by Process.
const (
	Validator   = "validator"
	Migrate     = "validator migrate"
	Invalidator = "invalidator"
)

// Settings are, per process, the environment variables it reads and their
// defaults (from ParseSettings).
type Settings map[string]map[string]string

// Process names what a container runs from its command and arguments.
func Process(c corev1.Container) (string, error) {
	cmd := append(slices.Clone(c.Command), c.Args...)
	switch {
	case len(cmd) == 1 && cmd[0] == "validator":
		return Validator, nil
	case len(cmd) >= 2 && cmd[0] == "validator" && cmd[1] == "migrate":
		return Migrate, nil
	case len(cmd) == 1 && cmd[0] == "invalidator":
		return Invalidator, nil
	}
	return "", fmt.Errorf("container %s runs %q, not validator, validator migrate or invalidator", c.Name, cmd)
}

// PodTemplates returns the pod template of every Deployment and Job, by
// "kind name".
func PodTemplates(objs []Object) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *appsv1.Deployment:
			out["Deployment "+o.Name] = &v.Spec.Template
		case *batchv1.Job:
			out["Job "+o.Name] = &v.Spec.Template
		}
	}
	return out
}

// RunAsUser is the image's user (the Dockerfile's USER).
const RunAsUser = 10001

// CheckRestricted reports what in a pod spec breaks the restricted Pod
// Security Standard, or the chart's own rules on top of it (user 10001, a
// read-only root file system, no service account token).
func CheckRestricted(spec corev1.PodSpec) []string {
	var p []string
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		p = append(p, "automountServiceAccountToken is not false")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		p = append(p, "uses a host namespace")
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			p = append(p, "volume "+v.Name+" is a hostPath")
		}
	}
	pod := spec.SecurityContext
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			p = append(p, c.Name+": no securityContext")
			continue
		}
		nonRoot, user, seccomp := pod.RunAsNonRoot, pod.RunAsUser, pod.SeccompProfile
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		if sc.RunAsUser != nil {
			user = sc.RunAsUser
		}
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile
		}
		if nonRoot == nil || !*nonRoot {
			p = append(p, c.Name+": runAsNonRoot is not true")
		}
		if user == nil || *user != RunAsUser {
			p = append(p, fmt.Sprintf("%s: runAsUser is not %d", c.Name, RunAsUser))
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			p = append(p, c.Name+": seccompProfile is not RuntimeDefault")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			p = append(p, c.Name+": allowPrivilegeEscalation is not false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			p = append(p, c.Name+": privileged")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			p = append(p, c.Name+": readOnlyRootFilesystem is not true")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			p = append(p, c.Name+": capabilities do not drop ALL")
		} else if len(sc.Capabilities.Add) > 0 {
			p = append(p, c.Name+": capabilities add some")
		}
		for _, port := range c.Ports {
			if port.HostPort != 0 {
				p = append(p, c.Name+": hostPort")
			}
		}
	}
	return p
}

// secretSettings are the settings that must come from the existing Secret,
// each with whether its secretKeyRef is optional.
var secretSettings = map[string]bool{
	"DATABASE_URL":          false,
	"REDIS_URL":             false,
	"ADMIN_TOKEN":           true,
	"JWT_SECRET":            true,
	"SESSION_COOKIE_SECRET": false,
}

// CheckEnv reports env entries of a container that its process does not
// read (accepted, from its -h), that repeat, or that do not take a secret
// setting from the Secret named secret as the chart promises.
func CheckEnv(c corev1.Container, process string, accepted map[string]string, secret string) []string {
	var p []string
	seen := map[string]bool{}
	for _, e := range c.Env {
		if seen[e.Name] {
			p = append(p, e.Name+" is set twice")
		}
		seen[e.Name] = true
		if _, ok := accepted[e.Name]; !ok {
			p = append(p, fmt.Sprintf("%s is not a setting of %s (its -h does not list it)", e.Name, process))
		}
		optional, isSecret := secretSettings[e.Name]
		switch {
		case e.ValueFrom == nil && isSecret:
			p = append(p, e.Name+" is a literal value; it must come from the Secret")
		case e.ValueFrom == nil:
		case e.ValueFrom.SecretKeyRef == nil:
			p = append(p, e.Name+" takes its value from something other than a Secret")
		case !isSecret:
			p = append(p, e.Name+" comes from a Secret but is not one of the secret settings")
		default:
			ref := e.ValueFrom.SecretKeyRef
			if ref.Name != secret {
				p = append(p, fmt.Sprintf("%s comes from Secret %q, not existingSecret %q", e.Name, ref.Name, secret))
			}
			if ref.Key == "" {
				p = append(p, e.Name+" has no key")
			}
			if got := ref.Optional != nil && *ref.Optional; got != optional {
				p = append(p, fmt.Sprintf("%s: optional is %v, want %v", e.Name, got, optional))
			}
		}
	}
	if !seen["DATABASE_URL"] {
		p = append(p, "DATABASE_URL is not set")
	}
	if process != Migrate && !seen["REDIS_URL"] {
		p = append(p, "REDIS_URL is not set")
	}
	return p
}

// listenPort is the port the container's process listens on: LISTEN_ADDR
// as set, or its default from the process's -h.
func listenPort(c corev1.Container, accepted map[string]string) (int, error) {
	addr, from := accepted["LISTEN_ADDR"], "default"
	for _, e := range c.Env {
		if e.Name == "LISTEN_ADDR" {
			if e.ValueFrom != nil {
				return 0, errors.New("LISTEN_ADDR is not a literal value")
			}
			addr, from = e.Value, "env"
		}
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("LISTEN_ADDR (%s) %q: %v", from, addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("LISTEN_ADDR (%s) %q: not a fixed port", from, addr)
	}
	return n, nil
}

// resolvePort is the container port a probe or Service targets.
func resolvePort(c corev1.Container, p intstr.IntOrString) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", p.StrVal)
}

// CheckPorts reports probes and ports that miss what the process serves:
// the validator and the invalidator listen on LISTEN_ADDR, which must be
// the container port named http, with /livez the liveness and /readyz the
// readiness probe on it; migrate serves nothing and has neither.
func CheckPorts(c corev1.Container, process string, accepted map[string]string) []string {
	if process == Migrate {
		if len(c.Ports) > 0 || c.LivenessProbe != nil || c.ReadinessProbe != nil || c.StartupProbe != nil {
			return []string{"migrate serves nothing: it must have no ports or probes"}
		}
		return nil
	}
	var p []string
	listen, err := listenPort(c, accepted)
	if err != nil {
		return []string{err.Error()}
	}
	http, err := resolvePort(c, intstr.FromString("http"))
	if err != nil {
		p = append(p, err.Error())
	} else if http != listen {
		p = append(p, fmt.Sprintf("container port http is %d but the process listens on %d", http, listen))
	}
	for _, pr := range []struct {
		kind, path string
		probe      *corev1.Probe
	}{{"livenessProbe", "/livez", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			p = append(p, pr.kind+" is not an httpGet")
			continue
		}
		g := pr.probe.HTTPGet
		if g.Path != pr.path {
			p = append(p, fmt.Sprintf("%s path is %q, want %q", pr.kind, g.Path, pr.path))
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			p = append(p, pr.kind+" scheme is not HTTP")
		}
		port, err := resolvePort(c, g.Port)
		if err != nil {
			p = append(p, pr.kind+": "+err.Error())
		} else if port != listen {
			p = append(p, fmt.Sprintf("%s port is %d but the process listens on %d", pr.kind, port, listen))
		}
	}
	return p
}

// CheckWiring reports selectors that select nothing or more than they
// should, and references to ports or objects that do not exist.
func CheckWiring(objs []Object) []string {
	var p []string
	deployments := map[string]*appsv1.Deployment{}
	var services []*corev1.Service
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *appsv1.Deployment:
			deployments[o.Name] = v
			if v.Spec.Selector == nil || len(v.Spec.Selector.MatchLabels) == 0 ||
				!labels.SelectorFromSet(v.Spec.Selector.MatchLabels).Matches(labels.Set(v.Spec.Template.Labels)) {
				p = append(p, "Deployment "+o.Name+": selector does not select its own pods")
			}
		case *corev1.Service:
			services = append(services, v)
		}
	}
	// selected returns the one Deployment whose pods sel selects.
	selected := func(what string, sel map[string]string) *appsv1.Deployment {
		var found []*appsv1.Deployment
		for _, d := range deployments {
			if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(d.Spec.Template.Labels)) {
				found = append(found, d)
			}
		}
		if len(found) != 1 {
			p = append(p, fmt.Sprintf("%s selects the pods of %d Deployments, want 1", what, len(found)))
			return nil
		}
		return found[0]
	}
	for _, s := range services {
		d := selected("Service "+s.Name, s.Spec.Selector)
		if d == nil {
			continue
		}
		for _, sp := range s.Spec.Ports {
			ok := false
			for _, c := range d.Spec.Template.Spec.Containers {
				if _, err := resolvePort(c, sp.TargetPort); err == nil {
					ok = true
				}
			}
			if !ok {
				p = append(p, fmt.Sprintf("Service %s: targetPort %s is no port of %s's containers", s.Name, sp.TargetPort.String(), d.Name))
			}
		}
	}
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *policyv1.PodDisruptionBudget:
			if v.Spec.Selector == nil {
				p = append(p, "PodDisruptionBudget "+o.Name+": no selector")
			} else {
				selected("PodDisruptionBudget "+o.Name, v.Spec.Selector.MatchLabels)
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := v.Spec.ScaleTargetRef
			d, ok := deployments[ref.Name]
			switch {
			case ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || !ok:
				p = append(p, fmt.Sprintf("HorizontalPodAutoscaler %s: target %s %s %s is not a rendered Deployment", o.Name, ref.APIVersion, ref.Kind, ref.Name))
			case d.Spec.Replicas != nil:
				p = append(p, "Deployment "+ref.Name+" sets replicas although an HPA scales it")
			}
		case *monitoringv1.ServiceMonitor:
			var found []*corev1.Service
			for _, s := range services {
				if labels.SelectorFromSet(v.Spec.Selector.MatchLabels).Matches(labels.Set(s.Labels)) {
					found = append(found, s)
				}
			}
			if len(v.Spec.Selector.MatchLabels) == 0 || len(found) != 1 {
				p = append(p, fmt.Sprintf("ServiceMonitor %s selects %d Services, want 1", o.Name, len(found)))
				continue
			}
			for _, ep := range v.Spec.Endpoints {
				if !slices.ContainsFunc(found[0].Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == ep.Port }) {
					p = append(p, fmt.Sprintf("ServiceMonitor %s: port %q is not a port of Service %s", o.Name, ep.Port, found[0].Name))
				}
			}
		case *batchv1.Job:
			a := v.Annotations
			hooks := strings.Split(a["helm.sh/hook"], ",")
			if !slices.Contains(hooks, "pre-install") || !slices.Contains(hooks, "pre-upgrade") {
				p = append(p, "Job "+o.Name+": not a pre-install,pre-upgrade hook")
			}
			if a["helm.sh/hook-delete-policy"] == "" {
				p = append(p, "Job "+o.Name+": no hook-delete-policy")
			}
			if v.Spec.BackoffLimit == nil {
				p = append(p, "Job "+o.Name+": no backoffLimit")
			}
		}
	}
	return p
}

// CheckNames reports object names and label values the API server would
// refuse.
func CheckNames(objs []Object) []string {
	var p []string
	for _, o := range objs {
		check := validation.IsDNS1123Subdomain
		if strings.HasSuffix(o.Kind, "/Service") {
			check = validation.IsDNS1035Label
		}
		for _, msg := range check(o.Name) {
			p = append(p, fmt.Sprintf("%s %q: %s", o.Kind, o.Name, msg))
		}
		if m, ok := o.Obj.(interface{ GetLabels() map[string]string }); ok {
			for k, v := range m.GetLabels() {
				for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
					p = append(p, fmt.Sprintf("%s %s: label %s=%s: %s", o.Kind, o.Name, k, v, msg))
				}
			}
		}
	}
	return p
}

// Placeholder values for the settings a Secret would hold, loopback only.
var secretValues = map[string]string{
	"DATABASE_URL":          "postgres://sessionguard:x@127.0.0.1:1/sessionguard?sslmode=disable&connect_timeout=1",
	"REDIS_URL":             "redis://127.0.0.1:1/0",
	"ADMIN_TOKEN":           "0123456789abcdef0123456789abcdef",
	"JWT_SECRET":            "0123456789abcdef0123456789abcdef0123456789abcdef",
	"SESSION_COOKIE_SECRET": "a-cookie-secret-for-the-chart-tests",
}

// ConfigAccepted runs the container's command from binDir with the
// container's environment (placeholders for the secrets, the listen
// address moved to a free loopback port) and reports a configuration the
// binary refuses: it exits with status 2 at once, before any I/O. A
// process that is still running after a while, or that fails later
// (nothing answers on the placeholder addresses), accepted it.
func ConfigAccepted(ctx context.Context, binDir string, c corev1.Container) error {
	cmd := append(slices.Clone(c.Command), c.Args...)
	env := []string{}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			v = secretValues[e.Name]
		}
		if e.Name == "LISTEN_ADDR" {
			v = "127.0.0.1:0"
		}
		env = append(env, e.Name+"="+v)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	x := exec.CommandContext(ctx, filepath.Join(binDir, cmd[0]), cmd[1:]...)
	x.Env = env
	var stderr bytes.Buffer
	x.Stderr = &stderr
	err := x.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 {
		return fmt.Errorf("%s refused its configuration: %s", strings.Join(cmd, " "), strings.TrimSpace(stderr.String()))
	}
	if err != nil && !errors.As(err, &ee) {
		return err
	}
	return nil
}
