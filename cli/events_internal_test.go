package cli

import (
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/api"
)

func TestEventTypesHint(t *testing.T) {
	got := eventTypesHint("Bogus", []api.EventRecord{{Type: "Started"}, {Type: "Exited"}, {Type: "Started"}})
	if !strings.Contains(got, `no events of type "Bogus"`) || !strings.Contains(got, "are: Exited, Started)") {
		t.Errorf("hint = %q", got)
	}
	if got := eventTypesHint("Exited", nil); !strings.Contains(got, "none of any type") {
		t.Errorf("no events at all: %q", got)
	}
}

func TestPrintClusterCountsServices(t *testing.T) {
	for n, want := range map[int]string{1: "1 service, ", 2: "2 services, ", 0: "0 services, "} {
		var b strings.Builder
		if err := printCluster(&b, api.ClusterStatus{Services: n}); err != nil || !strings.HasPrefix(b.String(), want) {
			t.Errorf("%d services: %q, %v", n, b.String(), err)
		}
	}
}
