package mcp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
)

// EventQuery selects events; empty fields match everything. Limit is
// always set (1 to maxEvents).
type EventQuery struct {
	Service, Instance, Type string
	Since                   time.Time
	Limit                   int
}

// Operations is what the events, explain, cluster status and node
// scheduling tools need from the cluster.
type Operations interface {
	ListEvents(ctx context.Context, q EventQuery) (*api.EventList, error)
	// Explain says why an instance (by ID) or a service's instances (by
	// service name) are not running.
	Explain(ctx context.Context, id string) (*api.Explanation, error)
	ClusterStatus(ctx context.Context) (*api.ClusterStatus, error)
	// SetNodeScheduling marks a node eligible or not; drain also stops its
	// instances so that they are placed elsewhere.
	SetNodeScheduling(ctx context.Context, node string, eligible, drain bool) (*api.NodeSchedulingResult, error)
}

const (
	defaultEvents = 100
	maxEvents     = 1000
	maxSinceLen   = 64
	maxEventType  = 64
)

// registerOpsTools adds list_events, explain_instance, cluster_status,
// set_node_eligibility and drain_node when cfg has Operations.
func registerOpsTools(s *Server, cfg Config) {
	if cfg.Ops == nil {
		return
	}
	ops := cfg.Ops
	addTool(s, &sdk.Tool{
		Name: api.ToolListEvents,
		Description: "List the cluster's events (deploys, scheduling, starts, exits with code and reason, OOM kills, health changes, placement failures), oldest first, " +
			"filtered by service, instance, type and since (a duration such as 10m or an RFC 3339 time). At most limit (default 100, at most 1000) of the newest are returned; truncated says when older ones were left out.",
		Annotations: readOnly("List events"),
	}, func(ctx context.Context, _ *sdk.CallToolRequest, in api.EventsInput) (api.EventList, string, error) {
		q, err := eventQuery(in, time.Now())
		if err != nil {
			return api.EventList{}, "", err
		}
		res, err := ops.ListEvents(ctx, q)
		if err != nil {
			return api.EventList{}, "", describe(api.ToolListEvents, err, serviceNotFound(in.Service))
		}
		if res == nil || res.Events == nil {
			res = &api.EventList{Events: []api.EventRecord{}}
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%d event%s", len(res.Events), plural(len(res.Events)))
		if res.Truncated {
			fmt.Fprintf(&b, " (the newest %d; older ones left out: narrow the filter or raise limit)", q.Limit)
		}
		for _, e := range res.Events {
			fmt.Fprintf(&b, "\n%s %s", e.Time.Format(time.RFC3339), e.Type)
			if e.Instance != "" {
				fmt.Fprintf(&b, " %s", e.Instance)
			} else if e.Service != "" {
				fmt.Fprintf(&b, " %s", e.Service)
			}
			fmt.Fprintf(&b, ": %s", e.Message)
		}
		return *res, b.String(), nil
	})
	addTool(s, &sdk.Tool{
		Name: api.ToolExplain,
		Description: "Explain in plain language why an instance (by ID) or a service's instances (by service name) are pending or not running: " +
			"placement failures, image pull errors, crash loops and backoff with the last exit code and reason, failing health checks, drained nodes. Each finding has a hint.",
		Annotations: readOnly("Explain instance"),
	}, func(ctx context.Context, _ *sdk.CallToolRequest, in api.ExplainInput) (api.Explanation, string, error) {
		if err := validateExplainTarget(in.ID); err != nil {
			return api.Explanation{}, "", err
		}
		res, err := ops.Explain(ctx, in.ID)
		if err != nil {
			return api.Explanation{}, "", describe(api.ToolExplain, err, errorHint{notFound: "list services with list_services and instance IDs with get_service"})
		}
		if res == nil {
			return api.Explanation{}, "", errors.New("the cluster returned no explanation")
		}
		var b strings.Builder
		b.WriteString(res.Summary)
		for _, f := range res.Findings {
			b.WriteString("\n- ")
			if f.Instance != "" {
				fmt.Fprintf(&b, "%s (%s): ", f.Instance, f.State)
			}
			b.WriteString(f.Reason)
			if f.Hint != "" {
				fmt.Fprintf(&b, " Hint: %s", f.Hint)
			}
		}
		return *res, b.String(), nil
	})
	addTool(s, &sdk.Tool{
		Name:        api.ToolClusterStatus,
		Description: "Show the cluster at a glance: nodes (status, capacity, eligibility, drain), the number of services, desired and running replicas, live instances by state, and the state's Raft index.",
		Annotations: readOnly("Cluster status"),
	}, func(ctx context.Context, _ *sdk.CallToolRequest, _ noInput) (api.ClusterStatus, string, error) {
		res, err := ops.ClusterStatus(ctx)
		if err != nil {
			return api.ClusterStatus{}, "", describe(api.ToolClusterStatus, err, errorHint{notFound: "retry"})
		}
		if res == nil {
			return api.ClusterStatus{}, "", errors.New("the cluster returned no status")
		}
		text := fmt.Sprintf("%d node%s, %d service%s, %d/%d replicas running, index %d; instances by state: %v",
			len(res.Nodes), plural(len(res.Nodes)), res.Services, plural(res.Services), res.Running, res.Desired, res.Index, res.Instances)
		for _, n := range res.Nodes {
			if !n.Eligible {
				text += fmt.Sprintf("; node %s is not eligible for new instances", n.ID)
				if n.Draining {
					text += " (drained)"
				}
			}
		}
		return *res, text, nil
	})
	addTool(s, &sdk.Tool{
		Name: api.ToolSetNodeEligibility,
		Description: "Mark a node eligible or ineligible for new instances. Ineligible: the scheduler places nothing new there, running instances stay. " +
			"Eligible again also ends a drain. With dry_run true nothing changes and the plan (pending instances that would be placed) is returned with a plan ID for apply_plan.",
		Annotations: mutating("Set node eligibility", false, false),
	}, func(ctx context.Context, _ *sdk.CallToolRequest, in api.NodeEligibilityInput) (api.NodeSchedulingResult, string, error) {
		if err := validateNodeID(in.Node); err != nil {
			return api.NodeSchedulingResult{}, "", err
		}
		if in.DryRun {
			return s.dryRunNode(ctx, api.ToolSetNodeEligibility, PlanRequest{Kind: PlanEligibility, Node: in.Node, Eligible: in.Eligible})
		}
		res, err := ops.SetNodeScheduling(ctx, in.Node, in.Eligible, false)
		return nodeResult(api.ToolSetNodeEligibility, res, err)
	})
	addTool(s, &sdk.Tool{
		Name: api.ToolDrainNode,
		Description: "Drain a node: mark it ineligible and stop its instances so the scheduler places them on other nodes; with no other node that can take them they stay pending. " +
			"Undo with set_node_eligibility eligible true. With dry_run true nothing changes and the plan (instances to stop, where their replacements would go or why they would stay pending) is returned with a plan ID for apply_plan.",
		Annotations: mutating("Drain node", true, false),
	}, func(ctx context.Context, _ *sdk.CallToolRequest, in api.DrainNodeInput) (api.NodeSchedulingResult, string, error) {
		if err := validateNodeID(in.Node); err != nil {
			return api.NodeSchedulingResult{}, "", err
		}
		if in.DryRun {
			return s.dryRunNode(ctx, api.ToolDrainNode, PlanRequest{Kind: PlanDrain, Node: in.Node})
		}
		res, err := ops.SetNodeScheduling(ctx, in.Node, false, true)
		return nodeResult(api.ToolDrainNode, res, err)
	})
}

func nodeResult(tool string, res *api.NodeSchedulingResult, err error) (api.NodeSchedulingResult, string, error) {
	if err != nil {
		return api.NodeSchedulingResult{}, "", describe(tool, err, errorHint{notFound: "list nodes with list_nodes"})
	}
	if res == nil {
		return api.NodeSchedulingResult{}, "", errors.New("the cluster returned no result")
	}
	return *res, res.Message, nil
}

// eventQuery validates list_events' input at the edge.
func eventQuery(in api.EventsInput, now time.Time) (EventQuery, error) {
	q := EventQuery{Service: in.Service, Instance: in.Instance, Type: in.Type, Limit: in.Limit}
	if in.Service != "" {
		if err := validateName(in.Service); err != nil {
			return q, err
		}
	}
	if in.Instance != "" {
		if err := validateInstanceID(in.Instance); err != nil {
			return q, err
		}
	}
	if len(in.Type) > maxEventType || strings.ContainsFunc(in.Type, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') }) {
		return q, invalidf("invalid event type %s: types are words such as Exited, Pending or Scheduled", quote(in.Type))
	}
	switch {
	case in.Limit == 0:
		q.Limit = defaultEvents
	case in.Limit < 0 || in.Limit > maxEvents:
		return q, invalidf("invalid limit %d: must be between 1 and %d", in.Limit, maxEvents)
	}
	if in.Since != "" {
		t, err := parseSince(in.Since, now)
		if err != nil {
			return q, err
		}
		q.Since = t
	}
	return q, nil
}

// parseSince reads a duration back from now ("10m") or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if len(s) > maxSinceLen {
		return time.Time{}, invalidf("since is %d characters long: pass a duration such as 10m or an RFC 3339 time such as 2026-01-02T15:04:05Z", len(s))
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, invalidf("invalid since %s: a duration back from now must not be negative, e.g. 10m", quote(s))
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, invalidf("invalid since %s: pass a duration back from now such as 10m or 2h, or an RFC 3339 time such as 2026-01-02T15:04:05Z", quote(s))
}

// validateExplainTarget accepts a service name or an instance ID.
func validateExplainTarget(id string) error {
	if id == "" {
		return invalidf("missing id: pass an instance ID such as \"web-0-3f9a2c\" or a service name such as \"web\"")
	}
	return validateInstanceID(id)
}

func validateNodeID(id string) error {
	if id == "" {
		return invalidf("missing node: pass a node ID (list them with list_nodes)")
	}
	if strings.HasPrefix(id, "-") || len(id) > maxIDLength || !instanceID.MatchString(id) || strings.Contains(id, "..") {
		return invalidf("invalid node ID %s: node IDs are lowercase letters, digits, '-', '_' and '.'; list them with list_nodes", quote(id))
	}
	return nil
}
