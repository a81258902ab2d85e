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
