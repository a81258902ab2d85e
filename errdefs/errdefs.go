// Package errdefs holds Gantry's error categories. Packages wrap these with
// the object they concern (fmt.Errorf("service %q: %w", name, errdefs.ErrNotFound));
// the API edge (MCP tool errors, CLI exit codes) maps categories to responses.
package errdefs

import (
	"errors"
	"fmt"
)

// Error categories.
var (
	ErrNotFound    = errors.New("not found")
	ErrInvalid     = errors.New("invalid argument")
	ErrConflict    = errors.New("conflict")
	ErrUnavailable = errors.New("unavailable")
	ErrPermission  = errors.New("permission denied")
)

// HintError is an error with a hint telling the user how to fix it.
type HintError struct {
	Err  error
	Hint string
}

func (e *HintError) Error() string {
	if e.Hint == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%v (hint: %s)", e.Err, e.Hint)
}

func (e *HintError) Unwrap() error { return e.Err }

// WithHint wraps err with a hint.
func WithHint(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &HintError{Err: err, Hint: hint}
}

// IsNotFound reports whether err is in the not-found category.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsInvalid reports whether err is in the invalid-argument category.
func IsInvalid(err error) bool { return errors.Is(err, ErrInvalid) }

// IsConflict reports whether err is in the conflict category.
func IsConflict(err error) bool { return errors.Is(err, ErrConflict) }

// IsUnavailable reports whether err is in the unavailable category.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }
