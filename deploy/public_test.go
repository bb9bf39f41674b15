package deploy

import (
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// service is the part of a Service these tests read.
type service struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Selector        map[string]string `yaml:"selector"`
		SessionAffinity string            `yaml:"sessionAffinity"`
		Ports           []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

// containerPorts is the sidecar container's named ports.
func containerPorts(t *testing.T, m *manifests) map[string]int {
	t.Helper()
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					InitContainers []struct {
						Name  string `yaml:"name"`
						Ports []struct {
							Name          string `yaml:"name"`
							ContainerPort int    `yaml:"containerPort"`
						} `yaml:"ports"`
					} `yaml:"initContainers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(m.raw["deployment.yaml"], &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, c := range d.Spec.Template.Spec.InitContainers {
		if c.Name == sidecarName {
			for _, p := range c.Ports {
				out[p.Name] = p.ContainerPort
			}
		}
	}
	return out
}

// TestPublicServiceExposesOnlyTheLoginListener: the students' Service
// reaches the sidecar's public listener (9128, "connect") and nothing else,
// keeps a browser on one replica for a login, and no Service reaches the
// sidecar's main listener.
func TestPublicServiceExposesOnlyTheLoginListener(t *testing.T) {
	m := load(t)
	ports := containerPorts(t, m)
	if ports["connect"] != 9128 || strconv.Itoa(ports["sidecar"]) != listenPort {
		t.Fatalf("sidecar container ports %v, want sidecar %s and connect 9128", ports, listenPort)
	}
	var pub *service
	for _, f := range []string{"service.yaml", "service-public.yaml"} {
		var s service
		if err := yaml.Unmarshal(m.raw[f], &s); err != nil || s.Kind != "Service" {
			t.Fatalf("%s: not a Service (%v)", f, err)
		}
		for _, p := range s.Spec.Ports {
			target := toString(p.TargetPort)
			if target == "sidecar" || target == listenPort {
				t.Errorf("%s exposes the sidecar's main listener (%s)", f, target)
			}
		}
		if f == "service-public.yaml" {
			pub = &s
		}
	}
	if pub.Spec.SessionAffinity != "ClientIP" {
		t.Errorf("service-public.yaml sessionAffinity %q, want ClientIP: /-/login and /redirect of one login must reach one replica", pub.Spec.SessionAffinity)
	}
	if len(pub.Spec.Ports) != 1 || toString(pub.Spec.Ports[0].TargetPort) != "connect" {
		t.Errorf("service-public.yaml ports %+v, want only targetPort connect", pub.Spec.Ports)
	}
	if pub.Spec.Selector["app.kubernetes.io/name"] != ontrackName {
		t.Errorf("service-public.yaml selects %v", pub.Spec.Selector)
	}
	cm := string(m.raw["configmap.yaml"])
	if !strings.Contains(cm, "public_listen: 0.0.0.0:9128") {
		t.Error("the ConfigMap does not show how to turn on public_listen on port 9128")
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	}
	return ""
}
