package gateway_test

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

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

// TestKubernetesManifests: the ConfigMap's config is valid, and the
// Deployment's ports and probes and the Service agree with it.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	readYAML(t, "../deploy/kubernetes/configmap.yaml", &cm)
	cfg, err := gateway.Load(writeConfig(t, cm.Data["config.yaml"]), []string{"SLUICE_ADMIN__TOKEN=from-the-secret"}, nil)
	if err != nil {
		t.Fatalf("the ConfigMap's config.yaml: %v", err)
	}
	var dep struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Args  []string `yaml:"args"`
						Ports []struct {
							Name          string `yaml:"name"`
							ContainerPort int    `yaml:"containerPort"`
						} `yaml:"ports"`
						Env []struct {
							Name string `yaml:"name"`
						} `yaml:"env"`
						Liveness  probe `yaml:"livenessProbe"`
						Readiness probe `yaml:"readinessProbe"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	readYAML(t, "../deploy/kubernetes/deployment.yaml", &dep)
	c := dep.Spec.Template.Spec.Containers[0]
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
	if !slices.Contains(c.Args, "/etc/sluice/config.yaml") {
		t.Fatalf("args %v do not name the mounted config", c.Args)
	}
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, gateway.EnvPrefix) {
			t.Fatalf("env %s is not a Sluice override", e.Name)
		}
	}
	var svc struct {
		Spec struct {
			Ports []struct {
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	readYAML(t, "../deploy/kubernetes/service.yaml", &svc)
	if svc.Spec.Ports[0].TargetPort != "proxy" {
		t.Fatalf("the Service targets %q, want the proxy port", svc.Spec.Ports[0].TargetPort)
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
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/sluice", "COPY config.yaml /etc/sluice/config.yaml", `"/etc/sluice/config.yaml"`} {
		if !strings.Contains(df, want) {
			t.Fatalf("Dockerfile lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join("..", "config.yaml")); err != nil {
		t.Fatal(err)
	}
}
