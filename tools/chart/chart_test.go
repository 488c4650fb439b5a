package chart

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

const (
	repoRoot = "../.."
	chartDir = repoRoot + "/deploy/helm/sessionguard"
	// The Kubernetes versions lint and template are told: the newest this
	// module's k8s.io/api knows, and the chart's kubeVersion minimum.
	kubeVersion    = "1.37.0"
	kubeVersionMin = "1.25.0"
	secretName     = "sessionguard-secrets"
)

var (
	helmBin  string   // the helm binary, built by `go tool` (cached)
	binDir   string   // validator and invalidator, built from the main module
	settings Settings // what each process reads, from its -h
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sessionguard-chart-")
	if err == nil {
		binDir = dir
		err = setup()
	}
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart tests: setup:", err)
	} else {
		code = m.Run()
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func goBin() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// setup builds helm (from this module's tool directive) and the two
// binaries, and reads the settings each process accepts.
func setup() error {
	var wg sync.WaitGroup
	var helmErr, binErr error
	wg.Go(func() {
		out, err := run("..", goBin(), "tool", "-n", "helm")
		helmBin, helmErr = strings.TrimSpace(out), err
	})
	wg.Go(func() {
		_, binErr = run(repoRoot, goBin(), "build", "-o", binDir+string(filepath.Separator), "./cmd/validator", "./cmd/invalidator")
	})
	wg.Wait()
	if helmErr != nil {
		return fmt.Errorf("building helm: %v", helmErr)
	}
	if binErr != nil {
		return fmt.Errorf("building the binaries: %v", binErr)
	}
	settings = Settings{}
	for name, args := range map[string][]string{
		Validator:   {"validator", "-h"},
		Migrate:     {"validator", "migrate", "-h"},
		Invalidator: {"invalidator", "-h"},
	} {
		out, err := run("", filepath.Join(binDir, args[0]), args[1:]...)
		if err != nil {
			return fmt.Errorf("%s -h: %v", name, err)
		}
		s := ParseSettings([]byte(out))
		for _, want := range []string{"DATABASE_URL", "LISTEN_ADDR", "SESSION_SOURCE"} {
			if _, ok := s[want]; !ok {
				return fmt.Errorf("%s -h lists no %s: has its usage format changed? ParseSettings read %d settings from:\n%s", name, want, len(s), out)
			}
		}
		settings[name] = s
	}
	return nil
}

func run(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// helm runs helm on the chart with the values given as YAML.
func helm(t *testing.T, values string, args ...string) (string, error) {
	t.Helper()
	// Not t.TempDir: its path holds the test's name, and helm splits -f
	// at commas.
	dir, err := os.MkdirTemp("", "chart-values-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	return run("", helmBin, append(args, chartDir, "-f", f)...)
}

func template(t *testing.T, values string) (string, error) {
	return helm(t, values, "template", "sg", "--namespace", "auth", "--kube-version", kubeVersion)
}

// base is what every default render holds.
func base() map[string]int {
	return map[string]int{"v1/ServiceAccount": 1, "v1/Service": 2, "apps/v1/Deployment": 2,
		"policy/v1/PodDisruptionBudget": 2, "batch/v1/Job": 1}
}

func with(m map[string]int, kv ...any) map[string]int {
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1].(int)
	}
	return m
}

var cases = []struct {
	name   string
	values string
	kinds  map[string]int
}{
	{"defaults", "existingSecret: " + secretName, base()},
	{"hpa", `existingSecret: ` + secretName + `
validator:
  autoscaling: {enabled: true, minReplicas: 3, maxReplicas: 12, targetMemoryUtilizationPercentage: 80}
  podDisruptionBudget: {minAvailable: "", maxUnavailable: 1}
`, with(base(), "autoscaling/v2/HorizontalPodAutoscaler", 1)},
	{"monitoring", `existingSecret: ` + secretName + `
serviceMonitor: {enabled: true, interval: 15s, scrapeTimeout: 10s, labels: {release: prometheus}}
prometheusRule: {enabled: true, labels: {release: prometheus}}
`, with(base(), "monitoring.coreos.com/v1/ServiceMonitor", 2, "monitoring.coreos.com/v1/PrometheusRule", 1)},
	{"supabase with JWT_SECRET", `existingSecret: ` + secretName + `
config: {source: supabase, maxStaleness: 3s, cacheTTL: 10m, logLevel: debug}
validator:
  env:
    JWT_AUDIENCE: authenticated
    JWT_LEEWAY: 5s
    JWT_SESSIONLESS_ROLES: service_role
    SESSION_TIMEBOX: 24h
    SESSION_INACTIVITY_TIMEOUT: 8h
    SUPABASE_COOKIE: sb-abcdefgh-auth-token
`, base()},
	{"supabase with JWKS_URL", `existingSecret: ` + secretName + `
secretKeys: {jwtSecret: ""}
config: {source: supabase, jwksUrl: "http://127.0.0.1:1/auth/v1/.well-known/jwks.json"}
`, base()},
	{"table", `existingSecret: ` + secretName + `
config:
  source: table
  timestampZone: Europe/Berlin
  table:
    name: app.user_sessions
    key: token
    keyFormat: signed
    id: id
    user: user_id
    created: created_at
    expires: expires_at
    revoked: revoked_at
    lastActive: seen_at
validator:
  env: {SESSION_INACTIVITY_TIMEOUT: 30m, SESSION_COOKIE: sid}
invalidator:
  env: {LAG_THRESHOLD: 30s, STANDBY_POLL: 2s}
`, base()},
	{"better-auth with every typed value and custom ports and names", `existingSecret: other-secret
secretKeys: {databaseUrl: pg, redisUrl: redis, adminToken: admin, sessionCookieSecret: cookie}
image: {repository: registry.example/sessionguard, tag: "1.2.3"}
fullnameOverride: sg-auth
serviceAccount: {create: false, name: sg-runner}
config:
  source: better-auth
  publication: sg_pub
  redisKeyPrefix: sg-auth
  logLevel: warn
  shutdownTimeout: 20s
  maxStaleness: 4s
  cacheTTL: 1m
  replicationSlot: sg_slot
  heartbeatInterval: 500ms
env: {}
validator:
  port: 9000
  imageTag: "1.2.2"
  service: {port: 80}
  env: {DB_MAX_CONNS: 20, REDIS_POOL_SIZE: "30", SESSION_NEGATIVE_TTL: 5s, SESSION_CACHE_ENABLED: true, SESSION_COOKIE: __Secure-better-auth.session_token}
invalidator:
  port: 9001
  replicas: 3
migrate:
  args: ["-revoke-public-emit-message"]
`, with(base(), "v1/ServiceAccount", 0)},
	{"kratos without admin API or migrate", `existingSecret: ` + secretName + `
secretKeys: {adminToken: ""}
config: {source: kratos}
migrate: {enabled: false}
validator:
  podDisruptionBudget: {enabled: false}
`, with(base(), "batch/v1/Job", 0, "policy/v1/PodDisruptionBudget", 1)},
	{"connect-pg-simple", `existingSecret: ` + secretName + `
config: {source: connect-pg-simple, timestampZone: America/New_York}
`, base()},
	{"django", `existingSecret: ` + secretName + `
config: {source: django}
`, base()},
	{"lucia", `existingSecret: ` + secretName + `
config: {source: lucia}
env: {LOG_LEVEL: error}
`, base()},
}

// TestRender lints and renders the chart for each case and checks every
// object it renders.
func TestRender(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if out, err := helm(t, tc.values, "lint", "--strict", "--kube-version", kubeVersion); err != nil {
				t.Fatalf("helm lint --strict: %v\n%s", err, out)
			}
			objs := render(t, tc.name, tc.values)
			got := map[string]int{}
			for _, o := range objs {
				got[o.Kind]++
			}
			for k, n := range tc.kinds {
				if n == 0 {
					delete(tc.kinds, k)
				}
			}
			if !reflect.DeepEqual(got, tc.kinds) {
				t.Errorf("rendered kinds %v, want %v", got, tc.kinds)
			}
			var problems []string
			problems = append(problems, CheckNames(objs)...)
			problems = append(problems, CheckWiring(objs)...)
			secret := existingSecret(t, tc.values)
			for where, tpl := range PodTemplates(objs) {
				for _, msg := range CheckRestricted(tpl.Spec) {
					problems = append(problems, where+": "+msg)
				}
				for _, c := range tpl.Spec.Containers {
					proc, err := Process(c)
					if err != nil {
						problems = append(problems, where+": "+err.Error())
						continue
					}
					for _, msg := range append(CheckEnv(c, proc, settings[proc], secret), CheckPorts(c, proc, settings[proc])...) {
						problems = append(problems, fmt.Sprintf("%s, container %s (%s): %s", where, c.Name, proc, msg))
					}
				}
			}
			for _, p := range problems {
				t.Error(p)
			}
			checkObjects(t, tc.name, tc.values, objs)
		})
	}
}

