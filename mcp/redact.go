package mcp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Audit argument limits: each string is cut to maxAuditString bytes and the
// whole record to maxAuditArgs; beyond that only the top-level keys are kept.
const (
	maxAuditString = 256
	maxAuditArgs   = 4096
	maxAuditDepth  = 16
	redacted       = "[redacted]"
)

// sensitiveKeys are substrings of argument names whose values are never
// recorded.
var sensitiveKeys = []string{"token", "secret", "password", "passwd", "key", "credential", "authorization", "cookie"}

func sensitiveKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range sensitiveKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// redactArguments returns a tool call's arguments as they may be kept in the
// audit log: values under secret-looking keys and of env maps replaced,
// a spec given as YAML text parsed and redacted the same way, long strings
// cut, and the whole bounded in size. The result is canonical JSON (sorted
// keys), or nil when there were no arguments.
func redactArguments(raw json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return mustMarshal(map[string]any{"_unparsed": fmt.Sprintf("%d bytes that are not JSON", len(raw))})
	}
	v = redactValue("", v, 0)
	out := mustMarshal(v)
	if len(out) <= maxAuditArgs {
		return out
	}
	summary := map[string]any{"_truncated": fmt.Sprintf("arguments were %d bytes after redaction", len(out))}
	if m, ok := v.(map[string]any); ok {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		summary["_keys"] = keys
		if n, ok := m["name"].(string); ok {
			summary["name"] = n
		}
	}
	return mustMarshal(summary)
}

func redactValue(key string, v any, depth int) any {
	if depth > maxAuditDepth {
		return "[too deep]"
	}
	if key != "" && sensitiveKey(key) {
		return redacted
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			switch {
			case strings.EqualFold(k, "env"):
				out[k] = redactEnv(val)
			case strings.EqualFold(k, "spec_yaml"):
				out[k] = redactYAML(val, depth)
			case depth == 0 && strings.EqualFold(k, "value"):
				// set_secret's value: the key name says nothing, so a
				// top-level value argument is never recorded, whatever the
				// tool.
				out[k] = redacted
			case depth == 0 && strings.EqualFold(k, "data"):
				// snapshot_restore's data: a whole state, sealed secrets
				// and token hashes included; only its size is recorded.
				if str, ok := val.(string); ok {
					out[k] = fmt.Sprintf("[redacted: %d bytes]", len(str))
				} else {
					out[k] = redacted
				}
			default:
				out[k] = redactValue(k, val, depth+1)
			}
		}
		return out
	case map[any]any: // from YAML with non-string keys
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[fmt.Sprint(k)] = val
		}
		return redactValue(key, out, depth)
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = redactValue("", val, depth+1)
		}
		return out
	case string:
		if len(x) > maxAuditString {
			return fmt.Sprintf("%s...[%d bytes]", strings.ToValidUTF8(x[:maxAuditString], ""), len(x))
		}
		return x
	}
	return v
}

// redactEnv keeps the variable names of an env map (or of a list of
// NAME=value strings) and drops the values.
func redactEnv(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k := range x {
			out[k] = redacted
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k := range x {
			out[fmt.Sprint(k)] = redacted
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			name, _, _ := strings.Cut(fmt.Sprint(e), "=")
			out[i] = name + "=" + redacted
		}
		return out
	case nil:
		return nil
	}
	return redacted
}

// redactYAML parses a spec given as YAML text so that its env values and
// secrets can be dropped like those of a JSON spec.
func redactYAML(v any, depth int) any {
	s, ok := v.(string)
	if !ok {
		return redactValue("spec_yaml", v, depth+1)
	}
	var doc any
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
		return fmt.Sprintf("[%d bytes of YAML that do not parse]", len(s))
	}
	if _, isMap := doc.(map[string]any); !isMap {
		return fmt.Sprintf("[%d bytes of YAML that are not a mapping]", len(s))
	}
	// Round-trip through JSON so YAML's types (ints, times) become JSON's.
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Sprintf("[%d bytes of YAML]", len(s))
	}
	var j any
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Sprintf("[%d bytes of YAML]", len(s))
	}
	return redactValue("", j, depth+1)
}

func mustMarshal(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`{"_unencodable":true}`)
	}
	return b
}
