package spec

import (
	"fmt"

	yaml "go.yaml.in/yaml/v3"
)

// Known field names per level, in the order of the types (for hints).
var (
	serviceFields    = []string{"version", "name", "image", "command", "args", "env", "workdir", "user", "replicas", "ports", "resources", "restart", "stop", "health", "labels", "init", "cap_add", "secrets", "disconnect"}
	portFields       = []string{"name", "port", "host_port", "protocol"}
	resourcesFields  = []string{"cpu", "memory", "pids"}
	stopFields       = []string{"signal", "grace"}
	healthFields     = []string{"http", "tcp", "exec", "interval", "timeout", "failures", "grace"}
	httpFields       = []string{"port", "path"}
	tcpFields        = []string{"port"}
	execFields       = []string{"command"}
	disconnectFields = []string{"replace_after"}
)

// service decodes the root mapping, starting from the defaults so that
// absent fields keep them and present ones (even 0) override them. It
// returns nil when the root is not a mapping at all.
func (d *decoder) service(root *yaml.Node) *Service {
	d.pos[""] = position{root.Line, root.Column}
	s := &Service{
		Replicas: DefaultReplicas,
		Restart:  DefaultRestart,
		Stop:     Stop{Signal: DefaultStopSignal, Grace: DefaultStopGrace},
	}
	ok := d.fields(root, "", serviceFields, func(key string, v *yaml.Node, p string) {
		switch key {
		case "version":
			if n, ok := d.integer(v, p); ok {
				s.Version = n
			}
		case "name":
			s.Name, _ = d.str(v, p)
		case "image":
			s.Image, _ = d.str(v, p)
		case "command":
			s.Command = d.strList(v, p)
		case "args":
			s.Args = d.strList(v, p)
		case "env":
			s.Env = d.strMap(v, p)
		case "workdir":
			s.Workdir, _ = d.str(v, p)
		case "user":
			s.User, _ = d.str(v, p)
		case "replicas":
			if n, ok := d.integer(v, p); ok {
				s.Replicas = n
			}
		case "ports":
			s.Ports = d.ports(v, p)
		case "resources":
			d.resources(v, p, &s.Resources)
		case "restart":
			r, _ := d.str(v, p)
			s.Restart = RestartPolicy(r)
		case "stop":
			d.stop(v, p, &s.Stop)
		case "health":
			s.Health = d.health(v, p)
		case "labels":
			s.Labels = d.strMap(v, p)
		case "init":
			if b, ok := d.boolean(v, p); ok {
				s.Init = &b
			}
		case "cap_add":
			s.CapAdd = d.strList(v, p)
		case "secrets":
			s.Secrets = d.strMap(v, p)
		case "disconnect":
			d.fields(v, p, disconnectFields, func(_ string, v *yaml.Node, fp string) {
				if x, ok := d.duration(v, fp); ok {
					s.Disconnect.ReplaceAfter = x
				}
			})
		}
	})
	if !ok {
		return nil
	}
	return s
}

func (d *decoder) ports(n *yaml.Node, p string) []Port {
	if n.Kind != yaml.SequenceNode {
		d.errorAt(n, p, "write a list: ports: [{name: http, port: 8080}]", "must be a list of ports, got %s", describe(n))
		return nil
	}
	var out []Port
	for i, e := range n.Content {
		if d.stopped() {
			break
		}
		ep := fmt.Sprintf("%s[%d]", p, i)
		d.pos[ep] = position{e.Line, e.Column}
		port := Port{Protocol: DefaultProtocol}
		d.fields(e, ep, portFields, func(key string, v *yaml.Node, fp string) {
			switch key {
			case "name":
				port.Name, _ = d.str(v, fp)
			case "port":
				port.Port, _ = d.integer(v, fp)
			case "host_port":
				port.HostPort, _ = d.integer(v, fp)
			case "protocol":
				port.Protocol, _ = d.str(v, fp)
			}
		})
		out = append(out, port)
	}
	return out
}

func (d *decoder) resources(n *yaml.Node, p string, r *Resources) {
	d.fields(n, p, resourcesFields, func(key string, v *yaml.Node, fp string) {
		switch key {
		case "cpu":
			if text, ok := d.quantityScalar(v, fp, cpuHint); ok {
				c, err := ParseCPU(text)
				if err != nil {
					d.valueErrorAt(v, fp, err)
				}
				r.CPU = c
			}
		case "memory":
			if text, ok := d.quantityScalar(v, fp, bytesHint); ok {
				b, err := ParseBytes(text)
				if err != nil {
					d.valueErrorAt(v, fp, err)
				}
				r.Memory = b
			}
		case "pids":
			if n, ok := d.integer(v, fp); ok {
				r.Pids = int64(n)
			}
		}
	})
}

func (d *decoder) stop(n *yaml.Node, p string, s *Stop) {
	d.fields(n, p, stopFields, func(key string, v *yaml.Node, fp string) {
		switch key {
		case "signal":
			s.Signal, _ = d.str(v, fp)
		case "grace":
			if g, ok := d.duration(v, fp); ok {
				s.Grace = g
			}
		}
	})
}

// health decodes a health check. Sub-checks that fail to decode are kept as
// empty values so that validation does not also report them missing.
func (d *decoder) health(n *yaml.Node, p string) *Health {
	h := &Health{Interval: DefaultHealthInterval, Failures: DefaultHealthFailures}
	timeoutSet := false
	d.fields(n, p, healthFields, func(key string, v *yaml.Node, fp string) {
		switch key {
		case "http":
			h.HTTP = &HTTPCheck{Path: DefaultHealthPath}
			d.fields(v, fp, httpFields, func(key string, v *yaml.Node, hp string) {
				switch key {
				case "port":
					h.HTTP.Port, _ = d.str(v, hp)
				case "path":
					h.HTTP.Path, _ = d.str(v, hp)
				}
			})
		case "tcp":
			h.TCP = &TCPCheck{}
			d.fields(v, fp, tcpFields, func(_ string, v *yaml.Node, tp string) {
				h.TCP.Port, _ = d.str(v, tp)
			})
		case "exec":
			h.Exec = &ExecCheck{}
			d.fields(v, fp, execFields, func(_ string, v *yaml.Node, ep string) {
				h.Exec.Command = d.strList(v, ep)
			})
		case "interval":
			if x, ok := d.duration(v, fp); ok {
				h.Interval = x
			}
		case "timeout":
			timeoutSet = true
			if x, ok := d.duration(v, fp); ok {
				h.Timeout = x
			}
		case "failures":
			if x, ok := d.integer(v, fp); ok {
				h.Failures = x
			}
		case "grace":
			if x, ok := d.duration(v, fp); ok {
				h.Grace = x
			}
		}
	})
	if !timeoutSet {
		h.Timeout = defaultTimeout(h.Interval)
	}
	return h
}
