package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// summary is the median and p90 (nearest rank) of a sample.
type summary struct {
	n      int
	median time.Duration
	p90    time.Duration
}

func summarize(xs []time.Duration) summary {
	if len(xs) == 0 {
		return summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	rank := int(math.Ceil(0.9*float64(n))) - 1
	return summary{n: n, median: med, p90: s[max(rank, 0)]}
}

func median(xs []time.Duration) time.Duration { return summarize(xs).median }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// memory is a process's resident set and proportional set size, in KiB.
type memory struct{ rss, pss int64 }

// readMemory reads VmRSS from /proc/PID/status and Pss from
// /proc/PID/smaps_rollup.
func readMemory(pid int) (memory, error) {
	var m memory
	rss, err := procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
	if err != nil {
		return m, err
	}
	pss, err := procField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
	if err != nil {
		return m, err
	}
	return memory{rss: rss, pss: pss}, nil
}

// procField returns the kB value of the line starting with key.
func procField(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, key) {
			continue
		}
		fs := strings.Fields(line[len(key):])
		if len(fs) == 0 {
			break
		}
		return strconv.ParseInt(fs[0], 10, 64)
	}
	return 0, fmt.Errorf("%s: no %s line", path, key)
}

// logLine is one line of gantry dev's slog text log.
type logLine struct {
	time  time.Time
	msg   string
	attrs map[string]string
	raw   string
}

// readLog parses the key=value lines of a slog text log; other lines are
// skipped.
func readLog(path string) ([]logLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		kv := parseKV(sc.Text())
		t, err := time.Parse(time.RFC3339Nano, kv["time"])
		if err != nil {
			continue
		}
		out = append(out, logLine{time: t, msg: kv["msg"], attrs: kv, raw: sc.Text()})
	}
	return out, sc.Err()
}

// parseKV splits `k=v k="quoted v"` pairs.
func parseKV(line string) map[string]string {
	kv := map[string]string{}
	for i := 0; i < len(line); {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		eq := strings.IndexByte(line[i:], '=')
		if eq < 0 {
			break
		}
		key := line[i : i+eq]
		i += eq + 1
		var val string
		if i < len(line) && line[i] == '"' {
			j := i + 1
			for j < len(line) && line[j] != '"' {
				if line[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(line) {
				j = len(line) - 1
			}
			if v, err := strconv.Unquote(line[i : j+1]); err == nil {
				val = v
			} else {
				val = line[i+1 : j]
			}
			i = j + 1
		} else {
			j := strings.IndexByte(line[i:], ' ')
			if j < 0 {
				j = len(line) - i
			}
			val = line[i : i+j]
			i += j
		}
		kv[key] = val
	}
	return kv
}

// cpuTimes is CPU time (user + system) of a process itself and of the
// children it has waited for.
type cpuTimes struct{ self, children time.Duration }

// readCPU reads utime, stime, cutime and cstime from /proc/PID/stat.
func readCPU(pid int) (cpuTimes, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTimes{}, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return cpuTimes{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return cpuTimes{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	var ticks [4]int64
	for k := range ticks {
		if ticks[k], err = strconv.ParseInt(f[11+k], 10, 64); err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return cpuTimes{self: time.Duration(ticks[0]+ticks[1]) * tick, children: time.Duration(ticks[2]+ticks[3]) * tick}, nil
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
