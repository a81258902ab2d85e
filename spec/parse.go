package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// MaxSpecSize is the largest spec Parse accepts (1 MiB).
const MaxSpecSize = 1 << 20

// maxNodes bounds the YAML nodes the decoder visits, counting each alias
// expansion again, so aliases cannot make decoding blow up.
const maxNodes = 1 << 21

// Parse reads a service spec written in YAML or JSON (JSON is read as YAML,
// which keeps positions for both). It applies defaults to absent fields,
// validates the result and reports every problem at once as a
// *ValidationError (in the errdefs.ErrInvalid category) whose entries carry
// the line and column of the field. filename is used only in messages.
func Parse(data []byte, filename string) (*Service, error) {
	fail := func(fe FieldError) (*Service, error) {
		return nil, &ValidationError{File: filename, Errors: []FieldError{fe}}
	}
	if len(data) > MaxSpecSize {
		return fail(FieldError{
			Message: fmt.Sprintf("spec is %d bytes; the limit is %d (1 MiB)", len(data), MaxSpecSize),
			Hint:    "a service spec is normally a few KiB; put large data into the image instead",
		})
	}
	root, fe := parseDocument(data)
	if fe != nil {
		return fail(*fe)
	}
	d := &decoder{pos: map[string]position{}, budget: maxNodes}
	s := d.service(root)
	all := d.errs.list
	truncated := d.errs.truncated
	if s != nil {
		vp := &problems{}
		validate(s, true, vp)
		truncated = truncated || vp.truncated
		for _, fe := range vp.list {
			if d.suppressed(fe.Path) {
				continue
			}
			p := d.locate(fe.Path)
			fe.Line, fe.Column = p.line, p.col
			all = append(all, fe)
		}
	}
	if len(all) > 0 {
		sortByPosition(all)
		if len(all) > maxProblems {
			all, truncated = all[:maxProblems], true
		}
		if truncated {
			all = append(all, truncatedProblem)
		}
		return nil, &ValidationError{File: filename, Errors: all}
	}
	for i, c := range s.CapAdd {
		s.CapAdd[i], _ = NormalizeCapability(c)
	}
	return s, nil
}

// parseDocument parses data into the root node of its single document.
func parseDocument(data []byte) (root *yaml.Node, fe *FieldError) {
	// The YAML library is third-party code fed untrusted input; a panic in it
	// must not take down the caller (the MCP server parses user specs).
	defer func() {
		if r := recover(); r != nil {
			root, fe = nil, &FieldError{Message: fmt.Sprintf("cannot parse YAML: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Message: "empty spec", Hint: "a spec needs at least name and image"}
		}
		return nil, syntaxError(err, data)
	}
	if isEmptyDocument(&doc) {
		return nil, &FieldError{Line: doc.Line, Column: doc.Column, Message: "empty spec", Hint: "a spec needs at least name and image"}
	}
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, syntaxError(err, data)
		}
		if !isEmptyDocument(&extra) {
			line := extra.Line
			if len(extra.Content) > 0 {
				line = extra.Content[0].Line
			}
			return nil, &FieldError{Line: line, Message: "more than one YAML document",
				Hint: "put each service in its own file; remove the '---' line"}
		}
	}
	return doc.Content[0], nil
}

func isEmptyDocument(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}
	c := doc.Content[0]
	return c.Kind == yaml.ScalarNode && c.ShortTag() == "!!null"
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the messages of YAML parser (not scanner) errors.
var parserProblems = []string{
	"did not find expected <document start>",
	"did not find expected node content",
	"did not find expected key",
	"did not find expected '-' indicator",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found undefined tag handle",
	"found duplicate %YAML directive",
	"found duplicate %TAG directive",
	"found incompatible YAML document",
}

// syntaxError turns a YAML library error into a FieldError with its line.
func syntaxError(err error, data []byte) *FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	fe := &FieldError{Hint: "check the indentation and quoting on this line and the one before"}
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
		// The library adds 1 to the 0-based line of scanner errors but not of
		// parser errors, which point at where the unfinished construct began.
		for _, pm := range parserProblems {
			if msg == pm {
				fe.Line++
				break
			}
		}
	}
	fe.Message = "invalid YAML: " + msg
	if fe.Line == 0 {
		fe.Hint = "check the YAML syntax"
	}
	lines := bytes.Split(data, []byte("\n"))
	switch {
	case fe.Line > 0 && fe.Line <= len(lines) && bytes.ContainsRune(lines[fe.Line-1], '\t'):
		fe.Hint = "YAML indentation must use spaces, not tabs"
	case strings.Contains(msg, "mapping values are not allowed"):
		fe.Hint = `quote values that contain ": ", e.g. args: ["echo", "a: b"]`
	}
	return fe
}

type position struct{ line, col int }

// decoder turns YAML nodes into a Service, recording the position of every
// field it sees and a problem for every field it cannot decode.
type decoder struct {
	errs   problems
	pos    map[string]position
	failed []string // paths that could not be decoded
	budget int
}

