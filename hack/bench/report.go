package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Goals the figures are held against.
const (
	goalOverhead    = 0.25    // orchestration overhead over raw runc
	goalPerInstance = 1 << 10 // KiB of gantry dev memory per running instance
)

// latRun is one single-instance submit-to-running measurement.
type latRun struct {
	id                 string
	t0                 time.Time // deploy call sent
	deployed           time.Time // deploy call returned
	running            time.Time // get_service first reported "running"
	deployEv           time.Time // "Deployed" event (service stored)
	scheduled, started time.Time // instance events
}

func (l latRun) total() time.Duration { return l.running.Sub(l.t0) }

// step is one row of the latency breakdown.
type step struct {
	name, what string
	d          []time.Duration
}

type report struct {
	runs, replicas int

	lat             []latRun
	runcRun         []time.Duration
	runcRunCPU      []time.Duration
	runcCreateStart []time.Duration
	runcKillDelete  []time.Duration

	runcCreateStartCPU, runcKillDeleteCPU []time.Duration
	initReady                             []time.Duration

	bulk, bulkFirst, bulkRemove time.Duration
	bulkCPU                     cpuTimes
	loadStart, loadEnd          string
	bulkIDs                     []string

	memIdle, memBefore, memBulk memory
	initMem                     []memory

	steps    []step
	netTook  []time.Duration // network.Setup's own measure, single runs
	cniTook  map[string][]time.Duration
	bulkNet  []time.Duration // network.Setup of the bulk instances
	bulkSpan time.Duration   // first to last "container started" of the bulk
}

