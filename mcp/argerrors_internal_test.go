package mcp

import (
	"strings"
	"testing"
)

// The SDK's refusals of arguments, reworded: each names the argument and
// says what to pass.
func TestArgumentError(t *testing.T) {
	cases := []struct{ in, want string }{
		{`validating "arguments": validating root: validating /properties/replicas: type: 1.5 has type "number", want "integer"`,
			`invalid arguments for scale_service: argument replicas is a number (1.5), want an integer: pass an integer`},
		{`validating "arguments": validating root: validating /properties/command: type: ls has type "string", want one of "null, array"`,
			`argument command is a string (ls), want one of null, array: pass one of null, array`},
		{`validating "arguments": validating root: validating /properties/command: validating /properties/command/items: type: 1 has type "integer", want "string"`,
			`argument command[] is an integer (1), want a string`},
		{`validating "arguments": validating root: unexpected additional properties ["extra"]`,
			`unknown argument(s) "extra": remove them or correct their spelling`},
		{`validating "arguments": validating root: required: missing properties: ["value"]`,
			`missing argument(s) "value": pass them`},
		{`json: cannot unmarshal "1e+300" into Go struct field api.ScaleInput.replicas of type int`,
			`argument replicas is "1e+300", not a whole number in range: pass a whole number in range`},
		{`validating "arguments": something new`, `invalid arguments for scale_service: something new; the tool's input schema`},
	}
	for _, c := range cases {
		got := argumentError("scale_service", c.in)
		if !strings.Contains(got, c.want) || !strings.HasPrefix(got, "invalid arguments for scale_service: ") || !strings.Contains(got, "tools/list") {
			t.Errorf("argumentError(%q)\n = %q\nwant it to contain %q", c.in, got, c.want)
		}
	}
	long := argumentError("scale_service", `validating "arguments": validating root: validating /properties/replicas: type: [`+strings.Repeat("1,", 1<<20)+`1] has type "array", want "integer"`)
	if len(long) > 400 || !strings.Contains(long, "argument replicas is an array") {
		t.Errorf("a huge value is echoed whole (%d bytes): %.200s", len(long), long)
	}
}

// FuzzArgumentError: any refusal text is reworded without a panic, and the
// result names the tool.
func FuzzArgumentError(f *testing.F) {
	f.Add(`validating "arguments": validating root: validating /properties/a/items/properties/b: type: x has type "string", want "integer"`)
	f.Add(`json: cannot unmarshal "1" into Go struct field api.X.y.Z.w of type uint8`)
	f.Add(`validating "arguments": validating /: ok`)
	f.Fuzz(func(t *testing.T, msg string) {
		got := argumentError("t", msg)
		if !strings.HasPrefix(got, "invalid arguments for t: ") {
			t.Fatalf("argumentError(%q) = %q", msg, got)
		}
	})
}
