package cluster

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

// Concurrent deploys of different specs to a service that does not exist
// yet: one creates it, the others update it, and each is told the version
// its own spec got (before, several were told "created at version 1"
// while their spec had silently become version 2 or 3).
func TestConcurrentDeploysEachReportTheirVersion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := state.Open(ctx, state.Config{DataDir: t.TempDir(), NodeID: "n1"})
	if err != nil {
		t.Fatalf("open state: %v", err)
	}
	defer st.Close()
	be := &Backend{Store: st}

	const n = 8
	results := make([]*api.DeployResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc, err := spec.Parse([]byte(fmt.Sprintf("name: race\nimage: busybox:1\nenv: {N: %q}\n", fmt.Sprint(i))), "race.yaml")
			if err != nil {
				errs[i] = err
				return
			}
			<-start
			results[i], errs[i] = be.Deploy(ctx, svc)
		}()
	}
	close(start)
	wg.Wait()

	created := 0
	var versions []int
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("deploy %d: %v", i, errs[i])
		}
		if results[i].Created {
			created++
		}
		versions = append(versions, results[i].Version)
	}
	sort.Ints(versions)
	for i, v := range versions {
		if v != i+1 {
			t.Fatalf("reported versions %v, want 1..%d once each; %d deploys said they created the service", versions, n, created)
		}
	}
	if created != 1 {
		t.Errorf("%d deploys said they created the service", created)
	}
	if svc, err := st.Service("race"); err != nil || svc.Version != n {
		t.Errorf("stored service: %+v, %v; want version %d", svc, err, n)
	}
}
