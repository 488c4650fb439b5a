package chart

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kinds maps "apiVersion/kind" to the Go type of every kind the chart may
// render; anything else is an error.
var kinds = map[string]func() any{
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"batch/v1/Job":                            func() any { return &batchv1.Job{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
}

// Object is one rendered document, decoded.
type Object struct {
	Kind string // "apiVersion/kind"
	Name string
	Obj  any // a pointer to the type kinds names
}

// DecodeStrict decodes one YAML document into v as the API server would
// refuse it: duplicate keys, unknown fields (field names are
// case-sensitive) and values of the wrong type are errors.
func DecodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(j, v, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// DecodeManifest splits a stream of YAML documents (helm template's output)
// and decodes each strictly into the type of its kind. Documents holding
// only comments or whitespace are skipped.
func DecodeManifest(stream []byte) ([]Object, error) {
	var out []Object
	for i, doc := range docSeparator.Split(string(stream), -1) {
		if isBlank(doc) {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("document %d: %v", i, err)
		}
		key := head.APIVersion + "/" + head.Kind
		newObj, ok := kinds[key]
		if !ok {
			return nil, fmt.Errorf("document %d (%s): unknown kind %q: add its Go type to kinds", i, head.Metadata.Name, key)
		}
		obj := newObj()
		if err := DecodeStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("%s %s: %v", key, head.Metadata.Name, err)
		}
		out = append(out, Object{Kind: key, Name: head.Metadata.Name, Obj: obj})
	}
	return out, nil
}

func isBlank(doc string) bool {
	for _, l := range strings.Split(doc, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// settingLine matches a setting in the usage text the binaries print for
// -h ("  -listen-addr / LISTEN_ADDR"); its default is on the next line.
// envUsage matches the flag package's form, "(env LISTEN_ADDR, default
// :8080)", should the binaries print that instead.
var (
	settingLine = regexp.MustCompile(`^\s+-[a-z0-9-]+ / ([A-Z][A-Z0-9_]*)\s*$`)
	defaultEnd  = regexp.MustCompile(`\(default ([^()]*)\)\s*$`)
	envUsage    = regexp.MustCompile(`\(env ([A-Z][A-Z0-9_]*), default ([^()]*)\)`)
)

// ParseSettings returns the environment variables a usage text names,
// with their defaults ("empty" when the text says so).
func ParseSettings(usage []byte) map[string]string {
	out := map[string]string{}
	lines := strings.Split(string(bytes.ReplaceAll(usage, []byte("\r"), nil)), "\n")
	for i, l := range lines {
		if m := settingLine.FindStringSubmatch(l); m != nil {
			def := ""
			if i+1 < len(lines) {
				if d := defaultEnd.FindStringSubmatch(lines[i+1]); d != nil {
					def = d[1]
				}
			}
			out[m[1]] = def
		}
		for _, m := range envUsage.FindAllStringSubmatch(l, -1) {
			out[m[1]] = m[2]
		}
	}
	return out
}
