package mcp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
)

// toolError is an error whose message is already the final tool error text:
// what is wrong, then how to fix it. cat is its errdefs category.
type toolError struct {
	msg string
	cat error
}

func (e *toolError) Error() string { return e.msg }
func (e *toolError) Unwrap() error { return e.cat }

// invalidf reports bad input; the message must say how to fix it.
func invalidf(format string, args ...any) error {
	return &toolError{msg: fmt.Sprintf(format, args...), cat: errdefs.ErrInvalid}
}

// Input limits.
const (
	maxReplicas   = 1000
	defaultTail   = 100
	maxTail       = 5000
	maxSpecBytes  = 1 << 20
	maxRefLength  = 512
	maxPathLength = 4096
	maxIDLength   = 128
)

var (
	dnsLabel   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	instanceID = regexp.MustCompile(`^[a-z0-9][-a-z0-9_.]*$`)
)

// validateName checks that name is a service name: a DNS label.
func validateName(name string) error {
	const rule = "a service name is a DNS label: 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit, e.g. \"web\""
	switch {
	case name == "":
		return invalidf("missing service name: pass name, e.g. \"web\" (list services with list_services)")
	case strings.HasPrefix(name, "-"):
		return invalidf("invalid service name %s: it looks like a command-line flag; %s", quote(name), rule)
	case strings.ContainsAny(name, `/\`) || strings.Contains(name, ".."):
		return invalidf("invalid service name %s: it looks like a path; %s", quote(name), rule)
	case len(name) > 63 || !dnsLabel.MatchString(name):
		return invalidf("invalid service name %s: %s", quote(name), rule)
	}
	return nil
}

// validateInstanceID checks the shape of an instance ID such as "web-0-3f9a2c".
func validateInstanceID(id string) error {
	if strings.HasPrefix(id, "-") || len(id) > maxIDLength || !instanceID.MatchString(id) || strings.Contains(id, "..") {
		return invalidf("invalid instance ID %s: instance IDs look like \"web-0-3f9a2c\"; get them from get_service", quote(id))
	}
	return nil
}

func validateReplicas(n int) error {
	if n < 0 || n > maxReplicas {
		return invalidf("invalid replicas %d: must be between 0 and %d", n, maxReplicas)
	}
	return nil
}

func validateTail(n int) (int, error) {
	switch {
	case n < 0 || n > maxTail:
		return 0, invalidf("invalid tail %d: must be between 0 and %d (0 means the default, %d lines)", n, maxTail, defaultTail)
	case n == 0:
		return defaultTail, nil
	}
	return n, nil
}

func validateRef(ref string) error {
	switch {
	case ref == "":
		return invalidf("missing image reference: pass ref, e.g. \"127.0.0.1:5000/demo/web:1\"")
	case strings.HasPrefix(ref, "-"):
		return invalidf("invalid image reference %s: it looks like a command-line flag; pass a reference such as \"busybox:1.36\"", quote(ref))
	case len(ref) > maxRefLength || strings.IndexFunc(ref, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		return invalidf("invalid image reference %s: references have no spaces or control characters and are at most %d characters, e.g. \"busybox:1.36\"", quote(ref), maxRefLength)
	}
	return nil
}

func validatePath(path string) error {
	switch {
	case path == "":
		return invalidf("missing path: pass the absolute path, on the server's host, of a docker save or OCI layout tarball")
	case len(path) > maxPathLength || strings.ContainsRune(path, 0):
		return invalidf("invalid path %s: too long or contains a NUL byte", quote(path))
	case !filepath.IsAbs(path):
		return invalidf("invalid path %s: it must be absolute (start with /) because it is read on the server's host, e.g. \"/tmp/web.tar\"", quote(path))
	}
	return nil
}

// quote quotes s for an error message, shortening long values.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// specError renders a spec validation failure: every problem with its field
// path and, for YAML text, its line.
func specError(err error, withLines bool) error {
	ve, ok := spec.AsValidationError(err)
	if !ok {
		return &toolError{
			msg: fmt.Sprintf("the spec is invalid: %v; nothing was changed: fix the spec and call deploy again", err),
			cat: errdefs.ErrInvalid,
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the spec is invalid (%d problem%s); nothing was changed. Fix each problem and call deploy again:", len(ve.Errors), plural(len(ve.Errors)))
	for _, fe := range ve.Errors {
		b.WriteString("\n- ")
		if withLines && fe.Line > 0 {
			fmt.Fprintf(&b, "line %d", fe.Line)
			if fe.Column > 0 {
				fmt.Fprintf(&b, ", column %d", fe.Column)
			}
			b.WriteString(": ")
		}
		b.WriteString(fe.Error())
	}
	if len(ve.Errors) == 0 {
		fmt.Fprintf(&b, "\n- %v", err)
	}
	return &toolError{msg: b.String(), cat: errdefs.ErrInvalid}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// errorHint says how to recover from a backend error of a given tool.
type errorHint struct {
	// subject names the object for a not-found message, e.g. `service "web"`;
	// when empty the backend's message is used as is.
	subject  string
	notFound string
}

// describe turns a backend error into tool error text that starts with what
// is wrong and ends with how to fix it.
func describe(tool string, err error, h errorHint) error {
	var te *toolError
	if errors.As(err, &te) {
		return err
	}
	if _, ok := spec.AsValidationError(err); ok {
		return specError(err, true)
	}
	var he *errdefs.HintError
	if errors.As(err, &he) && he.Hint != "" {
		// The backend already says how to fix it.
		return &toolError{msg: err.Error(), cat: category(err)}
	}
	var msg string
	switch {
	case errdefs.IsNotFound(err):
		if h.subject != "" {
			msg = fmt.Sprintf("%s not found: %s", h.subject, h.notFound)
		} else {
			msg = fmt.Sprintf("%v: %s", err, h.notFound)
		}
	case errdefs.IsInvalid(err):
		msg = fmt.Sprintf("%v: correct the arguments and call %s again", err, tool)
	case errdefs.IsConflict(err):
		msg = fmt.Sprintf("%v: the object changed at the same time or already exists; read the current state with get_service or list_services and retry", err)
	case errdefs.IsUnavailable(err):
		msg = fmt.Sprintf("%v: the cluster cannot do this right now (no leader, node down or shutting down); retry in a few seconds", err)
	case errors.Is(err, errdefs.ErrPermission) && errors.Is(err, fs.ErrPermission):
		msg = fmt.Sprintf("%v: the gantry server lacks the privileges for this; run it as root", err)
	case errors.Is(err, errdefs.ErrPermission):
		// A refusal by gantry's own rules (say, deciding one's own
		// approval): its message says who may do it; root would not help.
		msg = err.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("%s was cancelled before it finished (%v): the change may be partly applied; check with list_services", tool, err)
	default:
		msg = fmt.Sprintf("%v (internal error in %s: the server log has details; retry, and report a bug if it persists)", err, tool)
	}
	return &toolError{msg: msg, cat: category(err)}
}

// category returns the errdefs category of err, or nil.
func category(err error) error {
	for _, c := range []error{errdefs.ErrNotFound, errdefs.ErrInvalid, errdefs.ErrConflict, errdefs.ErrUnavailable, errdefs.ErrPermission} {
		if errors.Is(err, c) {
			return c
		}
	}
	return nil
}

func serviceNotFound(name string) errorHint {
	return errorHint{subject: fmt.Sprintf("service %q", name), notFound: "list services with list_services (gantry ps)"}
}
