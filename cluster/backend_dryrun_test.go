package cluster

import (
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/image"
	"github.com/gantry-dev/gantry/image/imagetest"
	"github.com/gantry-dev/gantry/state"
)

func TestTokenDryRuns(t *testing.T) {
	e := newPolicyEnv(t)
	admin := e.mustConnect(t, bootstrapToken)
	before := len(e.store.Tokens())
	res := callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: "ci", Scope: "operate", DryRun: true})
	tok := decodeResult[api.CreatedToken](t, res)
	if !tok.DryRun || tok.Token != "" || tok.ID != "" || tok.Name != "ci" || tok.Scope != "operate" {
		t.Fatalf("dry-run token = %+v", tok)
	}
	if !strings.Contains(resultText(res), "no secret generated") || len(e.store.Tokens()) != before {
		t.Fatalf("dry run created a token or does not say so: %q", resultText(res))
	}
	wantRefused(t, callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: "ci", Scope: "root", DryRun: true}), "invalid scope")
	wantRefused(t, callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: "-x", Scope: "read", DryRun: true}), "invalid token name")

	real := decodeResult[api.CreatedToken](t, callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: "ci", Scope: "read"}))
	res = callTool(t, admin, api.ToolRevokeToken, api.RevokeTokenInput{ID: real.ID, DryRun: true})
	rv := decodeResult[api.RevokeTokenResult](t, res)
	if !rv.DryRun || rv.Token == nil || rv.Token.Name != "ci" || rv.Token.Scope != "read" || rv.AlreadyRevoked {
		t.Fatalf("dry-run revoke = %+v", rv)
	}
	if st, _ := e.store.Token(real.ID); st.Revoked {
		t.Fatal("a dry run revoked the token")
	}
	e.mustConnect(t, real.Token) // still accepted
	wantRefused(t, callTool(t, admin, api.ToolRevokeToken, api.RevokeTokenInput{ID: "0123456789ab", DryRun: true}), "not found", "list_tokens")
}

func TestApprovalDryRuns(t *testing.T) {
	e := newPolicyEnv(t)
	admin := e.mustConnect(t, bootstrapToken)
	e.deploy(t, admin, "shop", "prod")
	token := func(name, scope string) string {
		return decodeResult[api.CreatedToken](t, callTool(t, admin, api.ToolCreateToken, api.CreateTokenInput{Name: name, Scope: scope})).Token
	}
	opsTok, bossTok := token("ops", "operate"), token("boss", "admin")
	ops, boss := e.mustConnect(t, opsTok), e.mustConnect(t, bossTok)
	pend := decodeStructured[api.PendingApproval](t, callTool(t, ops, api.ToolScaleService, map[string]any{"name": "shop", "replicas": 3}))

	for _, tool := range []string{api.ToolApprove, api.ToolReject} {
		res := callTool(t, boss, tool, api.DecideApprovalInput{ID: pend.ApprovalID, DryRun: true})
		a := decodeResult[api.Approval](t, res)
		if !a.DryRun || a.State != api.ApprovalPending || a.Tool != api.ToolScaleService || !strings.HasPrefix(a.Principal, "ops/") || a.Arguments["replicas"] != 3.0 {
			t.Fatalf("%s dry run = %+v", tool, a)
		}
		if !strings.Contains(resultText(res), "nothing decided") {
			t.Errorf("%s dry-run text %q", tool, resultText(res))
		}
	}
	if ap, _ := e.store.Approval(pend.ApprovalID); ap.StateAt(time.Now()) != state.ApprovalPending {
		t.Fatalf("a dry run decided the approval: %s", ap.State)
	}
	// Refused as the real call would be: own call, unknown, decided, expired.
	own := decodeStructured[api.PendingApproval](t, callTool(t, boss, api.ToolScaleService, map[string]any{"name": "shop", "replicas": 5}))
	wantRefused(t, callTool(t, boss, api.ToolApprove, api.DecideApprovalInput{ID: own.ApprovalID, DryRun: true}), "cannot decide")
	wantRefused(t, callTool(t, boss, api.ToolApprove, api.DecideApprovalInput{ID: "apr-0000000000ff", DryRun: true}), "not found")
	decodeResult[api.Approval](t, callTool(t, boss, api.ToolReject, api.DecideApprovalInput{ID: pend.ApprovalID}))
	wantRefused(t, callTool(t, boss, api.ToolApprove, api.DecideApprovalInput{ID: pend.ApprovalID, DryRun: true}), "rejected, not pending")

	short := e.serve(t, testPolicy, "", 100*time.Millisecond)
	late := (&authEnv{url: short}).mustConnect(t, opsTok)
	exp := decodeStructured[api.PendingApproval](t, callTool(t, late, api.ToolScaleService, map[string]any{"name": "shop", "replicas": 2}))
	time.Sleep(200 * time.Millisecond)
	wantRefused(t, callTool(t, boss, api.ToolReject, api.DecideApprovalInput{ID: exp.ApprovalID, DryRun: true}), "expired, not pending")
}

func TestImageDryRuns(t *testing.T) {
	e := newPolicyEnv(t)
	imgs, err := image.Open(filepath.Join(t.TempDir(), "images"), image.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.be.Images = imgs
	e.url = e.serve(t, testPolicy, "", time.Hour)
	admin := e.mustConnect(t, bootstrapToken)

	img := imagetest.Busybox(t, map[string]string{"etc/dry": "run\n"})
	ref := imagetest.Registry(t) + "/dry/run:1"
	imagetest.PushImage(t, img, ref)
	want, _ := img.Digest()

	res := callTool(t, admin, api.ToolPullImage, api.PullImageInput{Ref: ref, DryRun: true})
	pr := decodeResult[api.PullImageResult](t, res)
	if pr.Plan == nil || pr.Digest != want.String() || pr.Plan.CachedLayers != 0 || pr.Plan.DownloadBytes != pr.Size || pr.Size == 0 || len(pr.Plan.Layers) != 1 {
		t.Fatalf("pull dry run = %+v %+v", pr, pr.Plan)
	}
	if !strings.Contains(resultText(res), "nothing downloaded") {
		t.Errorf("pull dry-run text %q", resultText(res))
	}
	if l, _ := imgs.List(t.Context()); len(l) != 0 {
		t.Fatalf("a pull dry run cached %v", l)
	}

	p := filepath.Join(t.TempDir(), "save.tar")
	if err := tarball.MultiRefWriteToFile(p, map[name.Reference]v1.Image{name.MustParseReference("example.com/dry/save:1"): img}); err != nil {
		t.Fatal(err)
	}
	ir := decodeResult[api.ImportImageResult](t, callTool(t, admin, api.ToolImportImage, api.ImportImageInput{Path: p, DryRun: true}))
	if ir.Format != "docker-save" || len(ir.Plan) != 1 || len(ir.Images) != 1 || ir.Images[0].Ref != "example.com/dry/save:1" || ir.Images[0].Digest != want.String() {
		t.Fatalf("import dry run = %+v", ir)
	}
	if l, _ := imgs.List(t.Context()); len(l) != 0 {
		t.Fatalf("an import dry run cached %v", l)
	}
	wantRefused(t, callTool(t, admin, api.ToolImportImage, api.ImportImageInput{Path: "/nonexistent/x.tar", DryRun: true}), "not found")
	wantRefused(t, callTool(t, admin, api.ToolPullImage, api.PullImageInput{Ref: imagetest.Registry(t) + "/dry/none:1", DryRun: true}), "not found")
}