func (d *decoder) errorAt(n *yaml.Node, path, hint, format string, args ...any) {
	d.errs.add(FieldError{Path: path, Line: n.Line, Column: n.Column, Message: fmt.Sprintf(format, args...), Hint: hint})
	d.failed = append(d.failed, path)
}

// suppressed reports whether a validation problem at path is a consequence
// of a decoding problem already reported at or above it.
func (d *decoder) suppressed(path string) bool {
	for _, f := range d.failed {
		if path == f || strings.HasPrefix(path, f+".") || strings.HasPrefix(path, f+"[") {
			return true
		}
	}
	return false
}

// locate returns the position of path or of its nearest recorded ancestor.
func (d *decoder) locate(path string) position {
	if p, ok := d.pos[path]; ok {
		return p
	}
	for i := len(path) - 1; i > 0; i-- {
		if path[i] == '.' || path[i] == '[' {
			if p, ok := d.pos[path[:i]]; ok {
				return p
			}
		}
	}
	return d.pos[""]
}

// resolve follows aliases and charges the node budget.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	d.budget--
	if d.budget == 0 {
		d.errs.add(FieldError{Line: n.Line, Column: n.Column, Message: "spec is too complex: too many nodes after expanding aliases",
			Hint: "write the values out instead of reusing them with anchors and aliases"})
		d.failed = append(d.failed, "")
	}
	return n
}

// stopped reports whether decoding should stop: the node budget is spent or
// the problem list is full. It is only asked while input remains, so a full
// list means problems may go unreported, which the error then says.
func (d *decoder) stopped() bool {
	if d.errs.full() {
		d.errs.truncated = true
		return true
	}
	return d.budget <= 0
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.AliasNode || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names a node's value for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!str":
			v := n.Value
			if len(v) > 40 {
				v = v[:40] + "..."
			}
			return strconv.Quote(v)
		}
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return v
	}
	return "an alias"
}

// keyPath appends a map key to a path: env.GREETING, or env["odd key"] when
// the key has characters that would make the path ambiguous.
func keyPath(prefix, key string) string {
	simple := key != ""
	for i := 0; i < len(key) && simple; i++ {
		c := key[i]
		simple = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-./", c) >= 0
	}
	if !simple {
		return prefix + "[" + strconv.Quote(key) + "]"
	}
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// key reads a mapping key; ok is false (after reporting) for keys that are
// not plain strings.
func (d *decoder) key(k *yaml.Node, path string) (string, bool) {
	switch {
	case k.Kind != yaml.ScalarNode:
		d.errorAt(k, path, "keys are plain names", "a key must be a string, got %s", describe(k))
	case k.ShortTag() == "!!merge":
		d.errorAt(k, path, "write the fields out instead", "merge keys (<<) are not supported")
	case k.ShortTag() == "!!null":
		d.errorAt(k, path, `quote it if you mean the text, e.g. "~"`, "a key must not be empty")
	case !utf8.ValidString(k.Value):
		d.errorAt(k, path, "", "key must be valid UTF-8")
	case strings.IndexFunc(k.Value, unreadable) >= 0:
		d.errorAt(k, path, "remove it", "key contains the control character %U", firstRune(k.Value, unreadable))
	default:
		return k.Value, true
	}
	return "", false
}

// fields walks mapping n at path, reporting duplicate and unknown keys, and
// calls set for each known key whose value is not null (null means absent).
func (d *decoder) fields(n *yaml.Node, path string, known []string, set func(key string, v *yaml.Node, p string)) bool {
	n = d.resolve(n)
	if n.Kind != yaml.MappingNode {
		if path == "" {
			d.errorAt(n, path, "start with name: and image: lines", "a spec must be a mapping of fields, got %s", describe(n))
		} else {
			d.errorAt(n, path, "write key: value lines (or {key: value})", "must be a mapping, got %s", describe(n))
		}
		return false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content) && !d.stopped(); i += 2 {
		k, v := d.resolve(n.Content[i]), n.Content[i+1]
		key, ok := d.key(k, path)
		if !ok {
			continue
		}
		p := keyPath(path, key)
		if line, dup := seen[key]; dup {
			d.errorAt(k, p, "remove one of them", "set twice (first on line %d)", line)
			continue
		}
		seen[key] = k.Line
		if !contains(known, key) {
			hint := "known fields here: " + strings.Join(known, ", ")
			if m := suggest(key, known); m != "" {
				hint = "did you mean " + m + "?"
			}
			d.errorAt(k, p, hint, "unknown field")
			continue
		}
		d.pos[p] = position{v.Line, v.Column}
		if v = d.resolve(v); isNull(v) {
			continue
		}
		set(key, v, p)
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// str reads a scalar as text, as written: numbers and booleans are accepted
// where a string is expected (user: 1000, port: 8080).
func (d *decoder) str(n *yaml.Node, p string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.errorAt(n, p, "", "must be a string, got %s", describe(n))
		return "", false
	}
	if !utf8.ValidString(n.Value) {
		d.errorAt(n, p, "", "must be valid UTF-8")
		return "", false
	}
	if strings.IndexFunc(n.Value, unreadable) >= 0 {
		d.errorAt(n, p, "remove it", "contains the control character %U", firstRune(n.Value, unreadable))
		return "", false
	}
	return n.Value, true
}

// unreadable reports runes that YAML escapes can produce but YAML (and so
// Parse) cannot read back raw, while encoding/json writes them raw: DEL, the
// C1 controls (NEL, U+0085, even reads as a line break), U+FFFE and U+FFFF.
// Refusing them keeps every parsed spec readable again from its JSON form.
func unreadable(r rune) bool {
	return r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0xfffe || r == 0xffff
}

// strList reads a list of strings; an empty list reads as nil.
func (d *decoder) strList(n *yaml.Node, p string) []string {
	if n.Kind != yaml.SequenceNode {
		hint := ""
		if n.Kind == yaml.ScalarNode && len(n.Value) < 200 {
			parts := strings.Fields(n.Value)
			for i := range parts {
				parts[i] = strconv.Quote(parts[i])
			}
			hint = "write it as a list: [" + strings.Join(parts, ", ") + "]"
		}
		d.errorAt(n, p, hint, "must be a list of strings, got %s", describe(n))
		return nil
	}
	var out []string
	for i, e := range n.Content {
		if d.stopped() {
			break
		}
		ep := fmt.Sprintf("%s[%d]", p, i)
		d.pos[ep] = position{e.Line, e.Column}
		if s, ok := d.str(d.resolve(e), ep); ok {
			out = append(out, s)
		}
	}
	return out
}

// strMap reads a mapping of strings (env, labels); an empty one reads as nil.
// A null value reads as "".
func (d *decoder) strMap(n *yaml.Node, p string) map[string]string {
	n = d.resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorAt(n, p, "write NAME: value lines (or {NAME: value})", "must be a mapping, got %s", describe(n))
		return nil
	}
	var out map[string]string
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content) && !d.stopped(); i += 2 {
		k, v := d.resolve(n.Content[i]), d.resolve(n.Content[i+1])
		key, ok := d.key(k, p)
		if !ok {
			continue
		}
		kp := keyPath(p, key)
		if line, dup := seen[key]; dup {
			d.errorAt(k, kp, "remove one of them", "set twice (first on line %d)", line)
			continue
		}
		seen[key] = k.Line
		d.pos[kp] = position{k.Line, k.Column}
		val := ""
		if !isNull(v) {
			if val, ok = d.str(v, kp); !ok {
				continue
			}
		}
		if out == nil {
			out = map[string]string{}
		}
		out[key] = val
	}
	return out
}

