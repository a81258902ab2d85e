package cli

import (
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/api"
)

// An import's dry run says which layers it would import, not fetch: a
// tarball downloads nothing.
func TestPrintImagePlanSaysWhatHappens(t *testing.T) {
	var b strings.Builder
	printImagePlan(&b, api.ImagePlan{Ref: "local/web:1", Digest: "sha256:0123456789abcdef", Size: 2048, DownloadBytes: 1024,
		Layers: []api.PlannedLayer{{Digest: "sha256:aaaaaaaaaaaaaaaa", Size: 1024, Cached: true}, {Digest: "sha256:bbbbbbbbbbbbbbbb", Size: 1024}}}, "to import")
	if out := b.String(); strings.Contains(out, "fetch") || strings.Count(out, "to import") != 2 {
		t.Errorf("import plan:\n%s", out)
	}
}
