package cluster

import "testing"

func TestSplitHint(t *testing.T) {
	for _, tc := range []struct{ in, msg, hint string }{
		{`no node can run an instance of "web" (a: memory 1 GiB of 2 GiB reserved, 4 GiB asked): unavailable (hint: lower the service's resources)`,
			`no node can run an instance of "web" (a: memory 1 GiB of 2 GiB reserved, 4 GiB asked)`, "lower the service's resources"},
		{"no nodes in the cluster: unavailable", "no nodes in the cluster", ""},
		{"something else", "something else", ""},
	} {
		if msg, hint := splitHint(tc.in); msg != tc.msg || hint != tc.hint {
			t.Errorf("splitHint(%q) = %q, %q; want %q, %q", tc.in, msg, hint, tc.msg, tc.hint)
		}
	}
}
