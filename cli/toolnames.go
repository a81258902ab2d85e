package cli

import (
	"regexp"
	"strings"

	"github.com/gantry-dev/gantry/api"
)

// cliCommands maps the MCP tools (and arguments) that the server's messages
// name to the CLI commands (and flags) that call them, for tool errors shown
// to a CLI user. Tools whose names are plain words (deploy, approve,
// reject) are left out.
var cliCommands = map[string]string{
	api.ToolListServices:       "gantry ps",
	api.ToolGetService:         "gantry status",
	api.ToolScaleService:       "gantry scale",
	api.ToolRemoveService:      "gantry rm",
	api.ToolServiceLogs:        "gantry logs",
	api.ToolListNodes:          "gantry nodes",
	api.ToolListImages:         "gantry image ls",
	api.ToolImportImage:        "gantry image import",
	api.ToolPullImage:          "gantry image pull",
	api.ToolCreateToken:        "gantry token create",
	api.ToolListTokens:         "gantry token ls",
	api.ToolRevokeToken:        "gantry token revoke",
	api.ToolAuditLog:           "gantry audit",
	api.ToolVerifyAudit:        "gantry audit --verify",
	api.ToolExecInstance:       "gantry exec",
	api.ToolClusterStatus:      "gantry cluster",
	api.ToolSetNodeEligibility: "gantry eligible",
	api.ToolDrainNode:          "gantry drain",
	api.ToolApplyPlan:          "gantry apply",
	api.ToolServiceHistory:     "gantry history",
	api.ToolRollbackService:    "gantry rollback",
	api.ToolRestartService:     "gantry restart",
	api.ToolListEvents:         "gantry events",
	api.ToolExplain:            "gantry explain",
	api.ToolListApprovals:      "gantry approvals",
	api.ToolCancelDeploy:       "gantry cancel",
	api.ToolSetSecret:          "gantry secret set",
	api.ToolListSecrets:        "gantry secret ls",
	api.ToolDeleteSecret:       "gantry secret rm",

	api.ToolRaftPeers:              "gantry operator raft peers",
	api.ToolRaftRemovePeer:         "gantry operator raft remove-peer",
	api.ToolRaftTransferLeadership: "gantry operator raft transfer-leader",
	api.ToolSnapshotSave:           "gantry snapshot save",
	api.ToolSnapshotRestore:        "gantry snapshot restore",
	// Arguments the messages name.
	"dry_run": "--dry-run",
}

var toolNameRE = regexp.MustCompile(`\b[a-z]+(?:_[a-z]+)+\b`)

// withCLINames appends to a tool error's text the CLI command of each tool
// it names, once each, unless the text already gives that command: the
// server speaks to every MCP client in tool names.
func withCLINames(text string) string {
	var pairs []string
	seen := map[string]bool{}
	for _, name := range toolNameRE.FindAllString(text, -1) {
		cmd, ok := cliCommands[name]
		if !ok || seen[name] || strings.Contains(text, cmd) {
			continue
		}
		seen[name] = true
		pairs = append(pairs, name+" is "+cmd)
	}
	if len(pairs) == 0 {
		return text
	}
	return text + "\n(from the CLI: " + strings.Join(pairs, ", ") + ")"
}
