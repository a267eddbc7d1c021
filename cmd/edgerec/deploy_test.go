package main

// The deploy kit (deploy/, Dockerfile) checked against the code it
// deploys, so that neither can drift from the other: the systemd unit's
// and the image's serve flags go through serve's own flag parser, the
// image's health check runs against a real server, and every metric the
// Grafana dashboard queries must be in a real server's /metrics.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// repoFile returns the path of a file of the repository.
func repoFile(name string) string { return filepath.Join("..", "..", name) }

// findCommand returns the command of the table at path ("serve").
func findCommand(t *testing.T, path string) *command {
	t.Helper()
	for _, c := range allCommands(commands) {
		if c.path == path {
			return c
		}
	}
	t.Fatalf("no command %q in the table", path)
	return nil
}

// serveFlagsOf parses args with edgerec serve's own flag parser, with
// exactly the environment env (no EDGEREC_ variable of the test's own).
// The process environment is restored before it returns, so its callers
// must not run in parallel, and the servers they start later do not see
// env.
func serveFlagsOf(t *testing.T, args []string, env map[string]string) *serveFlags {
	t.Helper()
	saved := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "EDGEREC_") {
			saved[k] = v
			os.Unsetenv(k)
		}
	}
	defer func() {
		for k := range env {
			os.Unsetenv(k)
		}
		for k, v := range saved {
			os.Setenv(k, v)
		}
	}()
	for k, v := range env {
		os.Setenv(k, v)
	}
	f, err := parseServeFlags(findCommand(t, "serve"), args)
	if err != nil {
		t.Fatalf("edgerec serve %s: %v", strings.Join(args, " "), err)
	}
	return f
}

// unitEntry is one Key=Value line of a systemd unit file.
type unitEntry struct {
	section, key, value string
	line                int
}

