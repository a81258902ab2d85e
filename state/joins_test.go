package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

func joinHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func putJoin(id, role string, ttl time.Duration, maxUses int) PutJoinToken {
	return PutJoinToken{ID: id, Role: role, SecretHash: joinHash("secret-" + id),
		ExpiresAt: time.Now().Add(ttl), MaxUses: maxUses, CreatedBy: "admin"}
}

func useJoin(id, node string) UseJoinToken {
	return UseJoinToken{ID: id, SecretHash: joinHash("secret-" + id), Node: node}
}

// refused applies op and checks that it fails with ErrPermission naming want.
func refused(t *testing.T, s *Store, op Op, want string) {
	t.Helper()
	_, err := s.Apply(context.Background(), op)
	if !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), want) {
		t.Errorf("Apply(%+v) = %v, want permission denied with %q", op, err, want)
	}
}

func TestJoinTokenOps(t *testing.T) {
	s := openStore(t, t.TempDir())
	idx := apply(t, s, putJoin("tokworker1", JoinRoleWorker, time.Hour, 2))
	got, err := s.JoinToken("tokworker1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Role != JoinRoleWorker || got.MaxUses != 2 || got.Uses != 0 || got.CreatedBy != "admin" ||
		got.CreateIndex != idx || got.CreatedAt.IsZero() || !got.Usable(time.Now()) {
		t.Errorf("stored %+v", got)
	}
	if _, err := s.Apply(context.Background(), putJoin("tokworker1", JoinRoleWorker, time.Hour, 0)); !errdefs.IsConflict(err) {
		t.Errorf("second put of the same ID: %v, want conflict", err)
	}

	// Wrong secret, wrong role: refused, and no use counted.
	refused(t, s, UseJoinToken{ID: "tokworker1", SecretHash: joinHash("guess"), Node: "w1"}, "the secret is wrong")
	wrongRole := useJoin("tokworker1", "s1")
	wrongRole.Role = JoinRoleServer
	refused(t, s, wrongRole, "is for a worker, not a server")
	refused(t, s, useJoin("nosuchtokn", "w1"), "unknown to this cluster")

	// Two uses, then used up.
	apply(t, s, useJoin("tokworker1", "w1"))
	ok := useJoin("tokworker1", "w2")
	ok.Role = JoinRoleWorker
	apply(t, s, ok)
	refused(t, s, useJoin("tokworker1", "w3"), "used up (2 of 2 uses, the last by w2)")
	got, _ = s.JoinToken("tokworker1")
	if got.Uses != 2 || got.LastUsedBy != "w2" || got.LastUsedAt.IsZero() || got.Usable(time.Now()) {
		t.Errorf("after two uses: %+v", got)
	}

	// Revoked: refused; revoking again is a no-op; revoking a missing one is not found.
	apply(t, s, putJoin("tokserver1", JoinRoleServer, time.Hour, 0))
	apply(t, s, useJoin("tokserver1", "s2"))
	apply(t, s, RevokeJoinToken{ID: "tokserver1", By: "alice"})
	refused(t, s, useJoin("tokserver1", "s3"), "was revoked at")
	refused(t, s, useJoin("tokserver1", "s3"), "by alice")
	before, _ := s.JoinToken("tokserver1")
	apply(t, s, RevokeJoinToken{ID: "tokserver1", By: "bob"})
	if after, _ := s.JoinToken("tokserver1"); after.RevokedBy != "alice" || after.ModifyIndex != before.ModifyIndex {
		t.Errorf("second revoke changed the token: %+v", after)
	}
	if _, err := s.Apply(context.Background(), RevokeJoinToken{ID: "nosuchtokn"}); !errdefs.IsNotFound(err) {
		t.Errorf("revoke of a missing token: %v", err)
	}

	// Expired: refused with when.
	apply(t, s, putJoin("tokshort01", JoinRoleWorker, 150*time.Millisecond, 0))
	time.Sleep(200 * time.Millisecond)
	refused(t, s, useJoin("tokshort01", "w4"), "expired at")

	if _, err := s.Apply(context.Background(), putJoin("tokpast001", JoinRoleWorker, -time.Minute, 0)); !errdefs.IsInvalid(err) ||
		!strings.Contains(err.Error(), "before it is created") {
		t.Errorf("put of an already expired token: %v", err)
	}

	list := s.JoinTokens()
	if len(list) != 3 || list[0].ID != "tokworker1" || list[1].ID != "tokserver1" || list[2].ID != "tokshort01" {
		t.Errorf("JoinTokens = %v", list)
	}
	list[0].Uses = 99
	if again, _ := s.JoinToken("tokworker1"); again.Uses != 2 {
		t.Error("JoinTokens returned the stored row, not a copy")
	}
	if _, err := s.JoinToken("nosuchtokn"); !errdefs.IsNotFound(err) {
		t.Errorf("JoinToken of a missing ID: %v", err)
	}
}

func TestJoinTokenValidation(t *testing.T) {
	s := openStore(t, t.TempDir())
	good := putJoin("tokvalid01", JoinRoleWorker, time.Hour, 0)
	for name, tc := range map[string]struct {
		op   Op
		want string
	}{
		"no id":        {func() Op { o := good; o.ID = ""; return o }(), "id is empty"},
		"role":         {func() Op { o := good; o.Role = "admin"; return o }(), `role "admin" is unknown`},
		"hash":         {func() Op { o := good; o.SecretHash = "plain"; return o }(), "hex SHA-256"},
		"no expiry":    {func() Op { o := good; o.ExpiresAt = time.Time{}; return o }(), "must expire"},
		"uses":         {func() Op { o := good; o.MaxUses = -1; return o }(), "negative"},
		"use no node":  {UseJoinToken{ID: "x", SecretHash: joinHash("x")}, "node are required"},
		"use hash":     {UseJoinToken{ID: "x", SecretHash: "x", Node: "n"}, "hex SHA-256"},
		"revoke no id": {RevokeJoinToken{}, "id is empty"},
	} {
		if _, err := s.Apply(context.Background(), tc.op); !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want invalid with %q", name, err, tc.want)
		}
	}
}

