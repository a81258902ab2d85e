package mcp

import "time"

// SetConfirmTimeout sets how long a confirmation is waited for, for a test;
// it returns a function that restores it.
func SetConfirmTimeout(d time.Duration) func() {
	old := confirmTimeout
	confirmTimeout = d
	return func() { confirmTimeout = old }
}
