package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// docsPath is the MCP guide whose generated sections list the server's
// tools, prompts and resources.
const docsPath = "../docs/mcp.md"

const updateDocsHint = "GANTRY_UPDATE_DOCS=1 go test -count=1 -run TestDocsListTheServersTools ./e2e/"

// docs/mcp.md lists exactly the tools, prompts and resources a real gantry
// dev serves, so the guide cannot drift from the server. With
// GANTRY_UPDATE_DOCS=1 the test rewrites the generated sections instead.
func TestDocsListTheServersTools(t *testing.T) {
	d := startDev(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sections := map[string]string{
		"tools":     renderTools(ctx, t, d.session),
		"prompts":   renderPrompts(ctx, t, d.session),
		"resources": renderResources(ctx, t, d.session),
	}
	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	for _, name := range []string{"tools", "prompts", "resources"} {
		updated, err := replaceSection(doc, name, sections[name])
		if err != nil {
			t.Fatal(err)
		}
		if updated != doc && os.Getenv("GANTRY_UPDATE_DOCS") == "" {
			t.Errorf("docs/mcp.md's %s section differs from what the server lists; regenerate it with:\n  %s\nwant:\n%s", name, updateDocsHint, sections[name])
		}
		doc = updated
	}
	if os.Getenv("GANTRY_UPDATE_DOCS") != "" && doc != string(raw) {
		if err := os.WriteFile(docsPath, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the generated sections of %s", docsPath)
	}
}

// replaceSection replaces the text between the BEGIN and END markers of a
// generated section.
func replaceSection(doc, name, body string) (string, error) {
	begin := fmt.Sprintf("<!-- BEGIN GENERATED %s: %s -->\n", name, updateDocsHint)
	end := fmt.Sprintf("<!-- END GENERATED %s -->", name)
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("docs/mcp.md lacks the markers %q ... %q", strings.TrimSpace(begin), end)
	}
	return doc[:i+len(begin)] + body + doc[j:], nil
}

// firstSentence keeps a description's first sentence, on one line, safe
// inside a Markdown table.
func firstSentence(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	for off := 0; ; {
		i := strings.Index(s[off:], ". ")
		if i < 0 {
			break
		}
		end := off + i + 1
		if !strings.HasSuffix(s[:end], "e.g.") && !strings.HasSuffix(s[:end], "i.e.") {
			s = s[:end]
			break
		}
		off = end
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return ""
}

func renderTools(ctx context.Context, t *testing.T, s *mcp.ClientSession) string {
	t.Helper()
	var tools []*mcp.Tool
	for tl, err := range s.Tools(ctx, nil) {
		if err != nil {
			t.Fatalf("tools/list: %v", err)
		}
		tools = append(tools, tl)
	}
	slices.SortFunc(tools, func(a, b *mcp.Tool) int { return strings.Compare(a.Name, b.Name) })
	var b strings.Builder
	b.WriteString("| Tool | Scope | Read-only | Destructive | Idempotent | `dry_run` | What it does |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, tl := range tools {
		a := tl.Annotations
		if a == nil {
			t.Errorf("tool %s has no annotations", tl.Name)
			a = &mcp.ToolAnnotations{}
		}
		// The spec's defaults: destructive unless it says otherwise.
		destructive := !a.ReadOnlyHint && (a.DestructiveHint == nil || *a.DestructiveHint)
		// The scope the server checks: the tool's own, else read for a
		// read-only tool and operate for the rest (docs/architecture.md).
		scope, _ := tl.Meta["gantry.dev/scope"].(string)
		if scope == "" {
			scope = map[bool]string{true: "read", false: "operate"}[a.ReadOnlyHint]
		}
		dryRun := false
		if m, ok := tl.InputSchema.(map[string]any); ok {
			if props, ok := m["properties"].(map[string]any); ok {
				_, dryRun = props["dry_run"]
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s | %s |\n", tl.Name, scope,
			yes(a.ReadOnlyHint), yes(destructive), yes(a.IdempotentHint), yes(dryRun), firstSentence(tl.Description))
	}
	return b.String()
}

func renderPrompts(ctx context.Context, t *testing.T, s *mcp.ClientSession) string {
	t.Helper()
	if s.InitializeResult().Capabilities.Prompts == nil {
		return "The server offers no prompts.\n"
	}
	var prompts []*mcp.Prompt
	for p, err := range s.Prompts(ctx, nil) {
		if err != nil {
			t.Fatalf("prompts/list: %v", err)
		}
		prompts = append(prompts, p)
	}
	slices.SortFunc(prompts, func(a, b *mcp.Prompt) int { return strings.Compare(a.Name, b.Name) })
	var b strings.Builder
	b.WriteString("| Prompt | Arguments | What it is for |\n|---|---|---|\n")
	for _, p := range prompts {
		var args []string
		for _, a := range p.Arguments {
			if a.Required {
				args = append(args, "`"+a.Name+"`")
			} else {
				args = append(args, "`"+a.Name+"`?")
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", p.Name, strings.Join(args, ", "), firstSentence(p.Description))
	}
	return b.String()
}

func renderResources(ctx context.Context, t *testing.T, s *mcp.ClientSession) string {
	t.Helper()
	caps := s.InitializeResult().Capabilities.Resources
	if caps == nil {
		return "The server offers no resources.\n"
	}
	type row struct{ uri, desc string }
	var rows []row
	for r, err := range s.Resources(ctx, nil) {
		if err != nil {
			t.Fatalf("resources/list: %v", err)
		}
		// Only fixed resources: those naming one service or instance
		// depend on what is deployed (none here).
		rows = append(rows, row{r.URI, r.Description})
	}
	for r, err := range s.ResourceTemplates(ctx, nil) {
		if err != nil {
			t.Fatalf("resources/templates/list: %v", err)
		}
		rows = append(rows, row{r.URITemplate, r.Description})
	}
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.uri, b.uri) })
	var b strings.Builder
	fmt.Fprintf(&b, "Subscriptions: %s.\n\n| Resource or template | What it holds |\n|---|---|\n", map[bool]string{true: "yes (`resources/subscribe`; updates are pushed when the thing changes)", false: "no"}[caps.Subscribe])
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | %s |\n", r.uri, firstSentence(r.desc))
	}
	return b.String()
}
