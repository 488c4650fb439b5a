// Package deploy holds deployment files (Prometheus rules, a Grafana
// dashboard); its tests prove them against the real tools and the real
// processes.
package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sessionguard/sessionguard/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	alertsFile     = "prometheus/alerts.yml"
	alertsTestFile = "prometheus/alerts_test.yml"
	dashboardFile  = "grafana/sessionguard.json"
	adminToken     = "0123456789abcdef0123456789abcdef"
)

// The alerts issue 9 asks for; alerts.yml may have more.
var requiredAlerts = []string{
	"SessionguardWatermarkStale", "SessionguardNoActiveInvalidator", "SessionguardSeveralActiveInvalidators",
	"SessionguardReplicationLagBytes", "SessionguardReplicationLagSeconds", "SessionguardSlotWALNotReserved",
	"SessionguardBreakerOpen", "SessionguardRedisErrors", "SessionguardPostgresFallbackHigh",
	"SessionguardValidator5xx", "SessionguardCacheFlushes", "SessionguardCacheDisagreement",
}

// tool finds one of the binaries of Debian's prometheus package. A missing
// one fails the test: make test installs it (scripts/check-prereqs.sh).
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p := "/usr/bin/" + name; fileExists(p) {
		return p
	}
	t.Fatalf("%s not found: install it with `apt-get install -y prometheus` (Debian/Ubuntu; `make test` does it as root)", name)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// promtool runs promtool with args in dir and returns its output and error.
func promtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(tool(t, "promtool"), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The rules pass promtool's checks and their unit tests, and every alert
// has a unit test that fails when the alert never fires and one that
// expects it silent.
func TestAlertRulesUnitTests(t *testing.T) {
	t.Parallel()
	if out, err := promtool(t, ".", "check", "rules", alertsFile); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := promtool(t, "prometheus", "test", "rules", filepath.Base(alertsTestFile)); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	rules, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	names := alertNames(string(rules))
	for _, want := range requiredAlerts {
		if !slices.Contains(names, want) {
			t.Errorf("%s has no alert %s", alertsFile, want)
		}
	}
	tests, err := os.ReadFile(alertsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	firing, quiet := testCases(string(tests))
	for _, n := range names {
		if firing[n] == 0 || quiet[n] == 0 {
			t.Errorf("%s: %d cases expect %s to fire and %d expect it silent; want at least one of each", alertsTestFile, firing[n], n, quiet[n])
		}
	}
	// A test that cannot fail proves nothing: with every alert made never
	// to fire, the unit tests must fail for each alert (one promtool run:
	// it names every failing alert).
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	mutated := string(rules)
	for _, n := range slices.Compact(slices.Sorted(slices.Values(names))) {
		if mutated, err = replaceExpr(mutated, n, "vector(0) > 1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(mutated, "expr: vector(0) > 1"); n != len(names) || strings.Count(mutated, "expr:") != n {
		t.Fatalf("%d of %d exprs replaced:\n%s", n, len(names), mutated)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), []byte(mutated), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := promtool(t, dir, "test", "rules", "alerts_test.yml")
	if err == nil {
		t.Fatalf("the unit tests pass with no alert ever firing:\n%s", out)
	}
	failed := map[string]bool{}
	for _, m := range failedAlert.FindAllStringSubmatch(out, -1) {
		failed[m[1]] = true
	}
	for _, n := range names {
		if !failed[n] {
			t.Errorf("the unit tests pass with %s never firing", n)
		}
	}
}

var failedAlert = regexp.MustCompile(`alertname: (\w+), time:`)

var alertLine = regexp.MustCompile(`(?m)^\s*- alert:\s*(\S+)\s*$`)

func alertNames(rules string) []string {
	var names []string
	for _, m := range alertLine.FindAllStringSubmatch(rules, -1) {
		names = append(names, m[1])
	}
	return names
}

// testCases counts, per alert, the eval cases of a promtool test file that
// expect it to fire and those that expect it silent (exp_alerts: []).
func testCases(tests string) (firing, quiet map[string]int) {
	firing, quiet = map[string]int{}, map[string]int{}
	var current string
	for _, line := range strings.Split(tests, "\n") {
		l := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(l, "alertname:"):
			current = strings.TrimSpace(strings.TrimPrefix(l, "alertname:"))
		case l == "exp_alerts: []":
			quiet[current]++
		case l == "exp_alerts:":
			firing[current]++
		}
	}
	return firing, quiet
}

// replaceExpr returns rules with the expr (one line or a block) of every
// rule of alert set to expr. It knows the layout of alerts.yml: `- alert:`
// then, further down the same rule, `expr:`.
func replaceExpr(rules, alert, expr string) (string, error) {
	lines := strings.Split(rules, "\n")
	found := false
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "- alert: "+alert {
			continue
		}
		for j := i + 1; j < len(lines); j++ {
			t := strings.TrimSpace(lines[j])
			if strings.HasPrefix(t, "- alert:") {
				break
			}
			if !strings.HasPrefix(t, "expr:") {
				continue
			}
			indent := len(lines[j]) - len(strings.TrimLeft(lines[j], " "))
			end := j + 1
			if t == "expr: |" {
				for end < len(lines) && (strings.TrimSpace(lines[end]) == "" ||
					len(lines[end])-len(strings.TrimLeft(lines[end], " ")) > indent) {
					end++
				}
			}
			lines = slices.Concat(lines[:j], []string{strings.Repeat(" ", indent) + "expr: " + expr}, lines[end:])
			found = true
			break
		}
	}
	if !found {
		return "", fmt.Errorf("no expr of alert %s in the rules", alert)
	}
	return strings.Join(lines, "\n"), nil
}

// proc is a process the test started, killed when it ends.
type proc struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func start(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, out: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, tail(p.out.String(), 40))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// httpDo sends a request and returns the status and body.
func httpDo(t *testing.T, method, u, bearer, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// promAPI is the HTTP API of the test's Prometheus.
type promAPI struct {
	t    *testing.T
	base string
}

func (p promAPI) get(path string, params url.Values, out any) error {
	resp, err := http.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", path, env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query evaluates expr now; an error is a query Prometheus refused.
func (p promAPI) query(expr string) ([]sample, error) {
	var data struct {
		ResultType string   `json:"resultType"`
		Result     []sample `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %s", expr, data.ResultType)
	}
	return data.Result, nil
}

type rule struct {
	Name      string `json:"name"`
	Query     string `json:"query"`
	Type      string `json:"type"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	State     string `json:"state"`
}

func (p promAPI) rules() ([]rule, error) {
	var data struct {
		Groups []struct {
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get("/api/v1/rules", nil, &data); err != nil {
		return nil, err
	}
	var out []rule
	for _, g := range data.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

var metricName = regexp.MustCompile(`\bsessionguard_[a-z0-9_]+`)

// metricNames are the sessionguard metric names exprs use, as stored in
// the TSDB: a histogram appears as its _bucket, _sum or _count series, so
// the name an expression writes is the one to look up.
func metricNames(exprs []string) []string {
	seen := map[string]bool{}
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e, -1) {
			seen[n] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// missingMetrics returns the names among those of exprs for which
// Prometheus holds no series now.
func (p promAPI) missingMetrics(exprs []string) ([]string, error) {
	var missing []string
	for _, n := range metricNames(exprs) {
		res, err := p.query(n)
		if err != nil {
			return nil, err
		}
		if len(res) == 0 {
			missing = append(missing, n)
		}
	}
	return missing, nil
}

// dashboardExprs reads the targets of every panel of the dashboard, with
// Grafana's interval variables replaced by windows that cover the test's
// traffic.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr       string `json:"expr"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name, Type, Query string
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d", d.SchemaVersion)
	}
	if len(d.Templating.List) == 0 || d.Templating.List[0].Name != "datasource" || d.Templating.List[0].Type != "datasource" || d.Templating.List[0].Query != "prometheus" {
		t.Errorf("the dashboard's first variable must be the Prometheus datasource: %+v", d.Templating.List)
	}
	vars := strings.NewReplacer("$__rate_interval", "1m", "${__rate_interval}", "1m", "$__interval", "15s", "${__interval}", "15s",
		"$__range", "5m", "${__range}", "5m")
	var exprs []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			if len(p.Panels) > 0 {
				t.Errorf("row %q holds collapsed panels: keep rows open so every panel is checked", p.Title)
			}
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no target", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: a target's datasource is %q, want ${datasource}", p.Title, tg.Datasource.UID)
			}
			e := vars.Replace(tg.Expr)
			if strings.Contains(e, "$") {
				t.Errorf("panel %q: unknown variable in %s", p.Title, tg.Expr)
			}
			exprs = append(exprs, e)
		}
	}
	return exprs
}

// The proof against real metrics: the validator and the invalidator run
// against real Postgres and Redis and serve a little traffic; a real
// Prometheus scrapes them with alerts.yml loaded. Every rule loads and
// evaluates, every metric name an alert or a panel uses has series, every
// panel's query returns series, and a healthy run fires no alert.
func TestAlertsAndDashboardAgainstRealMetrics(t *testing.T) {
	t.Parallel()
	began := time.Now()
	prometheus := tool(t, "prometheus")
	dir := t.TempDir()

	// The two processes, built from this tree.
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/validator", "./cmd/invalidator")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dbURL := testenv.DB(t)
	redis := testenv.NewRedis(t)
	pool := testenv.Pool(t, dbURL)
	slot := fmt.Sprintf("sg_deploy_%d", time.Now().UnixNano()%1e9)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, slot)
	})
	common := []string{"DATABASE_URL=" + dbURL, "REDIS_URL=" + redis.URL(), "LOG_LEVEL=warn", "PATH=" + os.Getenv("PATH")}
	invAddr, valAddr := freeAddr(t), freeAddr(t)
	inv := exec.Command(filepath.Join(dir, "invalidator"))
	inv.Env = append(slices.Clone(common), "LISTEN_ADDR="+invAddr, "REPLICATION_SLOT="+slot)
	start(t, "invalidator", inv)
	val := exec.Command(filepath.Join(dir, "validator"))
	val.Env = append(slices.Clone(common), "LISTEN_ADDR="+valAddr, "ADMIN_TOKEN="+adminToken)
	start(t, "validator", val)
	V := "http://" + valAddr
	testenv.WaitFor(t, 60*time.Second, "the validator ready and the invalidator active with a watermark", func() bool {
		if code, _ := httpDo(t, "GET", V+"/readyz", "", ""); code != 200 {
			return false
		}
		code, body := httpDo(t, "GET", "http://"+invAddr+"/health", "", "")
		var h struct{ Status, Role, Watermark string }
		_ = json.Unmarshal(body, &h)
		return code == 200 && h.Role == "active" && h.Watermark != ""
	})

	// Prometheus, scraping both every second, with the rules loaded: a rule
	// file that does not load stops it at start.
	promAddr := freeAddr(t)
	abs, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: sessionguard-validator
    static_configs:
      - targets: [%q]
  - job_name: sessionguard-invalidator
    static_configs:
      - targets: [%q]
