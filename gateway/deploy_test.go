package gateway_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-gateway/sluice/gateway"
)

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return p
}

// container is the part of a Kubernetes container spec the tests read.
type container struct {
	Image           string   `yaml:"image"`
	ImagePullPolicy string   `yaml:"imagePullPolicy"`
	Command         []string `yaml:"command"`
	Args            []string `yaml:"args"`
	Ports           []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Liveness        probe `yaml:"livenessProbe"`
	Readiness       probe `yaml:"readinessProbe"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

// manifest is one Kubernetes object.
type manifest struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		MinAvailable any `yaml:"minAvailable"`
		Ports        []struct {
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
		Template struct {
			Spec struct {
				SecurityContext struct {
					RunAsNonRoot   bool `yaml:"runAsNonRoot"`
					RunAsUser      int  `yaml:"runAsUser"`
					SeccompProfile struct {
						Type string `yaml:"type"`
					} `yaml:"seccompProfile"`
				} `yaml:"securityContext"`
				TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
				Containers                    []container `yaml:"containers"`
				Volumes                       []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// readManifests reads every object of every file in dir, by kind/name.
func readManifests(t *testing.T, dir string) map[string]manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	out := map[string]manifest{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var m manifest
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out[m.Kind+"/"+m.Metadata.Name] = m
		}
	}
	return out
}

// TestKubernetesManifests: the ConfigMap's config is valid; the Deployment's
// ports and probes and the Service agree with it; the pods meet the
// "restricted" Pod Security profile; a PodDisruptionBudget covers them; the
// Redis the config names is provided; images are pulled only when missing.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	objs := readManifests(t, "../deploy/kubernetes")
	cm, ok := objs["ConfigMap/sluice"]
	if !ok {
		t.Fatal("no ConfigMap sluice")
	}
	dep, ok := objs["Deployment/sluice"]
	if !ok {
		t.Fatal("no Deployment sluice")
	}
	c := dep.Spec.Template.Spec.Containers[0]
	var env []string
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, gateway.EnvPrefix) {
			t.Fatalf("env %s is not a Sluice override", e.Name)
		}
		env = append(env, e.Name+"=from-the-secret")
	}
	cfg, err := gateway.Load(writeConfig(t, cm.Data["config.yaml"]), env, nil)
	if err != nil {
		t.Fatalf("the ConfigMap's config.yaml: %v", err)
	}
	ports := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	if ports["proxy"] != port(t, cfg.Listen) || ports["admin"] != port(t, cfg.Admin.Listen) {
		t.Fatalf("container ports %v disagree with listen %s and admin.listen %s", ports, cfg.Listen, cfg.Admin.Listen)
	}
	if h, _, _ := net.SplitHostPort(cfg.Admin.Listen); h == "127.0.0.1" {
		t.Fatal("admin.listen on loopback: the kubelet's probes could not reach it")
	}
	if c.Liveness.HTTPGet.Path != "/healthz" || c.Readiness.HTTPGet.Path != "/readyz" || c.Liveness.HTTPGet.Port != "admin" || c.Readiness.HTTPGet.Port != "admin" {
		t.Fatalf("probes %+v %+v, want /healthz and /readyz on the admin port", c.Liveness, c.Readiness)
	}
	if len(c.Command) > 0 || len(c.Args) > 0 {
		t.Fatalf("command %v args %v: the Dockerfile is the one place that sets the command", c.Command, c.Args)
	}
	if dep.Spec.Template.Spec.TerminationGracePeriodSeconds <= int(cfg.ShutdownTimeout.Seconds()) {
		t.Fatalf("terminationGracePeriodSeconds %d does not cover shutdown_timeout %v", dep.Spec.Template.Spec.TerminationGracePeriodSeconds, cfg.ShutdownTimeout)
	}
	svc := objs["Service/sluice"]
	if len(svc.Spec.Ports) == 0 || svc.Spec.Ports[0].TargetPort != "proxy" {
		t.Fatalf("the Service targets %+v, want the proxy port", svc.Spec.Ports)
	}
	if pdb, ok := objs["PodDisruptionBudget/sluice"]; !ok || pdb.Spec.MinAvailable == nil {
		t.Fatal("no PodDisruptionBudget sluice with minAvailable")
	}
	// The Redis the config names is a Service of the example.
	host, rport, _ := net.SplitHostPort(cfg.Store.Redis.Addrs[0])
	rsvc, ok := objs["Service/"+host]
	if !ok || len(rsvc.Spec.Ports) == 0 || strconv.Itoa(rsvc.Spec.Ports[0].Port) != rport {
		t.Fatalf("store.redis.addrs %v: no Service %s on port %s in the manifests", cfg.Store.Redis.Addrs, host, rport)
	}
	// Every workload: restricted Pod Security, a pinned tag pulled when missing.
	for name, o := range objs {
		if o.Kind != "Deployment" {
			continue
		}
		ps := o.Spec.Template.Spec.SecurityContext
		if !ps.RunAsNonRoot || ps.RunAsUser == 0 || ps.SeccompProfile.Type != "RuntimeDefault" {
			t.Errorf("%s: pod securityContext %+v, want runAsNonRoot, a non-zero runAsUser and seccomp RuntimeDefault", name, ps)
		}
		for _, c := range o.Spec.Template.Spec.Containers {
			sc := c.SecurityContext
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !sc.ReadOnlyRootFilesystem || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
				t.Errorf("%s/%s: securityContext %+v, want no privilege escalation, a read-only root and every capability dropped", name, c.Image, sc)
			}
			if c.ImagePullPolicy != "IfNotPresent" || strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
				t.Errorf("%s: image %q pull policy %q, want a pinned tag pulled IfNotPresent", name, c.Image, c.ImagePullPolicy)
			}
		}
	}
}

// dockerCommand returns the ENTRYPOINT and CMD of the Dockerfile's last
// stage (exec form).
func dockerCommand(t *testing.T) (entrypoint, cmd []string) {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		kw, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		var dst *[]string
		switch kw {
		case "FROM":
			entrypoint, cmd = nil, nil
		case "ENTRYPOINT":
			dst = &entrypoint
		case "CMD":
			dst = &cmd
		}
		if dst != nil {
			if err := json.Unmarshal([]byte(rest), dst); err != nil {
				t.Fatalf("%s %s: want the exec (JSON) form: %v", kw, rest, err)
			}
		}
	}
	return entrypoint, cmd
}

// containerArgv composes the image's ENTRYPOINT/CMD with a container's
// command/args as Kubernetes does: command replaces ENTRYPOINT (and drops
// CMD), args replace CMD.
func containerArgv(entrypoint, cmd, command, args []string) []string {
	switch {
	case len(command) > 0 && len(args) > 0:
		return append(slices.Clone(command), args...)
	case len(command) > 0:
		return slices.Clone(command)
	case len(args) > 0:
		return append(slices.Clone(entrypoint), args...)
	}
	return append(slices.Clone(entrypoint), cmd...)
}

func TestContainerArgv(t *testing.T) {
	t.Parallel()
	ep, cmd := []string{"/e"}, []string{"c1", "c2"}
	for _, tc := range []struct {
		command, args, want []string
	}{
		{nil, nil, []string{"/e", "c1", "c2"}},
		{nil, []string{"a"}, []string{"/e", "a"}},
		{[]string{"/x"}, nil, []string{"/x"}},
		{[]string{"/x"}, []string{"a"}, []string{"/x", "a"}},
	} {
		if got := containerArgv(ep, cmd, tc.command, tc.args); !slices.Equal(got, tc.want) {
			t.Errorf("command %v args %v: %v, want %v", tc.command, tc.args, got, tc.want)
		}
	}
}

// TestKubernetesContainerRuns composes the image's ENTRYPOINT/CMD with the
// Deployment's command/args as Kubernetes does, runs the built binary with
// that argv (container paths mapped to a temporary directory holding the
// ConfigMap, the Secret's variable set), and waits until it listens and
// its probes answer.
func TestKubernetesContainerRuns(t *testing.T) {
	t.Parallel()
	objs := readManifests(t, "../deploy/kubernetes")
	dep := objs["Deployment/sluice"]
	c := dep.Spec.Template.Spec.Containers[0]
	entrypoint, cmd := dockerCommand(t)
	argv := containerArgv(entrypoint, cmd, c.Command, c.Args)
	if len(argv) == 0 || argv[0] != "/sluice" {
		t.Fatalf("container argv %v does not run /sluice", argv)
	}
	// Mount the ConfigMap volumes under a temporary root.
	root := t.TempDir()
	configs := map[string]string{}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			configs[v.Name] = v.ConfigMap.Name
		}
	}
	var cfgText string
	for _, m := range c.VolumeMounts {
		name, ok := configs[m.Name]
		if !ok {
			continue
		}
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for file, data := range objs["ConfigMap/"+name].Data {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			cfgText = data
		}
	}
	args := argv[1:]
	for i, a := range args {
		if strings.HasPrefix(a, "/") {
			if _, err := os.Stat(filepath.Join(root, a)); err != nil {
				t.Fatalf("argv %v names %s, which no volume provides", argv, a)
			}
			args[i] = filepath.Join(root, a)
		}
	}
	cfg, err := gateway.Load(writeConfig(t, cfgText), []string{"SLUICE_ADMIN__TOKEN=x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The container's environment, with free ports on the same hosts (the
	// machine runs other tests) and the test Redis or none.
	env := []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + t.TempDir()}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			v = "from-the-secret-" + e.Name
		}
		env = append(env, e.Name+"="+v)
	}
	host := func(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
	redis := "127.0.0.1:1"
	if a := os.Getenv("SLUICE_TEST_REDIS"); a != "" {
		redis = a
	}
	env = append(env, "SLUICE_LISTEN="+net.JoinHostPort(host(cfg.Listen), "0"), "SLUICE_ADMIN__LISTEN="+net.JoinHostPort(host(cfg.Admin.Listen), "0"),
		"SLUICE_STORE__REDIS__ADDRS="+redis)
	bin := sluiceBinary(t)
	p := startCommand(t, exec.Command(bin, args...), env)
	_, adminPort, _ := net.SplitHostPort(p.admin)
	admin := "127.0.0.1:" + adminPort
	for _, path := range []string{c.Liveness.HTTPGet.Path, c.Readiness.HTTPGet.Path} {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("probe %s: %d, want 200", path, resp.StatusCode)
		}
	}
	if out, err := exec.Command(bin, "healthcheck", "-admin", admin).CombinedOutput(); err != nil {
		t.Fatalf("sluice healthcheck: %v %s", err, out)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		p.done <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("no exit within 15s of SIGTERM")
	}
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// TestComposeFile: both gateways' environment applies cleanly to the
// image's config.yaml, and the one published port reaches both.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	var compose struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			Image       string            `yaml:"image"`
		} `yaml:"services"`
	}
	readYAML(t, "../docker-compose.yaml", &compose)
	for _, name := range []string{"gateway-a", "gateway-b"} {
		svc, ok := compose.Services[name]
		if !ok {
			t.Fatalf("no service %s", name)
		}
		var env []string
		for k, v := range svc.Environment {
			if strings.HasPrefix(v, "${") {
				v = "from-the-environment"
			}
			env = append(env, k+"="+v)
		}
		cfg, err := gateway.Load("../config.yaml", env, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cfg.Store.Backend != "redis" || cfg.Store.Redis.Addrs[0] != "redis:6379" || port(t, cfg.Listen) != "8080" {
			t.Fatalf("%s: store %+v listen %s", name, cfg.Store, cfg.Listen)
		}
	}
	var published []string
	for _, svc := range compose.Services {
		published = append(published, svc.Ports...)
	}
	if len(published) != 1 || published[0] != "8080:8080" {
		t.Fatalf("published ports %v, want one: 8080:8080", published)
	}
	conf, err := os.ReadFile("../deploy/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"gateway-a:8080", "gateway-b:8080", "listen 8080"} {
		if !strings.Contains(string(conf), want) {
			t.Fatalf("deploy/nginx.conf lacks %q", want)
		}
	}
}

// TestDockerfile: a multi-stage build of a static binary into an empty
// image that runs as a non-root user on the image's config.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	var froms []string
	user := ""
	for line := range strings.SplitSeq(df, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "FROM" {
			froms = append(froms, f[1])
		}
		if len(f) == 2 && f[0] == "USER" {
			user = f[1]
		}
	}
	if len(froms) < 2 || froms[len(froms)-1] != "scratch" {
		t.Fatalf("stages %v, want a build stage and a scratch image", froms)
	}
	if user == "" || strings.HasPrefix(user, "0") || user == "root" {
		t.Fatalf("USER %q, want a non-root uid", user)
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/sluice", "COPY config.yaml /etc/sluice/config.yaml", `"/etc/sluice/config.yaml"`,
		`HEALTHCHECK`, `CMD ["/sluice", "healthcheck"`, "internal/version.version=${VERSION}", "internal/version.revision=${REVISION}"} {
		if !strings.Contains(df, want) {
			t.Fatalf("Dockerfile lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join("..", "config.yaml")); err != nil {
		t.Fatal(err)
	}
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".git", "**/*.db"} {
		if !slices.Contains(strings.Fields(string(ignore)), want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}

// TestReleaseFiles: a licence, a changelog, and a README that says how to
// create the Secret the Deployment reads.
func TestReleaseFiles(t *testing.T) {
	t.Parallel()
	lic, err := os.ReadFile("../LICENSE")
	if err != nil || !strings.Contains(string(lic), "Apache License") || !strings.Contains(string(lic), "Version 2.0, January 2004") ||
		!strings.Contains(string(lic), "END OF TERMS AND CONDITIONS") {
		t.Fatalf("LICENSE: %v; want the Apache License 2.0", err)
	}
	if b, err := os.ReadFile("../CHANGELOG.md"); err != nil || !strings.Contains(string(b), "## Unreleased") {
		t.Fatalf("CHANGELOG.md: %v", err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range readManifests(t, "../deploy/kubernetes")["Deployment/sluice"].Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				if want := "kubectl create secret generic " + e.ValueFrom.SecretKeyRef.Name; !strings.Contains(string(readme), want) {
					t.Errorf("the README does not say %q", want)
				}
			}
		}
	}
}