// readUnit parses a systemd unit file: sections, Key=Value lines,
// comments, and lines continued with a trailing backslash.
func readUnit(t *testing.T, path string) []unitEntry {
	t.Helper()
	var es []unitEntry
	section, cont := "", ""
	for i, line := range strings.Split(string(mustRead(t, path)), "\n") {
		line = strings.TrimSpace(line)
		if cont == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if l, ok := strings.CutSuffix(line, `\`); ok {
			cont += l + " "
			continue
		}
		line, cont = cont+line, ""
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not Key=Value in a section: %q", path, i+1, line)
		}
		es = append(es, unitEntry{section, strings.TrimSpace(k), strings.TrimSpace(v), i + 1})
	}
	return es
}

// unitValues returns the values of key in section, in file order.
func unitValues(es []unitEntry, section, key string) []string {
	var vs []string
	for _, e := range es {
		if e.section == section && e.key == key {
			vs = append(vs, e.value)
		}
	}
	return vs
}

// splitCommand splits a command line into words as systemd and sh do
// for plain words and double or single quotes.
func splitCommand(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == '"' && c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
		case quote != 0:
			w.WriteByte(c)
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words, in = append(words, w.String()), false
				w.Reset()
			}
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if in {
		words = append(words, w.String())
	}
	return words, nil
}

// systemdSeconds parses a systemd time span: "45", "45s", "1min 30s".
func systemdSeconds(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(strings.ReplaceAll(strings.ReplaceAll(s, " ", ""), "min", "m"))
}

// TestSystemdUnit checks deploy/edgerec.service: its ExecStart parses
// with serve's own flags, the keys are not on the command line, the stop
// timeout outlasts --drain, the data directory is the state directory,
// the hardening is in place; and systemd-analyze verify accepts it where
// systemd is installed.
func TestSystemdUnit(t *testing.T) {
	path := repoFile("deploy/edgerec.service")
	es := readUnit(t, path)
	one := func(section, key string) string {
		t.Helper()
		vs := unitValues(es, section, key)
		if len(vs) != 1 {
			t.Fatalf("%s: [%s] %s set %d times; want once", path, section, key, len(vs))
		}
		return vs[0]
	}
	argv, err := splitCommand(one("Service", "ExecStart"))
	if err != nil {
		t.Fatal(err)
	}
	if len(argv) < 2 || !filepath.IsAbs(argv[0]) || filepath.Base(argv[0]) != "edgerec" || argv[1] != "serve" {
		t.Fatalf("ExecStart %q: want /…/edgerec serve …", argv)
	}
	f := serveFlagsOf(t, argv[2:], nil)
	for _, a := range argv[2:] {
		if name := strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-"); strings.HasPrefix(a, "-") && (name == "api-key" || name == "admin-key") {
			t.Fatalf("ExecStart passes --%s: keys belong in the EnvironmentFile, not on a command line ps shows", name)
		}
	}
	if envFile := one("Service", "EnvironmentFile"); strings.HasPrefix(envFile, "-") || !filepath.IsAbs(envFile) {
		t.Fatalf("EnvironmentFile=%s: want an absolute path that must exist (no -): without it serve makes up a random key", envFile)
	}
	stop, err := systemdSeconds(one("Service", "TimeoutStopSec"))
	if err != nil {
		t.Fatal(err)
	}
	if stop <= f.drain {
		t.Fatalf("TimeoutStopSec %v <= serve --drain %v: systemd would kill requests the server still drains, and the stores' close", stop, f.drain)
	}
	if sd := one("Service", "StateDirectory"); f.data != "/var/lib/"+sd {
		t.Fatalf("--data %q is not the StateDirectory=%s (/var/lib/%s)", f.data, sd, sd)
	}
	if rw := unitValues(es, "Service", "ReadWritePaths"); len(rw) > 0 && !slices.Contains(strings.Fields(strings.Join(rw, " ")), f.data) {
		t.Fatalf("ReadWritePaths=%q leaves out the data directory %q", rw, f.data)
	}
	for _, kv := range [][2]string{
		{"ProtectSystem", "strict"}, {"ProtectHome", "yes"}, {"PrivateTmp", "yes"}, {"NoNewPrivileges", "yes"},
		{"LimitNOFILE", "65536"}, {"Restart", "on-failure"}, {"KillSignal", "SIGTERM"}, {"ExecReload", "/bin/kill -HUP $MAINPID"},
	} {
		if got := one("Service", kv[0]); got != kv[1] {
			t.Fatalf("%s=%s; want %s", kv[0], got, kv[1])
		}
	}
	if u := unitValues(es, "Service", "User"); len(u) != 1 || u[0] == "root" || u[0] == "0" {
		if d := unitValues(es, "Service", "DynamicUser"); len(d) != 1 || d[0] != "yes" {
			t.Fatalf("User=%q, DynamicUser=%q: want a user other than root", u, d)
		}
	}
	if one("Install", "WantedBy") != "multi-user.target" {
		t.Fatal("WantedBy: want multi-user.target")
	}

	t.Run("systemd-analyze", func(t *testing.T) {
		sa, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze not installed: the unit's syntax is not verified here (its flags are)")
		}
		// verify checks that ExecStart's binary exists: the one built here.
		unit := strings.Replace(string(mustRead(t, path)), "ExecStart="+argv[0]+" ", "ExecStart="+bin+" ", 1)
		if !strings.Contains(unit, "ExecStart="+bin+" ") {
			t.Fatalf("cannot point ExecStart at the test binary in:\n%s", unit)
		}
		p := filepath.Join(t.TempDir(), "edgerec.service")
		writeFile(t, p, unit)
		out, err := exec.CommandContext(t.Context(), sa, "verify", p).CombinedOutput()
		// verify exits 0 on an unknown key or a bad value, after a warning
		// naming the file: any line about the unit fails the test.
		var about []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "edgerec.service") {
				about = append(about, l)
			}
		}
		if err != nil || len(about) > 0 {
			t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
		}
	})
}

// dockerInstr is one instruction of a Dockerfile, continuations joined.
type dockerInstr struct {
	cmd, args string
	stage     int // index of the FROM it follows
}

func readDockerfile(t *testing.T, path string) []dockerInstr {
	t.Helper()
	var is []dockerInstr
	stage, cont := -1, ""
	for _, line := range strings.Split(string(mustRead(t, path)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if l, ok := strings.CutSuffix(line, `\`); ok {
			cont += l + " "
			continue
		}
		line, cont = cont+line, ""
		cmd, args, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		is = append(is, dockerInstr{cmd, strings.TrimSpace(args), stage})
	}
	return is
}

// dockerEnv parses the K=V pairs of an ENV instruction.
func dockerEnv(t *testing.T, args string) map[string]string {
	t.Helper()
	words, err := splitCommand(args)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			t.Fatalf("ENV %s: want K=V pairs", args)
		}
		env[k] = v
	}
	return env
}

// TestDockerfile checks the Dockerfile against the code: the builder's Go
// is go.mod's, the binary is static, the image runs as a user other than
// root, ENTRYPOINT and CMD with the image's environment parse with
// serve's flags, the drain fits docker stop's default 10 s, and the
// HEALTHCHECK command, run against a real server, passes.
func TestDockerfile(t *testing.T) {
	path := repoFile("Dockerfile")
	is := readDockerfile(t, path)
	var froms []string
	final := map[string][]string{} // instruction → arguments, in the last stage
	last := 0
	for _, in := range is {
		if in.cmd == "FROM" {
			froms = append(froms, strings.Fields(in.args)[0])
			last = in.stage
		}
	}
	for _, in := range is {
		if in.stage == last {
			final[in.cmd] = append(final[in.cmd], in.args)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("FROM %q: want a builder stage and a runtime stage", froms)
	}
	goMod := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mustRead(t, repoFile("go.mod")))
	if goMod == nil || froms[0] != "golang:"+string(goMod[1]) {
		t.Fatalf("builder FROM %s; want golang:%s, go.mod's Go", froms[0], goMod[1])
	}
	if rt := froms[len(froms)-1]; rt != "scratch" && !strings.HasPrefix(rt, "gcr.io/distroless/static") {
		t.Fatalf("runtime FROM %s: want scratch or distroless/static", rt)
	}
	static := false
	for _, in := range is {
		static = static || in.cmd == "RUN" && strings.Contains(in.args, "CGO_ENABLED=0 go build") && strings.Contains(in.args, "./cmd/edgerec")
	}
	if !static {
		t.Fatal("no RUN CGO_ENABLED=0 go build … ./cmd/edgerec: the binary must be static for a distroless/static or scratch image")
	}
	if u := final["USER"]; len(u) != 1 || strings.HasPrefix(u[0], "root") || strings.HasPrefix(u[0], "0") {
		t.Fatalf("USER %q in the runtime stage: want one user other than root", u)
	}
	env := map[string]string{}
	for _, a := range final["ENV"] {
		for k, v := range dockerEnv(t, a) {
			env[k] = v
		}
	}
	for k := range env {
		if k == "EDGEREC_API_KEY" || k == "EDGEREC_ADMIN_KEY" {
			t.Fatalf("ENV %s: a key baked into the image; pass it with docker run --env-file", k)
		}
	}
	execForm := func(instr string) []string {
		t.Helper()
		vs := final[instr]
		if len(vs) != 1 {
			t.Fatalf("%s set %d times in the runtime stage; want once", instr, len(vs))
		}
		var argv []string
		if err := json.Unmarshal([]byte(vs[0]), &argv); err != nil {
			t.Fatalf("%s %s: want the exec (JSON) form: %v", instr, vs[0], err)
		}
		return argv
	}
	argv := append(execForm("ENTRYPOINT"), execForm("CMD")...)
	if len(argv) < 2 || filepath.Base(argv[0]) != "edgerec" || argv[1] != "serve" {
		t.Fatalf("ENTRYPOINT + CMD %q: want edgerec serve …", argv)
	}
	f := serveFlagsOf(t, argv[2:], env)
	if f.drain >= 10*time.Second {
		t.Fatalf("serve --drain %v in the image: docker stop kills after 10 s by default, before the drain ends", f.drain)
	}
	if v := final["VOLUME"]; len(v) != 1 || v[0] != f.data {
		t.Fatalf("VOLUME %q; want the data directory %q", v, f.data)
	}
	_, port, err := net.SplitHostPort(f.addr)
	if err != nil {
		t.Fatal(err)
	}
	if e := final["EXPOSE"]; len(e) != 1 || e[0] != port {
		t.Fatalf("EXPOSE %q; want serve's port %s", e, port)
	}
	hc := final["HEALTHCHECK"]
	if len(hc) != 1 {
		t.Fatalf("HEALTHCHECK %q: want one", hc)
	}
	_, hcJSON, ok := strings.Cut(hc[0], "CMD ")
	var hcArgv []string
	if err := json.Unmarshal([]byte(hcJSON), &hcArgv); !ok || err != nil || len(hcArgv) < 2 || hcArgv[0] != argv[0] || hcArgv[1] != "health" {
		t.Fatalf("HEALTHCHECK %s: want CMD [%q, \"health\", …] in the exec form (no shell in the image)", hc[0], argv[0])
	}

	// The health check as the container runs it, with the image's
	// environment, against a real server on another port.
	dir := t.TempDir()
	events, items := genSample(t, dir, 5000, 4)
	data := filepath.Join(dir, "data")
	build(t, "--events", events, "--items", items, "--out", filepath.Join(data, "snapshots"))
	s := startServer(t, data, freeAddr(t))
	defer s.stop(t)
	_, sport, _ := net.SplitHostPort(s.addr)
	host, _, _ := net.SplitHostPort(env["EDGEREC_ADDR"])
	cmd := osexec(t, bin, hcArgv[1:]...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "EDGEREC_ADDR="+net.JoinHostPort(host, sport))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), ":"+sport+"/readyz: 200 OK") {
		t.Fatalf("the HEALTHCHECK against a ready server on %s: %v: %s", s.addr, err, out)
	}
}

func osexec(t *testing.T, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Env = []string{}
	return cmd
}

// series is one line of the Prometheus text format.
type series struct {
	name   string
	labels map[string]string
}

// parseExposition parses the Prometheus text format /metrics answers.
func parseExposition(t *testing.T, text string) []series {
	t.Helper()
	var ss []series
	for n, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end <= 0 {
			t.Fatalf("/metrics line %d: %q", n+1, line)
		}
		s := series{name: line[:end], labels: map[string]string{}}
		rest := line[end:]
		if rest[0] == '{' {
			rest = rest[1:]
			for rest != "" && rest[0] != '}' {
				k, v, ok := strings.Cut(rest, `="`)
				if !ok {
					t.Fatalf("/metrics line %d: bad labels: %q", n+1, line)
				}
				var val strings.Builder
				i := 0
				for ; i < len(v) && v[i] != '"'; i++ {
					if v[i] == '\\' && i+1 < len(v) {
						i++
					}
					val.WriteByte(v[i])
				}
				s.labels[k] = val.String()
				rest = strings.TrimPrefix(v[min(i+1, len(v)):], ",")
			}
			rest = strings.TrimPrefix(rest, "}")
		}
		if _, err := strconv.ParseFloat(strings.Fields(rest)[0], 64); err != nil {
			t.Fatalf("/metrics line %d: value: %v", n+1, err)
		}
		ss = append(ss, s)
	}
	return ss
}

