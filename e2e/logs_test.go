package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A container printing as fast as it can must not fill the disk: its log
// is checked every 100ms while it is busy (default 10 MiB, 3 copies), so the files
// stay bounded, `gantry logs --tail 5` stays fast and the service can still
// be removed promptly.
func TestFastLoggerLogStaysBounded(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	d.deploy(fmt.Sprintf("name: chatty\nimage: %s\ncommand: [yes, 'a log line written in a tight loop by a container that never stops talking']\n", ref))
	s := d.waitFor("chatty", 60*time.Second, "running", running(1))
	dir := filepath.Join(d.dataDir, "instances", s.Instances[0].ID)

	logBytes := func() int64 {
		var n int64
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.Contains(e.Name(), "container.log") {
				if fi, err := e.Info(); err == nil {
					n += fi.Size()
				}
			}
		}
		return n
	}
	// yes writes hundreds of MB a second here; a 10 s check let the live
	// log reach GBs. Now: 10 MiB live + rate*(100ms + a copy) + 3 copies and a
	// copy in progress of at most 20 MiB each (about 250 MiB at 1.5 GB/s).
	const bound = 512 << 20
	var peak int64
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		peak = max(peak, logBytes())
	}
	if peak > bound {
		t.Errorf("log files of a fast writer reached %d MiB; want them bounded under %d MiB", peak>>20, bound>>20)
	}
	if _, err := os.Stat(filepath.Join(dir, "container.log.1")); err != nil {
		t.Errorf("the log was never rotated: %v", err)
	}

	start := time.Now()
	out, err := d.cli("logs", "chatty", "--tail", "5")
	// The last line may be one the writer is still in the middle of.
	if n := strings.Count(out, "never stops talking"); err != nil || n < 4 || strings.Count(strings.TrimSpace(out), "\n") != 4 {
		t.Errorf("gantry logs --tail 5: %v\n%s", err, out)
	}
	if dt := time.Since(start); dt > 3*time.Second {
		t.Errorf("gantry logs --tail 5 took %v", dt)
	}

	start = time.Now()
	d.call("remove_service", map[string]any{"name": "chatty"}, nil)
	for len(d.runcContainers()) > 0 {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("the fast writer was not stopped 20s after remove")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("peak log size %d MiB; removed in %v", peak>>20, time.Since(start).Round(time.Millisecond))
}
