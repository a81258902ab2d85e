package spec

import (
	"fmt"
	"slices"
	"sort"
)

// Changes returns the sorted field paths whose values differ between old and
// new: "image", "replicas", "env.GREETING", "ports[0].host_port", ... Lists of
// strings (command, args, cap_add, health.exec.command) are compared whole,
// ports element by element ("ports[2]" when one side has no such element),
// maps key by key. Empty and absent lists and maps are equal, as are an
// absent version and version 1, and init nil and true. A nil spec differs
// from a non-nil one in "".
func Changes(old, new *Service) []string {
	if old == nil || new == nil {
		if old == new {
			return nil
		}
		return []string{""}
	}
	c := &changes{}
	a, b := old, new
	c.cmp("version", effectiveVersion(a.Version), effectiveVersion(b.Version))
	c.cmp("name", a.Name, b.Name)
	c.cmp("image", a.Image, b.Image)
	c.list("command", a.Command, b.Command)
	c.list("args", a.Args, b.Args)
	c.dict("env", a.Env, b.Env)
	c.cmp("workdir", a.Workdir, b.Workdir)
	c.cmp("user", a.User, b.User)
	c.cmp("replicas", a.Replicas, b.Replicas)
	for i := 0; i < max(len(a.Ports), len(b.Ports)); i++ {
		p := fmt.Sprintf("ports[%d]", i)
		if i >= len(a.Ports) || i >= len(b.Ports) {
			c.paths = append(c.paths, p)
			continue
		}
		x, y := a.Ports[i], b.Ports[i]
		c.cmp(p+".name", x.Name, y.Name)
		c.cmp(p+".port", x.Port, y.Port)
		c.cmp(p+".host_port", x.HostPort, y.HostPort)
		c.cmp(p+".protocol", x.Protocol, y.Protocol)
	}
	c.cmp("resources.cpu", a.Resources.CPU, b.Resources.CPU)
	c.cmp("resources.memory", a.Resources.Memory, b.Resources.Memory)
	c.cmp("resources.pids", a.Resources.Pids, b.Resources.Pids)
	c.cmp("restart", a.Restart, b.Restart)
	c.cmp("stop.signal", a.Stop.Signal, b.Stop.Signal)
	c.cmp("stop.grace", a.Stop.Grace, b.Stop.Grace)
	c.health(a.Health, b.Health)
	c.dict("labels", a.Labels, b.Labels)
	c.cmp("init", a.InitEnabled(), b.InitEnabled())
	c.list("cap_add", a.CapAdd, b.CapAdd)
	c.dict("secrets", a.Secrets, b.Secrets)
	c.cmp("disconnect.replace_after", a.Disconnect.ReplaceAfter, b.Disconnect.ReplaceAfter)
	sort.Strings(c.paths)
	return c.paths
}

// Equal reports whether a and b describe the same service: Changes is empty.
func Equal(a, b *Service) bool { return len(Changes(a, b)) == 0 }

type changes struct{ paths []string }

// cmp records path when a and b (of the same type) differ.
func (c *changes) cmp(path string, a, b any) {
	if a != b {
		c.paths = append(c.paths, path)
	}
}

func (c *changes) list(path string, a, b []string) {
	if !slices.Equal(a, b) {
		c.paths = append(c.paths, path)
	}
}

func (c *changes) dict(path string, a, b map[string]string) {
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			c.paths = append(c.paths, keyPath(path, k))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			c.paths = append(c.paths, keyPath(path, k))
		}
	}
}

func (c *changes) health(a, b *Health) {
	if a == nil || b == nil {
		if a != b {
			c.paths = append(c.paths, "health")
		}
		return
	}
	switch {
	case a.HTTP == nil && b.HTTP == nil:
	case a.HTTP == nil || b.HTTP == nil:
		c.paths = append(c.paths, "health.http")
	default:
		c.cmp("health.http.port", a.HTTP.Port, b.HTTP.Port)
		c.cmp("health.http.path", a.HTTP.Path, b.HTTP.Path)
	}
	switch {
	case a.TCP == nil && b.TCP == nil:
	case a.TCP == nil || b.TCP == nil:
		c.paths = append(c.paths, "health.tcp")
	default:
		c.cmp("health.tcp.port", a.TCP.Port, b.TCP.Port)
	}
	switch {
	case a.Exec == nil && b.Exec == nil:
	case a.Exec == nil || b.Exec == nil:
		c.paths = append(c.paths, "health.exec")
	default:
		c.list("health.exec.command", a.Exec.Command, b.Exec.Command)
	}
	c.cmp("health.interval", a.Interval, b.Interval)
	c.cmp("health.timeout", a.Timeout, b.Timeout)
	c.cmp("health.failures", a.Failures, b.Failures)
	c.cmp("health.grace", a.Grace, b.Grace)
}

// effectiveVersion reads an absent version (0) as 1.
func effectiveVersion(v int) int {
	if v == 0 {
		return 1
	}
	return v
}