// promMatcher is one label matcher of a PromQL selector.
type promMatcher struct{ label, op, value string }

// promSelector is a metric selector of a PromQL expression.
type promSelector struct {
	name     string
	matchers []promMatcher
}

// promKeywords are the words of PromQL that are not metric names when
// they are not followed by "(": aggregations take "by (…)" first.
var promKeywords = map[string]bool{
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "group": true, "stddev": true, "stdvar": true,
	"topk": true, "bottomk": true, "quantile": true, "count_values": true, "limitk": true, "limit_ratio": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
}

// promGrouping are the keywords followed by a list of label names.
var promGrouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// promSelectors returns the metric selectors of a PromQL expression and
// the labels it groups by. It knows PromQL's lexical structure, not its
// grammar: strings, ranges, Grafana's $variables, numbers, functions
// (a name before "("), keywords, grouping label lists and selectors.
func promSelectors(expr string) (sels []promSelector, groups []string, err error) {
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
	}
	skipSpace := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n') {
			i++
		}
		return i
	}
	depth := 0
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, nil, fmt.Errorf("unterminated string at %d", i)
			}
			i = j + 1
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return nil, nil, fmt.Errorf("unterminated range at %d", i)
			}
			i += j + 1
		case c == '$':
			i++
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '{' || expr[i] == '}') {
				i++
			}
		case '0' <= c && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case c == '{':
			return nil, nil, fmt.Errorf("a selector without a metric name at %d", i)
		case isIdent(c, true):
			j := i
			for j < len(expr) && isIdent(expr[j], false) {
				j++
			}
			word := expr[i:j]
			j = skipSpace(j)
			switch {
			case promGrouping[word]:
				if j >= len(expr) || expr[j] != '(' {
					return nil, nil, fmt.Errorf("%s without a label list at %d", word, i)
				}
				k := strings.IndexByte(expr[j:], ')')
				if k < 0 {
					return nil, nil, fmt.Errorf("unterminated label list at %d", j)
				}
				for _, l := range strings.Split(expr[j+1:j+k], ",") {
					if l = strings.TrimSpace(l); l != "" {
						groups = append(groups, l)
					}
				}
				i = j + k + 1
			case j < len(expr) && expr[j] == '(', promKeywords[word]:
				i = j // a function, an aggregation or an operator
			default:
				sel := promSelector{name: word}
				i = j
				if i < len(expr) && expr[i] == '{' {
					end := closingBrace(expr[i:])
					if end < 0 {
						return nil, nil, fmt.Errorf("unterminated selector at %d", i)
					}
					for _, m := range splitMatchers(expr[i+1 : i+end]) {
						pm, err := parseMatcher(m)
						if err != nil {
							return nil, nil, err
						}
						sel.matchers = append(sel.matchers, pm)
					}
					i += end + 1
				}
				sels = append(sels, sel)
			}
		case c == '(':
			depth++
			i++
		case c == ')':
			if depth--; depth < 0 {
				return nil, nil, fmt.Errorf("unbalanced ) at %d", i)
			}
			i++
		default:
			i++ // operators, commas
		}
	}
	if depth != 0 {
		return nil, nil, fmt.Errorf("%d unclosed (", depth)
	}
	return sels, groups, nil
}

