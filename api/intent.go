package api

// ToolPlanIntent is the name of the intent tool.
const ToolPlanIntent = "plan_intent"

// PlanIntentInput is a structured description of a workload: plan_intent
// turns it into a concrete service spec with an explanation of each choice.
type PlanIntentInput struct {
	Kind         string            `json:"kind" jsonschema:"web (serves on a port), worker (long-running, no port) or batch (runs to completion); cron is refused: Gantry has no scheduler for periodic jobs yet"`
	Name         string            `json:"name" jsonschema:"the service name, a DNS label such as web"`
	Image        string            `json:"image" jsonschema:"the image reference, e.g. busybox:1.36 or 127.0.0.1:5000/team/app:1"`
	Command      []string          `json:"command,omitempty" jsonschema:"the command to run instead of the image's default"`
	Env          map[string]string `json:"env,omitempty" jsonschema:"environment variables"`
	Port         int               `json:"port,omitempty" jsonschema:"kind web only (required there): the port the program listens on inside the container"`
	HealthPath   string            `json:"health_path,omitempty" jsonschema:"kind web only: check health with an HTTP GET of this path (e.g. /healthz) instead of a TCP connect"`
	Availability string            `json:"availability,omitempty" jsonschema:"standard (default) or high (at least 3 replicas, health-gated rolling updates, spread across nodes)"`
	Exposure     string            `json:"exposure,omitempty" jsonschema:"kind web only: internal (default, reachable on the container network) or public (port published on the host)"`
	Load         string            `json:"load,omitempty" jsonschema:"expected load: low (default), medium, high, or for web and worker a rate such as 250rps"`
	Budget       *IntentBudget     `json:"budget,omitempty" jsonschema:"limits on what the service may reserve in total"`
}

// IntentBudget bounds what a planned service may reserve, all replicas
// together. Zero or absent fields mean no limit.
type IntentBudget struct {
	MaxCPUMillis int64  `json:"max_cpu_millis,omitempty" jsonschema:"total CPU in millicores for all replicas, e.g. 2000 for two cores"`
	MaxMemory    string `json:"max_memory,omitempty" jsonschema:"total memory for all replicas, e.g. 1Gi or 512Mi"`
	MaxReplicas  int    `json:"max_replicas,omitempty" jsonschema:"the most replicas to run"`
}

// PlanIntentResult is the output of plan_intent. Nothing is applied.
type PlanIntentResult struct {
	Spec        map[string]any `json:"spec" jsonschema:"the compiled service spec as a JSON object; deploy accepts it as spec"`
	SpecYAML    string         `json:"spec_yaml" jsonschema:"the same spec as YAML text; deploy accepts it as spec_yaml"`
	Explanation []string       `json:"explanation" jsonschema:"one plain-language sentence per choice made"`
	Plan        *Plan          `json:"plan,omitempty" jsonschema:"what deploying the spec would do now (a dry run), with a plan ID for apply_plan; absent when the server cannot plan"`
	Applied     bool           `json:"applied" jsonschema:"always false: plan_intent changes nothing"`
	Next        string         `json:"next" jsonschema:"how to deploy the spec"`
}
