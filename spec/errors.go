package spec

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/gantry-dev/gantry/errdefs"
)

// maxProblems bounds how many problems one ValidationError reports, so a
// pathological input (say, 100 000 bad env keys) yields a readable error.
const maxProblems = 100

// FieldError is one problem with one field of a spec.
type FieldError struct {
	// Path is the field path users see, e.g. "ports[0].host_port" or
	// "env.GREETING". Empty for problems with the document as a whole.
	Path string
	// Line and Column locate the field in the source text (1-based); zero
	// when unknown, as for specs built in code.
	Line, Column int
	// Message says what is wrong, Hint how to fix it (may be empty).
	Message, Hint string
}

// Error renders the problem without its file position:
// "replicas: must be between 0 and 1000, got -1 (hint: ...)".
func (e FieldError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// ValidationError lists every problem found in one spec. It is in the
// errdefs.ErrInvalid category.
type ValidationError struct {
	File   string // file name given to Parse; empty for Validate
	Errors []FieldError
}

// Error renders one line per problem, prefixed with file:line:column where
// known, like a compiler: "web.yaml:7:11: replicas: must be ...".
func (e *ValidationError) Error() string {
	if len(e.Errors) == 0 {
		return e.prefix(0, 0) + "invalid service spec"
	}
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = e.prefix(fe.Line, fe.Column) + fe.Error()
	}
	return strings.Join(lines, "\n")
}

func (e *ValidationError) prefix(line, col int) string {
	p := e.File
	if line > 0 {
		p += fmt.Sprintf(":%d", line)
		if col > 0 {
			p += fmt.Sprintf(":%d", col)
		}
		p = strings.TrimPrefix(p, ":")
	}
	if p == "" {
		return ""
	}
	return p + ": "
}

// Is makes errors.Is(err, errdefs.ErrInvalid) true: a bad spec is always the
// caller's invalid argument.
func (e *ValidationError) Is(target error) bool { return target == errdefs.ErrInvalid }

// AsValidationError returns the *ValidationError inside err, if any.
func AsValidationError(err error) (*ValidationError, bool) {
	var ve *ValidationError
	ok := errors.As(err, &ve)
	return ve, ok
}

// problems collects FieldErrors up to maxProblems.
type problems struct {
	list      []FieldError
	truncated bool
}

func (p *problems) add(fe FieldError) {
	if len(p.list) >= maxProblems {
		p.truncated = true
		return
	}
	p.list = append(p.list, fe)
}

func (p *problems) full() bool { return len(p.list) >= maxProblems }

// sortByPosition orders problems as they appear in the file; problems without
// a position keep their relative order at the end.
func sortByPosition(list []FieldError) {
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if (a.Line == 0) != (b.Line == 0) {
			return a.Line != 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// truncatedProblem is appended when more than maxProblems were found.
var truncatedProblem = FieldError{
	Message: fmt.Sprintf("too many problems; only the first %d are shown", maxProblems),
	Hint:    "fix these and run again",
}