// closingBrace returns the index of the "}" that closes the selector s
// starts, outside quoted values; -1 if none does.
func closingBrace(s string) int {
	quote := false
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quote:
			i++
		case s[i] == '"':
			quote = !quote
		case s[i] == '}' && !quote:
			return i
		}
	}
	return -1
}

// splitMatchers splits a selector's matchers at the commas outside quotes.
func splitMatchers(s string) []string {
	var ms []string
	start, quote := 0, false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quote:
			i++
		case s[i] == '"':
			quote = !quote
		case s[i] == ',' && !quote:
			ms = append(ms, s[start:i])
			start = i + 1
		}
	}
	if strings.TrimSpace(s[start:]) != "" {
		ms = append(ms, s[start:])
	}
	return ms
}

var matcherRE = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*$`)

func parseMatcher(s string) (promMatcher, error) {
	m := matcherRE.FindStringSubmatch(s)
	if m == nil {
		return promMatcher{}, fmt.Errorf("bad label matcher %q", s)
	}
	v, err := strconv.Unquote(m[3])
	if err != nil {
		return promMatcher{}, fmt.Errorf("bad label matcher %q: %v", s, err)
	}
	return promMatcher{m[1], m[2], v}, nil
}

// scrapeLabels are the labels Prometheus adds when it scrapes: /metrics
// does not hold them.
var scrapeLabels = map[string]bool{"job": true, "instance": true}

func TestPromSelectors(t *testing.T) {
	f := func(expr string, want string) {
		t.Helper()
		sels, groups, err := promSelectors(expr)
		got := fmt.Sprint(sels, groups, err)
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Fatalf("promSelectors(%q) = %s; want %s", expr, got, want)
		}
	}
	f(`up`, `[{up []}] [] <nil>`)
	f(`sum by (route, le) (rate(a_total{job="x",r=~"a|b"}[$__rate_interval])) / ignoring(le) b offset 5m`,
		`[{a_total [{job = x} {r =~ a|b}]} {b []}] [route le le] <nil>`)
	f(`histogram_quantile(0.99, sum(rate(x_bucket{l="a,b}",i=~"$instance"}[5m]))) > bool 1e9`,
		`[{x_bucket [{l = a,b}} {i =~ $instance}]}] [] <nil>`)
	f(`time() - min(v{}) / 1e9`, `[{v []}] [] <nil>`)
	f(`sum(rate(x[5m])`, `1 unclosed (`)
	f(`{__name__="x"}`, `a selector without a metric name at 0`)
	f(`x{l~"a"}`, `bad label matcher "l~\"a\""`)
}

// TestDashboard serves a real snapshot, asks every kind of answer, and
// checks deploy/grafana-dashboard.json and deploy/prometheus.yml against
// its /metrics: every metric a panel or variable queries exists, with
// the label values its selectors ask for and the labels it groups by;
// the job it selects is the one Prometheus scrapes, at /metrics.
func TestDashboard(t *testing.T) {
	t.Parallel()
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(mustRead(t, repoFile("deploy/prometheus.yml")), &prom); err != nil {
		t.Fatalf("deploy/prometheus.yml: %v", err)
	}
	jobs := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Fatalf("job %s scrapes %s; edgerec serves /metrics", sc.JobName, sc.MetricsPath)
		}
		if len(sc.StaticConfigs) == 0 || len(sc.StaticConfigs[0].Targets) == 0 {
			t.Fatalf("job %s has no targets", sc.JobName)
		}
		jobs[sc.JobName] = true
	}

	var dash struct {
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Definition string          `json:"definition"`
				Query      json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(mustRead(t, repoFile("deploy/grafana-dashboard.json")), &dash); err != nil {
		t.Fatalf("deploy/grafana-dashboard.json: %v", err)
	}
	type query struct{ where, expr, label string } // label: label_values' label
	var qs []query
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] || len(p.Targets) == 0 {
			t.Fatalf("panel %d %q: a duplicate id or no queries", p.ID, p.Title)
		}
		ids[p.ID] = true
		for _, tg := range p.Targets {
			qs = append(qs, query{where: "panel " + strconv.Quote(p.Title), expr: tg.Expr})
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		if v.Definition != "" && v.Definition != q.Query {
			t.Fatalf("variable %s: definition %q is not its query %q", v.Name, v.Definition, q.Query)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(selector, label)", v.Name, q.Query)
		}
		qs = append(qs, query{where: "variable " + v.Name, expr: m[1], label: m[2]})
	}

	// A server that has answered every kind of request: reads (cache miss,
	// then hit), events, an error, the admin status.
	dir := t.TempDir()
	events, items := genSample(t, dir, 5000, 5)
	data := filepath.Join(dir, "data")
	build(t, "--events", events, "--items", items, "--out", filepath.Join(data, "snapshots"))
	s := startServer(t, data, freeAddr(t))
	defer s.stop(t)
	for _, p := range []string{"/v1/items/i1/similar?k=5", "/v1/items/i1/similar?k=5", "/v1/users/u1/recommendations?k=5", "/v1/items/nope/similar", "/healthz"} {
		s.get(t, p)
	}
	if code, b := s.do(t, "POST", "/v1/events", s.key, `{"user_id":"u1","item_id":"i2","event":"view"}`); code != 200 {
		t.Fatalf("events: %d %s", code, b)
	}
	code, body := s.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	ss := parseExposition(t, string(body))
	byName := map[string][]series{}
	for _, x := range ss {
		byName[x.name] = append(byName[x.name], x)
	}

	used := map[string]bool{}
	for _, q := range qs {
		sels, groups, err := promSelectors(q.expr)
		if err != nil || len(sels) == 0 {
			t.Fatalf("%s: %q: %v (or no metric)", q.where, q.expr, err)
		}
		if q.label != "" {
			groups = append(groups, q.label)
		}
		for _, sel := range sels {
			used[sel.name] = true
			have := byName[sel.name]
			if len(have) == 0 {
				t.Errorf("%s: metric %s is not in /metrics", q.where, sel.name)
				continue
			}
			matched := slices.ContainsFunc(have, func(x series) bool {
				for _, m := range sel.matchers {
					if scrapeLabels[m.label] || strings.Contains(m.value, "$") {
						continue
					}
					v, ok := x.labels[m.label]
					switch m.op {
					case "=":
						ok = ok && v == m.value
					case "!=":
						ok = v != m.value
					case "=~", "!~":
						ok = regexp.MustCompile("^(?:"+m.value+")$").MatchString(v) == (m.op == "=~")
					}
					if !ok {
						return false
					}
				}
				return true
			})
			if !matched {
				t.Errorf("%s: no series of /metrics matches %s%v", q.where, sel.name, sel.matchers)
			}
			for _, m := range sel.matchers {
				if m.label == "job" && (m.op != "=" || !jobs[m.value]) {
					t.Errorf("%s: job%s%q is not a job of deploy/prometheus.yml (%v)", q.where, m.op, m.value, jobs)
				}
			}
		}
		for _, l := range groups {
			if scrapeLabels[l] {
				continue
			}
			found := false
			for _, sel := range sels {
				found = found || slices.ContainsFunc(byName[sel.name], func(x series) bool { _, ok := x.labels[l]; return ok })
			}
			if !found {
				t.Errorf("%s: %q groups by %s, a label none of its metrics has", q.where, q.expr, l)
			}
		}
	}
	// The panels README, "Deploy", promises.
	for _, m := range []string{"edgerec_requests_total", "edgerec_request_duration_seconds_bucket", "edgerec_cache_requests_total",
		"edgerec_events_ingested_total", "edgerec_errors_total", "edgerec_snapshot_version"} {
		if !used[m] {
			t.Errorf("the dashboard does not query %s", m)
		}
	}
}