// integer reads a whole number written as a YAML integer.
func (d *decoder) integer(n *yaml.Node, p string) (int, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err == nil && int64(int(v)) == v {
			return int(v), true
		}
		d.errorAt(n, p, "", "number %s is out of range", describe(n))
		return 0, false
	}
	hint := ""
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		if _, err := strconv.ParseInt(strings.TrimSpace(n.Value), 10, 64); err == nil {
			hint = "remove the quotes"
		}
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" && strings.Trim(n.Value, "+-0123456789") == "" {
		d.errorAt(n, p, "", "number %s is out of range", n.Value)
		return 0, false
	}
	d.errorAt(n, p, hint, "must be a whole number, got %s", describe(n))
	return 0, false
}

// boolean reads true/false (and YAML 1.1's yes/no/on/off).
func (d *decoder) boolean(n *yaml.Node, p string) (bool, bool) {
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON":
			return true, true
		case "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF":
			return false, true
		}
	}
	d.errorAt(n, p, "", "must be true or false, got %s", describe(n))
	return false, false
}

// quantityScalar returns the text of a number or string scalar.
func (d *decoder) quantityScalar(n *yaml.Node, p, hint string) (string, bool) {
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!int", "!!float", "!!str":
			return n.Value, true
		}
	}
	d.errorAt(n, p, hint, "must be a number or a string, got %s", describe(n))
	return "", false
}

// valueErrorAt reports a *valueError from a parse function.
func (d *decoder) valueErrorAt(n *yaml.Node, p string, err error) {
	var ve *valueError
	if errors.As(err, &ve) {
		d.errorAt(n, p, ve.Hint, "%s, got %s", ve.Msg, describe(n))
		return
	}
	d.errorAt(n, p, "", "%v", err)
}

func (d *decoder) duration(n *yaml.Node, p string) (Duration, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorAt(n, p, durationHint, "must be a duration, got %s", describe(n))
		return 0, false
	}
	v, err := durationFromScalar(n.Value, n.ShortTag())
	if err != nil {
		d.valueErrorAt(n, p, err)
		return 0, false
	}
	return v, true
}

// firstRune returns the first rune of s for which f is true.
func firstRune(s string, f func(rune) bool) rune {
	for _, r := range s {
		if f(r) {
			return r
		}
	}
	return 0
}
