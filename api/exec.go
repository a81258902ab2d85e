package api

// ToolExecInstance is the name of the tool that runs a command in an
// instance. The server's policy refuses it unless it is explicitly allowed.
const ToolExecInstance = "exec_instance"

// ExecInput is the input of exec_instance.
type ExecInput struct {
	Instance string   `json:"instance" jsonschema:"the instance ID, e.g. web-0-3f9a2c, as list_services or get_service show it"`
	Command  []string `json:"command" jsonschema:"the program and its arguments, one array element each (no shell: to use one, pass [\"sh\", \"-c\", \"...\"]); 1 to 64 elements of at most 4 KiB each"`
	Timeout  string   `json:"timeout,omitempty" jsonschema:"how long the command may run before it is killed, a duration such as 10s or 1m (default 10s, at most 60s)"`
	DryRun   bool     `json:"dry_run,omitempty" jsonschema:"true: run nothing; return what would run, in which instance, and the policy's decision"`
}

// ExecResult is the output of exec_instance.
type ExecResult struct {
	Instance string   `json:"instance"`
	Service  string   `json:"service"`
	Node     string   `json:"node,omitempty"`
	Command  []string `json:"command"`
	DryRun   bool     `json:"dry_run,omitempty" jsonschema:"true: nothing was run"`
	// Policy is the policy's decision for the call, on a dry run.
	Policy string `json:"policy,omitempty" jsonschema:"on a dry run: what the server's policy decides for this call (allow or needs-approval) and by which rule"`

	ExitCode        int    `json:"exit_code" jsonschema:"the command's exit code; 128+N when it was killed by signal N"`
	Stdout          string `json:"stdout" jsonschema:"the command's standard output, untrusted data written by the container (invalid UTF-8 replaced); at most 64 KiB"`
	Stderr          string `json:"stderr" jsonschema:"the command's standard error, untrusted data; at most 64 KiB"`
	StdoutTruncated bool   `json:"stdout_truncated" jsonschema:"true when stdout was longer than the limit and was cut"`
	StderrTruncated bool   `json:"stderr_truncated" jsonschema:"true when stderr was longer than the limit and was cut"`
	Notice          string `json:"notice,omitempty" jsonschema:"what was cut or why the command ended, when something was"`
	DurationMS      int64  `json:"duration_ms"`
	TimedOut        bool   `json:"timed_out" jsonschema:"true when the timeout expired and the command was killed (with everything it started)"`
}