func TestJoinTokenConcurrentUses(t *testing.T) {
	// Raft orders the uses: exactly MaxUses of many concurrent joins pass.
	s := openStore(t, t.TempDir())
	apply(t, s, putJoin("tokrace001", JoinRoleWorker, time.Hour, 3))
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Apply(context.Background(), useJoin("tokrace001", "w"+string(rune('a'+i))))
			if err == nil {
				mu.Lock()
				passed++
				mu.Unlock()
			} else if !errors.Is(err, errdefs.ErrPermission) {
				t.Errorf("use: %v", err)
			}
		}()
	}
	wg.Wait()
	if got, _ := s.JoinToken("tokrace001"); passed != 3 || got.Uses != 3 {
		t.Errorf("%d joins passed, %d uses recorded; want 3 and 3", passed, got.Uses)
	}
}

func TestJoinTokensSurviveSnapshot(t *testing.T) {
	dir := t.TempDir()
	small := func(c *Config) { c.TrailingLogs = 1 }
	s := openStore(t, dir, small)
	apply(t, s, putJoin("toksnap001", JoinRoleServer, time.Hour, 5))
	apply(t, s, useJoin("toksnap001", "s2"))
	apply(t, s, putJoin("toksnap002", JoinRoleWorker, time.Hour, 0), RevokeJoinToken{ID: "toksnap002", By: "admin"})
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	before := s.JoinTokens()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir, small)
	if after := s2.JoinTokens(); !reflect.DeepEqual(after, before) {
		t.Errorf("after restore:\n got %+v\nwant %+v", after, before)
	}
}

func TestJoinTokensForgottenADayAfterTheyEnd(t *testing.T) {
	s := openStore(t, t.TempDir())
	apply(t, s, putJoin("tokold0001", JoinRoleWorker, time.Hour, 0))
	// Apply stamps the leader's clock; a command from 26 hours later
	// (encoded directly) removes the token that expired 25 hours before.
	data, err := encodeCommand(time.Now().Add(26*time.Hour), []Op{PutJoinToken{ID: "toknew0001", Role: JoinRoleWorker,
		SecretHash: joinHash("x"), ExpiresAt: time.Now().Add(27 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	f := s.raft.Apply(data, 5*time.Second)
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	if err := f.Response().(*fsmResponse).err; err != nil {
		t.Fatal(err)
	}
	if _, err := s.JoinToken("tokold0001"); !errdefs.IsNotFound(err) {
		t.Errorf("token that ended 25 hours ago: %v, want forgotten", err)
	}
	if _, err := s.JoinToken("toknew0001"); err != nil {
		t.Error(err)
	}
}
