package rpc

import (
	"fmt"
	"testing"
	"time"
)

// A join flood from many sources cannot grow the limiter without bound:
// past maxBuckets live buckets, newcomers are refused until old ones
// refill; and an IPv6 host's whole /64 shares one bucket.
func TestLimiterBoundedUnderFlood(t *testing.T) {
	t.Parallel()
	l := newLimiter(2, time.Second)
	now := time.Unix(1000, 0)
	for i := range maxBuckets + 1000 {
		l.allow(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), now)
	}
	if n := len(l.buckets); n > maxBuckets {
		t.Errorf("%d buckets after a flood, want at most %d", n, maxBuckets)
	}
	if _, ok := l.allow("192.0.2.1", now); ok {
		t.Error("a newcomer was let in while every bucket is in use")
	}
	if _, ok := l.allow("192.0.2.1", now.Add(10*time.Second)); !ok {
		t.Error("a newcomer is still refused once the old buckets refilled")
	}
	if a, b := limitKey("2001:db8::1"), limitKey("2001:db8::ffff:1"); a != b || a != "2001:db8::/64" {
		t.Errorf("IPv6 keys %q %q, want one /64", a, b)
	}
	if k := limitKey("10.0.0.1"); k != "10.0.0.1" {
		t.Errorf("IPv4 key %q", k)
	}
	if k := limitKey("garbage"); k != "garbage" {
		t.Errorf("unparsable key %q", k)
	}
}
