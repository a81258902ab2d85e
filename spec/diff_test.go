package spec

import (
	"reflect"
	"testing"
	"time"
)

func TestChanges(t *testing.T) {
	yes := true
	cases := []struct {
		name   string
		mutate func(*Service)
		want   []string
	}{
		{"nothing", func(s *Service) {}, nil},
		{"image and replicas", func(s *Service) { s.Image = "busybox:1.37"; s.Replicas = 5 }, []string{"image", "replicas"}},
		{"env changed, added, removed", func(s *Service) { s.Env = map[string]string{"A": "2", "NEW": "x", "QUOTE": `"x"`} }, []string{"env.A", "env.EMPTY", "env.NEW"}},
		{"env odd key", func(s *Service) { s.Env["A B"] = "x" }, []string{`env["A B"]`}},
		{"host port", func(s *Service) { s.Ports[0].HostPort = 0 }, []string{"ports[0].host_port"}},
		{"port added", func(s *Service) { s.Ports = append(s.Ports, Port{Name: "m", Port: 9}) }, []string{"ports[2]"}},
		{"port removed", func(s *Service) { s.Ports = s.Ports[:1] }, []string{"ports[1]"}},
		{"command", func(s *Service) { s.Command = append(s.Command, "-v") }, []string{"command"}},
		{"args emptied", func(s *Service) { s.Args = nil }, []string{"args"}},
		{"resources", func(s *Service) { s.Resources = Resources{CPU: 1, Memory: 2, Pids: 3} }, []string{"resources.cpu", "resources.memory", "resources.pids"}},
		{"stop", func(s *Service) { s.Stop = Stop{Signal: "SIGTERM", Grace: Duration(time.Second)} }, []string{"stop.grace", "stop.signal"}},
		{"restart user workdir", func(s *Service) { s.Restart, s.User, s.Workdir = RestartNever, "", "/" }, []string{"restart", "user", "workdir"}},
		{"health removed", func(s *Service) { s.Health = nil }, []string{"health"}},
		{"health kind", func(s *Service) { s.Health.Exec = nil; s.Health.TCP = &TCPCheck{Port: "http"} }, []string{"health.exec", "health.tcp"}},
		{"health exec command", func(s *Service) { s.Health.Exec.Command = []string{"/x"} }, []string{"health.exec.command"}},
		{"health timings", func(s *Service) { s.Health.Interval, s.Health.Timeout, s.Health.Failures, s.Health.Grace = 1, 1, 1, 1 }, []string{"health.failures", "health.grace", "health.interval", "health.timeout"}},
		{"init true", func(s *Service) { s.Init = &yes }, []string{"init"}},
		{"labels", func(s *Service) { delete(s.Labels, "tier") }, []string{"labels.tier"}},
		{"caps", func(s *Service) { s.CapAdd = nil }, []string{"cap_add"}},
		{"version", func(s *Service) { s.Version = 2 }, []string{"version"}},
		{"name", func(s *Service) { s.Name = "web" }, []string{"name"}},
		{"disconnect", func(s *Service) { s.Disconnect.ReplaceAfter = Duration(time.Minute) }, []string{"disconnect.replace_after"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old, new := fullService(), fullService()
			c.mutate(new)
			if got := Changes(old, new); !reflect.DeepEqual(got, c.want) {
				t.Errorf("Changes = %q, want %q", got, c.want)
			}
			if got := Equal(old, new); got != (len(c.want) == 0) {
				t.Errorf("Equal = %v with changes %q", got, c.want)
			}
		})
	}
}

func TestChangesEquivalentForms(t *testing.T) {
	a, b := validService(), validService()
	a.Env, b.Env = nil, map[string]string{}
	a.Command, b.Command = nil, []string{}
	a.Version, b.Version = 0, 1
	yes := true
	a.Init, b.Init = nil, &yes
	a.Health.HTTP, b.Health.HTTP = &HTTPCheck{Port: "http"}, &HTTPCheck{Port: "http"}
	if c := Changes(a, b); len(c) != 0 || !Equal(a, b) {
		t.Errorf("equivalent specs differ in %v", c)
	}
	if !Equal(nil, nil) || Equal(a, nil) || Equal(nil, b) {
		t.Error("Equal mishandles nil")
	}
	if got := Changes(nil, b); !reflect.DeepEqual(got, []string{""}) {
		t.Errorf("Changes(nil, b) = %q", got)
	}
}

func TestChangesAfterParse(t *testing.T) {
	old, err := Parse([]byte("name: web\nimage: busybox:1\nreplicas: 2\nenv: {GREETING: hello}\nports: [{name: http, port: 80}]\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	new, err := Parse([]byte("name: web\nimage: busybox:2\nreplicas: 2\nenv: {GREETING: hi}\nports: [{name: http, port: 80, host_port: 8080}]\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Changes(old, new), []string{"env.GREETING", "image", "ports[0].host_port"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Changes = %q, want %q", got, want)
	}
}