`, abs, valAddr, invAddr)
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(prometheus, "--config.file="+confPath, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	pp := start(t, "prometheus", prom)
	api := promAPI{t: t, base: "http://" + promAddr}
	testenv.WaitFor(t, 30*time.Second, "Prometheus scraping both processes", func() bool {
		if pp.cmd.ProcessState != nil {
			t.Fatalf("prometheus exited: %s", tail(pp.out.String(), 20))
		}
		res, err := api.query(`up{job=~"sessionguard-.*"} == 1`)
		return err == nil && len(res) == 2
	})

	// A little traffic: sessions created, validated from Postgres then from
	// Redis, through forward auth too; an unknown and a malformed token; a
	// revocation by SQL (through the invalidator) and one by the admin API.
	type created struct {
		Token   string `json:"token"`
		Session struct {
			ID string `json:"id"`
		} `json:"session"`
	}
	var sessions []created
	for i := 0; i < 3; i++ {
		code, body := httpDo(t, "POST", V+"/v1/sessions", adminToken, fmt.Sprintf(`{"user_id":%q,"ttl":"1h"}`, uuid.NewString()))
		var c created
		if err := json.Unmarshal(body, &c); code != 201 || err != nil {
			t.Fatalf("create session: %d %s", code, body)
		}
		sessions = append(sessions, c)
	}
	validate := func(token string) (int, string) {
		code, body := httpDo(t, "POST", V+"/v1/sessions/validate", token, "")
		var r struct{ Source string }
		_ = json.Unmarshal(body, &r)
		return code, r.Source
	}
	for _, s := range sessions {
		if code, src := validate(s.Token); code != 200 || src != "database" {
			t.Fatalf("first validation: %d from %q, want 200 from the database", code, src)
		}
		testenv.WaitFor(t, 10*time.Second, "a validation from the cache", func() bool {
			code, src := validate(s.Token)
			return code == 200 && src == "cache"
		})
		if code, _ := httpDo(t, "GET", V+"/v1/auth", s.Token, ""); code != 200 {
			t.Fatalf("forward auth: %d", code)
		}
	}
	if code, _ := validate("an-unknown-token-" + uuid.NewString()); code != 401 {
		t.Fatalf("unknown token: %d, want 401", code)
	}
	if code, _ := httpDo(t, "POST", V+"/v1/sessions/validate", "", `{"token":""}`); code != 400 {
		t.Fatalf("malformed token: %d, want 400", code)
	}
	if code, _ := httpDo(t, "GET", V+"/v1/auth", "", ""); code != 401 {
		t.Fatalf("forward auth without a token: %d, want 401", code)
	}
	if _, err := pool.Exec(context.Background(), `UPDATE sessions SET revoked_at = now() WHERE id = $1`, sessions[0].Session.ID); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the revocation by SQL refused", func() bool {
		code, _ := validate(sessions[0].Token)
		return code == 401
	})
	if code, body := httpDo(t, "DELETE", V+"/v1/sessions/"+sessions[1].Session.ID, adminToken, ""); code != 204 {
		t.Fatalf("revoke through the admin API: %d %s", code, body)
	}
	if code, _ := validate(sessions[1].Token); code != 401 {
		t.Fatalf("revoked session: %d, want 401", code)
	}

	// The traffic reached Prometheus: the revocation by SQL was applied by
	// the invalidator, validations were answered from both sources.
	for _, q := range []string{
		`sum(sessionguard_invalidator_events_total{op="update"}) > 0`,
		`sum(sessionguard_validations_total{source="cache", result="valid"}) > 0`,
		`sum(sessionguard_validations_total{source="database", result="invalid"}) > 0`,
		`sum(sessionguard_http_requests_total{route="/v1/auth"}) > 0`,
	} {
		testenv.WaitFor(t, 15*time.Second, "Prometheus to see "+q, func() bool {
			res, err := api.query(q)
			return err == nil && len(res) == 1
		})
	}
	time.Sleep(2 * time.Second) // a few more scrapes and rule evaluations

	// Every rule loaded, evaluates without error, and is one alerts.yml names.
	rulesText, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules []rule
	testenv.WaitFor(t, 15*time.Second, "every rule evaluated", func() bool {
		rules, err = api.rules()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			if r.Health == "unknown" {
				return false
			}
		}
		return len(rules) > 0
	})
	var loaded, exprs []string
	for _, r := range rules {
		loaded = append(loaded, r.Name)
		exprs = append(exprs, r.Query)
		if r.Type != "alerting" || r.Health != "ok" {
			t.Errorf("rule %s: type %s, health %s %s", r.Name, r.Type, r.Health, r.LastError)
		}
		if _, err := api.query(r.Query); err != nil {
			t.Errorf("alert %s: %v", r.Name, err)
		}
		if r.State == "firing" {
			t.Errorf("alert %s fires on a healthy system", r.Name)
		}
	}
	if want := alertNames(string(rulesText)); !slices.Equal(loaded, want) {
		t.Errorf("Prometheus loaded %v, alerts.yml has %v", loaded, want)
	}

	// Every metric an alert uses has series.
	missing, err := api.missingMetrics(exprs)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("alerts use metrics the processes do not export: %v", missing)
	}
	t.Logf("alerts: %d rules, metrics %v", len(rules), metricNames(exprs))

	// Every dashboard query returns series, and every metric it names exists.
	dash := dashboardExprs(t)
	for _, e := range dash {
		res, err := api.query(e)
		if err != nil {
			t.Errorf("dashboard query %s: %v", e, err)
		} else if len(res) == 0 {
			t.Errorf("dashboard query returns no series: %s", e)
		}
	}
	if missing, err := api.missingMetrics(dash); err != nil || len(missing) > 0 {
		t.Errorf("the dashboard uses metrics the processes do not export: %v %v", missing, err)
	}
	t.Logf("dashboard: %d queries", len(dash))

	// The check itself can fail: a copy of the rules and of the dashboard
	// naming a metric that does not exist is caught.
	const real, bogus = "sessionguard_invalidator_lag_seconds", "sessionguard_invalidator_lag_secs"
	mutated := slices.Clone(exprs)
	changed := false
	for i, e := range mutated {
		if strings.Contains(e, real) {
			mutated[i], changed = strings.ReplaceAll(e, real, bogus), true
		}
	}
	if !changed {
		t.Fatalf("no alert uses %s", real)
	}
	if missing, err := api.missingMetrics(mutated); err != nil || !slices.Equal(missing, []string{bogus}) {
		t.Errorf("rules naming %s: the check reports %v %v, want exactly it", bogus, missing, err)
	}
	if res, err := api.query(`max(` + bogus + `)`); err != nil || len(res) != 0 {
		t.Errorf("a dashboard query on %s: %v %v, want no series (what the panel check fails on)", bogus, res, err)
	}
	t.Logf("proof done in %v", time.Since(began).Round(100*time.Millisecond))
}
