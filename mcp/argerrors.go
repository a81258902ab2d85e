package mcp

import (
	"regexp"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// The SDK checks a call's arguments against the tool's input schema, and
// decodes them, before the handler runs; its refusals are worded for Go
// programmers ("validating root: validating /properties/replicas: type: 1.5
// has type \"number\", want \"integer\"", "json: cannot unmarshal ... into
// Go struct field api.ScaleInput.replicas of type int"). argumentError
// rewords them to name the argument and say how to fix it.

var (
	schemaPtr     = regexp.MustCompile(`validating (/[^:\s]*)`)
	schemaPath    = regexp.MustCompile(`/properties/([^/]+)|/items`)
	schemaType    = regexp.MustCompile(`type: (.*) has type "([^"]+)", want (?:one of )?"([^"]+)"\s*$`)
	schemaExtra   = regexp.MustCompile(`unexpected additional properties \[(.*)\]`)
	schemaMissing = regexp.MustCompile(`missing properties: \[(.*)\]`)
	decodeField   = regexp.MustCompile(`^json: cannot unmarshal (.*) into Go struct field ([A-Za-z0-9_.]+) of type (\S+)`)
)

// argumentError is the message for a call to tool whose arguments the SDK
// refused with msg.
func argumentError(tool, msg string) string {
	const schema = "the tool's input schema (tools/list) describes each argument"
	head := "invalid arguments for " + tool + ": "
	if m := decodeField.FindStringSubmatch(msg); m != nil {
		what := "a value of type " + m[3]
		if strings.HasPrefix(m[3], "int") || strings.HasPrefix(m[3], "uint") {
			what = "a whole number in range"
		}
		return head + "argument " + jsonField(m[2]) + " is " + shortValue(m[1]) + ", not " + what + ": pass " + what + "; " + schema
	}
	rest, ok := strings.CutPrefix(msg, `validating "arguments": `)
	if !ok {
		return head + msg + "; " + schema
	}
	var path []string
	ptr := ""
	if all := schemaPtr.FindAllStringSubmatch(rest, -1); len(all) > 0 {
		ptr = all[len(all)-1][1] // each validating clause repeats the whole pointer
	}
	for _, m := range schemaPath.FindAllStringSubmatch(ptr, -1) {
		if m[1] == "" {
			if len(path) > 0 {
				path[len(path)-1] += "[]"
			}
			continue
		}
		path = append(path, m[1])
	}
	where := ""
	if len(path) > 0 {
		where = strings.Join(path, ".")
	}
	switch {
	case schemaExtra.MatchString(rest):
		names := schemaExtra.FindStringSubmatch(rest)[1]
		in := ""
		if where != "" {
			in = " in " + where
		}
		return head + "unknown argument(s) " + names + in + ": remove them or correct their spelling; " + schema
	case schemaMissing.MatchString(rest):
		names := schemaMissing.FindStringSubmatch(rest)[1]
		in := ""
		if where != "" {
			in = " in " + where
		}
		return head + "missing argument(s) " + names + in + ": pass them; " + schema
	case where != "" && schemaType.MatchString(rest):
		m := schemaType.FindStringSubmatch(rest)
		return head + "argument " + where + " is " + article(m[2]) + " (" + shortValue(m[1]) + "), want " + article(m[3]) + ": pass " + article(m[3]) + "; " + schema
	case where != "":
		last := rest[strings.LastIndex(rest, ": ")+2:]
		return head + "argument " + where + ": " + last + "; " + schema
	}
	return head + rest + "; " + schema
}

// shortValue bounds the echo of a value the caller sent (it may be
// megabytes long).
func shortValue(v string) string {
	if len(v) > 64 {
		return truncateUTF8(v, 64) + "…"
	}
	return v
}

// jsonField turns the decoder's "api.ScaleInput.replicas" into the
// argument's JSON path, "replicas": Go type names are capitalized, JSON
// argument names are not.
func jsonField(f string) string {
	parts := strings.Split(f, ".")
	for i := len(parts) - 1; i >= 0; i-- {
		if p := parts[i]; p != "" && p[0] >= 'A' && p[0] <= 'Z' {
			return strings.Join(parts[i+1:], ".")
		}
	}
	return f
}

// article puts "a" or "an" before a JSON type name, or a list of them.
func article(t string) string {
	if strings.Contains(t, ",") {
		return "one of " + t
	}
	if t != "" && strings.ContainsRune("aeiou", rune(t[0])) {
		return "an " + t
	}
	return "a " + t
}

// rewordArgumentError replaces the text of res with argumentError's when
// it is the SDK's refusal of a call's arguments (other error results, such
// as a call held for approval, are left alone).
func rewordArgumentError(tool string, res sdk.Result) {
	r, ok := res.(*sdk.CallToolResult)
	if !ok || r == nil || len(r.Content) != 1 || r.StructuredContent != nil {
		return
	}
	t, ok := r.Content[0].(*sdk.TextContent)
	if ok && (strings.HasPrefix(t.Text, `validating "arguments": `) || strings.HasPrefix(t.Text, "json: cannot unmarshal ")) {
		t.Text = argumentError(tool, t.Text)
	}
}
