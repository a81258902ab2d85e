package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
)

// An intent becomes a plan on the real gantry dev; applying that plan runs
// a highly available public web service within its budget, and a
// subscriber to the service's resource hears of the rollout.
func TestPlanIntentDeploys(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)

	// A second session that listens for resource updates.
	updates := make(chan string, 64)
	client := mcp.NewClient(&mcp.Implementation{Name: "gantry-e2e-watch", Version: "1"}, &mcp.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
			select {
			case updates <- req.Params.URI:
			default:
			}
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	watch, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + d.addr + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{d.token, http.DefaultTransport}}}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer watch.Close()
	if err := watch.Subscribe(ctx, &mcp.SubscribeParams{URI: "gantry://services/shop"}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}

	var res api.PlanIntentResult
	d.call(api.ToolPlanIntent, map[string]any{
		"kind": "web", "name": "shop", "image": ref,
		"command":      []string{"/bin/httpd", "-f", "-p", "8080", "-h", "/www"},
		"env":          map[string]string{"GREETING": "intent"},
		"port":         8080,
		"health_path":  "/",
		"availability": "high",
		"exposure":     "public",
		"load":         "low",
		"budget":       map[string]any{"max_cpu_millis": 300, "max_memory": "192Mi"},
	}, &res)
	if res.Applied || res.Plan == nil || res.Plan.Action != api.ActionCreate || len(res.Plan.Create) != 3 {
		t.Fatalf("plan_intent should return an unapplied create plan of 3 instances: %+v", res)
	}
	if !strings.Contains(res.Next, res.Plan.ID) || !strings.Contains(res.SpecYAML, "replicas: 3") {
		t.Fatalf("next step or spec is off:\nnext: %s\nspec:\n%s", res.Next, res.SpecYAML)
	}
	var list api.ServiceList
	d.call(api.ToolListServices, nil, &list)
	if len(list.Services) != 0 {
		t.Fatalf("plan_intent deployed something: %+v", list.Services)
	}

	var applied api.ApplyPlanResult
	d.call(api.ToolApplyPlan, map[string]any{"plan_id": res.Plan.ID}, &applied)
	if applied.Service != "shop" || applied.Version != 1 {
		t.Fatalf("apply_plan = %+v", applied)
	}
	s := d.waitFor("shop", 90*time.Second, "3 healthy replicas", running(3))
	for _, in := range s.Instances {
		hp := in.Ports["http"]
		if hp == 0 {
			t.Fatalf("instance %s has no published port: %+v", in.ID, in)
		}
		body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/hello", hp))
		if err != nil || !strings.Contains(body, "intent from "+in.ID) {
			t.Fatalf("instance %s on port %d answered %q (%v)", in.ID, hp, body, err)
		}
	}
	if spec := s.Spec; spec != nil {
		res, _ := spec["resources"].(map[string]any)
		if res["cpu"] != "100m" || res["memory"] != "64Mi" {
			t.Fatalf("resources = %v, want 100m and 64Mi within the budget", res)
		}
	}

	select {
	case uri := <-updates:
		if uri != "gantry://services/shop" {
			t.Fatalf("update for %s", uri)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notifications/resources/updated for gantry://services/shop during the rollout")
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	rr, err := watch.ReadResource(rctx, &mcp.ReadResourceParams{URI: "gantry://services/shop/spec"})
	if err != nil || len(rr.Contents) != 1 || !strings.Contains(rr.Contents[0].Text, "name: shop") {
		t.Fatalf("read spec resource: %v %+v", err, rr)
	}
}
