package mcp

import (
	"strings"
	"testing"
)

// set_secret's value argument is redacted although "value" is no
// secret-looking key name; a value deeper down (a label's) is kept.
func TestRedactSecretValue(t *testing.T) {
	got := redactString(t, `{"name":"db-password","value":"hunter2-x","dry_run":true}`)
	if strings.Contains(got, "hunter2-x") || !strings.Contains(got, `"value":"[redacted]"`) || !strings.Contains(got, `"name":"db-password"`) {
		t.Errorf("redacted set_secret arguments = %s", got)
	}
	got = redactString(t, `{"Value":"hunter2-x"}`)
	if strings.Contains(got, "hunter2-x") {
		t.Errorf("Value in another case was kept: %s", got)
	}
	got = redactString(t, `{"spec":{"labels":{"value":"keep-me"}}}`)
	if !strings.Contains(got, "keep-me") {
		t.Errorf("a nested value key was redacted: %s", got)
	}
}

// snapshot_restore's data (the whole state) is recorded as its size only.
func TestRedactSnapshotData(t *testing.T) {
	got := redactString(t, `{"data":"H4sIAAAAAAAA/2xhZ2FudHJ5LXN0YXRl","dry_run":true}`)
	if strings.Contains(got, "H4sI") || !strings.Contains(got, `"data":"[redacted: 32 bytes]"`) {
		t.Errorf("redacted snapshot_restore arguments = %s", got)
	}
}