// layerDirs returns the unpacked layer directories of an image in the
// store at root, bottom layer first.
func layerDirs(root, digest string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(root, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	var idx struct {
		Images map[string]struct {
			Layers []string `json:"layers"`
		} `json:"images"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("parse image index: %w", err)
	}
	rec, ok := idx.Images[digest]
	if !ok {
		return nil, fmt.Errorf("image %s is not in %s/index.json", digest, root)
	}
	var dirs []string
	for _, l := range rec.Layers {
		d := filepath.Join(root, "layers", "sha256", strings.TrimPrefix(l, "sha256:"))
		if !exists(d) {
			return nil, fmt.Errorf("layer dir %s missing", d)
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

// breakdown splits each single-instance latency into steps, from the
// instance's events (nanosecond times) and gantry dev's debug log
// (millisecond times).
func (r *report) breakdown(lines []logLine) {
	mounted := map[string]time.Time{}
	netDone := map[string]time.Time{}
	netTook := map[string]time.Duration{}
	started := map[string]time.Time{}
	r.cniTook = map[string][]time.Duration{}
	single := map[string]bool{}
	for _, l := range r.lat {
		single[l.id] = true
	}
	bulk := map[string]bool{}
	for _, id := range r.bulkIDs {
		bulk[id] = true
	}
	for _, l := range lines {
		id := l.attrs["instance"]
		switch l.msg {
		case "mounted image":
			// Logged by the image store, which names the rootfs only.
			rootfs := l.attrs["rootfs"]
			id = filepath.Base(filepath.Dir(rootfs))
			mounted[id] = l.time
		case "network attached":
			netDone[id] = l.time
			if d, err := time.ParseDuration(l.attrs["took"]); err == nil {
				netTook[id] = d
				if single[id] {
					r.netTook = append(r.netTook, d)
				}
				if bulk[id] {
					r.bulkNet = append(r.bulkNet, d)
				}
			}
		case "CNI plugin":
			if single[id] && l.attrs["command"] == "ADD" {
				if d, err := time.ParseDuration(l.attrs["took"]); err == nil {
					r.cniTook[l.attrs["plugin"]] = append(r.cniTook[l.attrs["plugin"]], d)
				}
			}
		case "container started":
			started[id] = l.time
		}
	}
	var first, last time.Time
	for id := range bulk {
		t, ok := started[id]
		if !ok {
			continue
		}
		if first.IsZero() || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	r.bulkSpan = last.Sub(first)

	add := func(name, what string, f func(l latRun) (time.Duration, bool)) {
		st := step{name: name, what: what}
		for _, l := range r.lat {
			if d, ok := f(l); ok {
				st.d = append(st.d, d)
			}
		}
		r.steps = append(r.steps, st)
	}
	ok := func(ts ...time.Time) bool {
		for _, t := range ts {
			if t.IsZero() {
				return false
			}
		}
		return true
	}
	add("deploy call → Deployed event", "MCP request, spec parse and validation",
		func(l latRun) (time.Duration, bool) { return l.deployEv.Sub(l.t0), ok(l.deployEv) })
	add("Deployed → Scheduled event", "Raft write of the service, deploy reply, controller wake-up and placement",
		func(l latRun) (time.Duration, bool) { return l.scheduled.Sub(l.deployEv), ok(l.deployEv, l.scheduled) })
	add("Scheduled → rootfs mounted (log, ms)", "Raft write of the instance, worker wake-up, image resolve, overlay mount",
		func(l latRun) (time.Duration, bool) {
			return mounted[l.id].Sub(l.scheduled), ok(l.scheduled, mounted[l.id])
		})
	add("rootfs mounted → network attached (log, ms)", "netns + CNI ADD (bridge, host-local, portmap, loopback)",
		func(l latRun) (time.Duration, bool) {
			return netDone[l.id].Sub(mounted[l.id]), ok(mounted[l.id], netDone[l.id])
		})
	add("network attached → Started event", "/etc files, OCI spec, Raft write of IP, runc create+start, wait for gantry-init",
		func(l latRun) (time.Duration, bool) {
			return l.started.Sub(netDone[l.id]), ok(netDone[l.id], l.started)
		})
	add("Started → get_service says running", "Raft write of the running state, then the next 5 ms poll",
		func(l latRun) (time.Duration, bool) { return l.running.Sub(l.started), ok(l.started) })
}

func pct(x float64) string { return fmt.Sprintf("%.0f%%", x*100) }

func verdict(met bool) string {
	if met {
		return "**met**"
	}
	return "**not met**"
}

func (r *report) write(w io.Writer) {
	fmt.Fprintf(w, "_Load average (1, 5, 15 min) at start: %s; at end: %s._\n\n", r.loadStart, r.loadEnd)
	var tot []time.Duration
	for _, l := range r.lat {
		tot = append(tot, l.total())
	}
	g, rr, cs := summarize(tot), summarize(r.runcRun), summarize(r.runcCreateStart)
	ratio := float64(g.median) / float64(rr.median)
	over := (float64(g.median) - float64(rr.median)) / float64(rr.median)

	fmt.Fprintf(w, "#### Submit-to-running, one instance (cached image, %d runs each after one warm-up)\n\n", g.n)
	fmt.Fprintln(w, "| measurement | median | p90 |")
	fmt.Fprintln(w, "|---|---:|---:|")
	fmt.Fprintf(w, "| gantry: `deploy` call → `get_service` says running | %s | %s |\n", ms(g.median), ms(g.p90))
	fmt.Fprintf(w, "| baseline: `runc run -d` of the same bundle | %s | %s |\n", ms(rr.median), ms(rr.p90))
	fmt.Fprintf(w, "| for reference: `runc create` + `runc start` (what gantry runs) | %s | %s |\n", ms(cs.median), ms(cs.p90))
	fmt.Fprintf(w, "| ratio gantry / `runc run -d` | %.2f× | %.2f× |\n", ratio, float64(g.p90)/float64(rr.p90))
	fmt.Fprintf(w, "| overhead (gantry − runc) / runc (medians) | %s | |\n", pct(over))
	fmt.Fprintf(w, "| goal: overhead < %s of raw runc | %s | |\n\n", pct(goalOverhead), verdict(over < goalOverhead))

	fmt.Fprintf(w, "#### Where the single-instance time goes (medians of %d runs; steps do not add up exactly to the total median)\n\n", g.n)
	fmt.Fprintln(w, "| step | what it includes | median | p90 |")
	fmt.Fprintln(w, "|---|---|---:|---:|")
	for _, st := range r.steps {
		s := summarize(st.d)
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", st.name, st.what, ms(s.median), ms(s.p90))
	}
	var rtt []time.Duration
	for _, l := range r.lat {
		rtt = append(rtt, l.deployed.Sub(l.t0))
	}
	dr := summarize(rtt)
	fmt.Fprintf(w, "| for reference: `deploy` call round trip | MCP, validation, Raft write of the service | %s | %s |\n", ms(dr.median), ms(dr.p90))
	nt := summarize(r.netTook)
	fmt.Fprintf(w, "| of which network.Setup (its own `took`) | netns + CNI ADD | %s | %s |\n", ms(nt.median), ms(nt.p90))
	for _, p := range []struct{ name, what string }{
		{"bridge", "veth pair, bridge, host-local IPAM (masquerading is one rule per network, set at start)"},
		{"portmap", "runs even with no published ports"},
		{"loopback", "brings lo up"},
	} {
		if d := r.cniTook[p.name]; len(d) > 0 {
			s := summarize(d)
			fmt.Fprintf(w, "| of which CNI `%s` ADD | %s | %s | %s |\n", p.name, p.what, ms(s.median), ms(s.p90))
		}
	}
	kd := summarize(r.runcKillDelete)
	fmt.Fprintf(w, "| measured apart: `runc kill` + `runc delete` of a missing container | the worker runs it only before a restart after a failed start | %s | %s |\n", ms(kd.median), ms(kd.p90))
	fmt.Fprintf(w, "| measured apart: `runc create` + `runc start` | the container itself | %s | %s |\n", ms(cs.median), ms(cs.p90))
	if len(r.initReady) > 0 {
		ir := summarize(r.initReady)
		fmt.Fprintf(w, "| measured apart: gantry-init ready after `runc start` | Gantry waits until the init forwards signals | %s | %s |\n", ms(ir.median), ms(ir.p90))
	}
	fmt.Fprintln(w)

	per := r.bulk / time.Duration(r.replicas)
	fifty := time.Duration(r.replicas) * rr.median
	fmt.Fprintf(w, "#### %d instances (one service, replicas: %d)\n\n", r.replicas, r.replicas)
	fmt.Fprintln(w, "| measurement | value |")
	fmt.Fprintln(w, "|---|---:|")
	fmt.Fprintf(w, "| gantry: `deploy` → running == %d | %s |\n", r.replicas, ms(r.bulk))
	fmt.Fprintf(w, "| per instance | %s |\n", ms(per))
	fmt.Fprintf(w, "| first instance running | %s |\n", ms(r.bulkFirst))
	fmt.Fprintf(w, "| first to last `container started` (log) | %s |\n", ms(r.bulkSpan))
	if len(r.bulkNet) > 0 {
		bn := summarize(r.bulkNet)
		fmt.Fprintf(w, "| network.Setup per instance during the bulk start (median / p90) | %s / %s |\n", ms(bn.median), ms(bn.p90))
	}
	fmt.Fprintf(w, "| baseline: %d × `runc run -d` median | %s |\n", r.replicas, ms(fifty))
	fmt.Fprintf(w, "| ratio gantry / (%d × runc) | %.2f× |\n", r.replicas, float64(r.bulk)/float64(fifty))
	fmt.Fprintf(w, "| CPU per instance: `gantry dev` itself | %s |\n", ms(r.bulkCPU.self/time.Duration(r.replicas)))
	children := r.bulkCPU.children / time.Duration(r.replicas)
	kdCPU, csCPU := median(r.runcKillDeleteCPU), median(r.runcCreateStartCPU)
	fmt.Fprintf(w, "| CPU per instance: processes it ran and reaped (runc, CNI plugins, iptables) | %s |\n", ms(children))
	fmt.Fprintf(w, "| of which, measured apart: `runc create` + `runc start` / `runc kill` + `runc delete` of a missing container | %s / %s |\n", ms(csCPU), ms(kdCPU))
	fmt.Fprintf(w, "| of which, the rest: CNI plugins and their iptables (by difference) | %s |\n", ms(children-csCPU-kdCPU))
	fmt.Fprintf(w, "| CPU of one `runc run -d` (median) | %s |\n", ms(median(r.runcRunCPU)))
	fmt.Fprintf(w, "| `remove_service` → all %d containers, dirs and netns gone | %s |\n\n", r.replicas, ms(r.bulkRemove))

	perKiB := (r.memBulk.rss - r.memIdle.rss) / int64(r.replicas)
	perPss := (r.memBulk.pss - r.memIdle.pss) / int64(r.replicas)
	perWarm := (r.memBulk.rss - r.memBefore.rss) / int64(r.replicas)
	var initRSS, initPSS int64
	for _, m := range r.initMem {
		initRSS += m.rss
		initPSS += m.pss
	}
	if n := int64(len(r.initMem)); n > 0 {
		initRSS, initPSS = initRSS/n, initPSS/n
	}
	fmt.Fprintln(w, "#### Memory of `gantry dev`")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| measurement | VmRSS | PSS |")
	fmt.Fprintln(w, "|---|---:|---:|")
	fmt.Fprintf(w, "| idle (3 s after start, no services) | %s | %s |\n", mib(r.memIdle.rss), mib(r.memIdle.pss))
	fmt.Fprintf(w, "| idle again, just before the bulk deploy (after the latency runs) | %s | %s |\n", mib(r.memBefore.rss), mib(r.memBefore.pss))
	fmt.Fprintf(w, "| with %d instances running (5 s settle) | %s | %s |\n", r.replicas, mib(r.memBulk.rss), mib(r.memBulk.pss))
	fmt.Fprintf(w, "| per instance: (with %d − idle) / %d | %d KiB | %d KiB |\n", r.replicas, r.replicas, perKiB, perPss)
	fmt.Fprintf(w, "| per instance against the second idle figure | %d KiB | |\n", perWarm)
	fmt.Fprintf(w, "| goal: < 1 MiB of gantry memory per running instance | %s | |\n", verdict(perKiB < goalPerInstance))
	fmt.Fprintf(w, "| gantry-init, one per container (mean of %d; charged to the container's cgroup) | %d KiB | %d KiB |\n",
		len(r.initMem), initRSS, initPSS)
}