// TestConfigAccepted starts every container of every case with its
// rendered command and environment, all at once (each start waits up to
// two seconds for a refusal), and fails on a configuration a binary
// refuses.
func TestConfigAccepted(t *testing.T) {
	var wg sync.WaitGroup
	for _, tc := range cases {
		for where, tpl := range PodTemplates(render(t, tc.name, tc.values)) {
			for _, c := range tpl.Spec.Containers {
				wg.Go(func() {
					if err := ConfigAccepted(context.Background(), binDir, c); err != nil {
						t.Errorf("%s: %s: %v", tc.name, where, err)
					}
				})
			}
		}
	}
	wg.Wait()
}

type rendered struct {
	once sync.Once
	objs []Object
	err  error
}

var renders sync.Map // case name -> *rendered

// render runs helm template for a case once and decodes its output.
func render(t *testing.T, name, values string) []Object {
	t.Helper()
	v, _ := renders.LoadOrStore(name, &rendered{})
	r := v.(*rendered)
	r.once.Do(func() {
		out, err := template(t, values)
		if err != nil {
			r.err = fmt.Errorf("helm template: %v", err)
			return
		}
		if r.objs, err = DecodeManifest([]byte(out)); err != nil {
			r.err = fmt.Errorf("%v\n--- rendered:\n%s", err, out)
		}
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.objs
}

// existingSecret reads the case's existingSecret back from its values.
func existingSecret(t *testing.T, values string) string {
	for _, l := range strings.Split(values, "\n") {
		if v, ok := strings.CutPrefix(l, "existingSecret: "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("case without existingSecret")
	return ""
}

// checkObjects checks what the chart promises of particular objects.
func checkObjects(t *testing.T, name, values string, objs []Object) {
	t.Helper()
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *appsv1.Deployment:
			if strings.HasSuffix(o.Name, "-invalidator") {
				want := int32(2)
				if strings.Contains(values, "replicas: 3") {
					want = 3
				}
				if v.Spec.Replicas == nil || *v.Spec.Replicas != want {
					t.Errorf("invalidator Deployment: replicas %v, want %d", v.Spec.Replicas, want)
				}
			}
			if len(v.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
				t.Errorf("Deployment %s: no topologySpreadConstraints", o.Name)
			}
			for _, c := range v.Spec.Template.Spec.Containers {
				if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("Deployment %s: container %s has no memory request or limit", o.Name, c.Name)
				}
			}
		case *monitoringv1.PrometheusRule:
			// The rules reach the PrometheusRule whole: decode the chart's
			// copy of the rules file as its spec and compare.
			raw, err := os.ReadFile(filepath.Join(chartDir, "files", "alerts.yml"))
			if err != nil {
				t.Fatal(err)
			}
			var want monitoringv1.PrometheusRuleSpec
			if err := DecodeStrict(raw, &want); err != nil {
				t.Fatalf("files/alerts.yml is not a PrometheusRule spec: %v", err)
			}
			if len(want.Groups) == 0 || !reflect.DeepEqual(v.Spec, want) {
				t.Errorf("PrometheusRule spec differs from files/alerts.yml")
			}
		}
	}
	if name == "hpa" {
		for _, o := range objs {
			if d, ok := o.Obj.(*appsv1.Deployment); ok && strings.HasSuffix(o.Name, "-validator") && d.Spec.Replicas != nil {
				t.Errorf("validator Deployment sets replicas while the HPA is on")
			}
		}
	}
}

// TestLintOldestKubernetes lints the chart against the oldest Kubernetes
// its kubeVersion admits (API versions removed or not yet served there).
func TestLintOldestKubernetes(t *testing.T) {
	t.Parallel()
	values := cases[2].values + "validator: {autoscaling: {enabled: true}}\n"
	if out, err := helm(t, values, "lint", "--strict", "--kube-version", kubeVersionMin); err != nil {
		t.Fatalf("helm lint --strict --kube-version %s: %v\n%s", kubeVersionMin, err, out)
	}
}

// TestRefusedValues checks that values the chart cannot honour fail the
// render with a message saying what to fix.
func TestRefusedValues(t *testing.T) {
	for _, tc := range []struct{ values, want string }{
		{``, "existingSecret is required"},
		{`config: {source: supabase}`, "existingSecret is required"},
		{`existingSecret: s
config: {source: mongo}`, `config.source "mongo" is not one of`},
		{`existingSecret: s
config: {source: table, table: {name: sessions}}`, "config.source table needs config.table.name (SESSION_TABLE) and config.table.key"},
		{`existingSecret: s
config: {table: {name: sessions}}`, "config.table is set but config.source is sessionguard"},
		{`existingSecret: s
config: {source: better-auth}
secretKeys: {sessionCookieSecret: ""}`, "config.source better-auth needs SESSION_COOKIE_SECRET"},
		{`existingSecret: s
secretKeys: {databaseUrl: ""}`, "secretKeys.databaseUrl must name"},
		{`existingSecret: s
env: {LISTEN_ADDR: ":9000"}`, "env.LISTEN_ADDR: set it through validator.port / invalidator.port"},
		{`existingSecret: s
validator: {env: {DATABASE_URL: "postgres://x"}}`, "validator.env.DATABASE_URL: set it through existingSecret and secretKeys"},
		{`existingSecret: s
invalidator: {env: {lag_threshold: 1s}}`, `invalidator.env: "lag_threshold" is not a setting's name`},
		{`existingSecret: s
config: {maxStaleness: 2s}
validator: {env: {MAX_STALENESS: 1s}}`, "validator.env.MAX_STALENESS is also set by a config value"},
		{`existingSecret: s
env: {SESSION_SOURCE: kratos}`, "env.SESSION_SOURCE is also set by a config value"},
		{`existingSecret: s
validator: {podDisruptionBudget: {minAvailable: 1, maxUnavailable: 1}}`, "set one of minAvailable and maxUnavailable"},
	} {
		out, err := template(t, tc.values)
		if err == nil {
			t.Errorf("values %q rendered (%d bytes); want a failure with %q", tc.values, len(out), tc.want)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("values %q: error %v, want it to contain %q", tc.values, err, tc.want)
		}
	}
}

// TestAlertsCopy checks that the chart's copy of the alerting rules is the
// repository's deploy/prometheus/alerts.yml, byte for byte.
func TestAlertsCopy(t *testing.T) {
	src := filepath.Join(repoRoot, "deploy", "prometheus", "alerts.yml")
	want, err := os.ReadFile(src)
	if os.IsNotExist(err) {
		t.Skipf("%s does not exist yet; nothing to compare the chart's files/alerts.yml with", src)
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(chartDir, "files", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("deploy/helm/sessionguard/files/alerts.yml differs from deploy/prometheus/alerts.yml; " +
			"the chart cannot read outside its directory and keeps a copy: from the repository root run\n" +
			"  cp deploy/prometheus/alerts.yml deploy/helm/sessionguard/files/alerts.yml")
	}
}

// TestChecksCatchMistakes proves the checks above can fail: each input
// below is wrong in one way and must be refused.
func TestChecksCatchMistakes(t *testing.T) {
	const good = `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replicas: 1
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          ports: [{name: http, containerPort: 8080}]
`
	if _, err := DecodeManifest([]byte(good)); err != nil {
		t.Fatalf("the well-formed document is refused: %v", err)
	}
	for name, doc := range map[string]string{
		"misspelled field":      strings.Replace(good, "containerPort:", "containerPorts:", 1),
		"field in another case": strings.Replace(good, "containerPort:", "ContainerPort:", 1),
		"duplicate key":         strings.Replace(good, "replicas: 1", "replicas: 1\n  replicas: 2", 1),
		"wrong type":            strings.Replace(good, "replicas: 1", "replicas: two", 1),
		"unknown kind":          strings.Replace(good, "kind: Deployment", "kind: DaemonSet", 1),
		"misplaced field":       strings.Replace(good, "  replicas: 1", "  replicas: 1\n  serviceAccountName: x", 1),
	} {
		if _, err := DecodeManifest([]byte("---\n" + doc)); err == nil {
			t.Errorf("%s: the decoder accepted it", name)
		}
	}

	f, tr := false, true
	user := int64(RunAsUser)
	restricted := corev1.PodSpec{
		AutomountServiceAccountToken: &f,
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &tr, RunAsUser: &user,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
		Containers: []corev1.Container{{Name: "c", SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &f, ReadOnlyRootFilesystem: &tr,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
	}
	if p := CheckRestricted(restricted); len(p) > 0 {
		t.Fatalf("a restricted pod spec is refused: %v", p)
	}
	for name, spoil := range map[string]func(*corev1.PodSpec){
		"token mounted":        func(s *corev1.PodSpec) { s.AutomountServiceAccountToken = nil },
		"writable root":        func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.ReadOnlyRootFilesystem = &f },
		"root user":            func(s *corev1.PodSpec) { zero := int64(0); s.Containers[0].SecurityContext.RunAsUser = &zero },
		"capabilities kept":    func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Capabilities = nil },
		"privilege escalation": func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil },
		"no seccomp":           func(s *corev1.PodSpec) { s.SecurityContext.SeccompProfile = nil },
		"no container context": func(s *corev1.PodSpec) { s.Containers[0].SecurityContext = nil },
	} {
		s := restricted.DeepCopy()
		spoil(s)
		if len(CheckRestricted(*s)) == 0 {
			t.Errorf("%s: CheckRestricted accepted it", name)
		}
	}

	c := corev1.Container{Name: "validator", Command: []string{"validator"},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		Env: []corev1.EnvVar{
			{Name: "MAX_STALENES", Value: "2s"},
			{Name: "LISTEN_ADDR", Value: ":8081"},
			{Name: "ADMIN_TOKEN", Value: "literal-secret-value"},
		},
		LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz"}}},
	}
	env := strings.Join(CheckEnv(c, Validator, settings[Validator], secretName), "\n")
	for _, want := range []string{"MAX_STALENES is not a setting of validator", "ADMIN_TOKEN is a literal value", "DATABASE_URL is not set"} {
		if !strings.Contains(env, want) {
			t.Errorf("CheckEnv did not report %q; it reported:\n%s", want, env)
		}
	}
	ports := strings.Join(CheckPorts(c, Validator, settings[Validator]), "\n")
	for _, want := range []string{"container port http is 8080 but the process listens on 8081", `livenessProbe path is "/healthz"`, "readinessProbe is not an httpGet"} {
		if !strings.Contains(ports, want) {
			t.Errorf("CheckPorts did not report %q; it reported:\n%s", want, ports)
		}
	}

	bad := corev1.Container{Name: "validator", Command: []string{"validator"}, Env: []corev1.EnvVar{
		{Name: "DATABASE_URL", Value: secretValues["DATABASE_URL"]}, {Name: "MAX_STALENESS", Value: "soon"}}}
	if err := ConfigAccepted(context.Background(), binDir, bad); err == nil || !strings.Contains(err.Error(), "MAX_STALENESS") {
		t.Errorf("ConfigAccepted with MAX_STALENESS=soon: %v, want the validator's refusal naming it", err)
	}
}

// TestParseSettings reads both usage forms.
func TestParseSettings(t *testing.T) {
	got := ParseSettings([]byte("Usage of validator (each flag overrides its environment variable):\n" +
		"  -listen-addr / LISTEN_ADDR\n      HTTP listen address (default :8080)\n" +
		"  -session-source / SESSION_SOURCE\n      the table (table: described by SESSION_TABLE_*) (default sessionguard)\n" +
		"  -revoke-public-emit-message\n      revoke EXECUTE (flag only, default off)\n" +
		"  -max-staleness string\n    \tguard (env MAX_STALENESS, default 2s)\n"))
	want := map[string]string{"LISTEN_ADDR": ":8080", "SESSION_SOURCE": "sessionguard", "MAX_STALENESS": "2s"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseSettings = %v, want %v", got, want)
	}
}

// The validators' MAX_STALENESS is the grace of the invalidators' sampled
// check, so a disagreement the guard allows is not counted.
func TestMaxStalenessIsTheInspectGrace(t *testing.T) {
	const name = "supabase with JWT_SECRET" // config.maxStaleness: 3s
	got := map[string]string{}
	for _, tpl := range PodTemplates(render(t, name, caseValues(t, name))) {
		for _, c := range tpl.Spec.Containers {
			p, err := Process(c)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range c.Env {
				if e.Name == "MAX_STALENESS" || e.Name == "INSPECT_GRACE" {
					got[p+" "+e.Name] = e.Value
				}
			}
		}
	}
	want := map[string]string{Validator + " MAX_STALENESS": "3s", Migrate + " MAX_STALENESS": "3s", Invalidator + " INSPECT_GRACE": "3s"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

// caseValues returns the values of the render case called name.
func caseValues(t *testing.T, name string) string {
	t.Helper()
	for _, tc := range cases {
		if tc.name == name {
			return tc.values
		}
	}
	t.Fatalf("no render case %q", name)
	return ""
}
