package state

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
)

func TestSecretKeySealOpen(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadSecretKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, SecretKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Fatalf("key file = %v, %v; want 32 bytes, mode 0600", st, err)
	}
	value := []byte("hunter2-value")
	a, err := k.Seal("db-password", value)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := k.Seal("db-password", value)
	if bytes.Equal(a, b) || bytes.Contains(a, value) {
		t.Error("two seals of one value are equal, or hold the plaintext: the nonce is not random")
	}
	if got, err := k.Open("db-password", a); err != nil || string(got) != string(value) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k.Open("other-name", a); err == nil {
		t.Error("a value opened under another name: the name is not bound as additional data")
	}
	// Loading again reads the same key.
	k2, err := LoadSecretKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.Open("db-password", a); err != nil || string(got) != string(value) {
		t.Fatalf("Open with the reloaded key = %q, %v", got, err)
	}
	// Another data dir has another key: opening fails and says what to do.
	other, err := LoadSecretKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.Open("db-password", a)
	if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "cannot be decrypted") {
		t.Errorf("Open with the wrong key: %v", err)
	}
	if _, err := k.Seal("big", make([]byte, MaxSecretSize+1)); !errdefs.IsInvalid(err) {
		t.Errorf("Seal of %d bytes: %v, want invalid", MaxSecretSize+1, err)
	}
}

func TestSecretKeyFileRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, SecretKeyFile)
	if err := os.WriteFile(path, make([]byte, 32), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecretKey(dir); !errors.Is(err, errdefs.ErrPermission) || !strings.Contains(err.Error(), "0644") {
		t.Errorf("world-readable key: %v, want a permission error naming the mode", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, 16), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecretKey(dir); !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "not 32 bytes") {
		t.Errorf("short key: %v, want invalid naming the size", err)
	}
	if err := os.WriteFile(path, make([]byte, 33), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecretKey(dir); !errdefs.IsInvalid(err) {
		t.Errorf("long key: %v, want invalid", err)
	}
}

func TestSecretsInState(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadSecretKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const plain = "s3cr3t-plaintext-value"
	s := openStore(t, dir, func(c *Config) { c.TrailingLogs = 1 })
	sealed, _ := k.Seal("db-password", []byte(plain))
	apply(t, s, PutSecret{Name: "db-password", Sealed: sealed})

	svc := webSpec("busybox", 1)
	svc.Secrets = map[string]string{"DB_PASSWORD": "db-password"}
	missing := webSpec("busybox", 1)
	missing.Name = "api"
	missing.Secrets = map[string]string{"API_KEY": "api-key"}
	_, err = s.Apply(t.Context(), PutService{Service: Service{Spec: missing}})
	if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "secrets.API_KEY") || !strings.Contains(err.Error(), "gantry secret set api-key") {
		t.Errorf("service with a missing secret: %v", err)
	}
	apply(t, s, PutService{Service: Service{Spec: svc}})

	sealed2, _ := k.Seal("db-password", []byte(plain))
	apply(t, s, PutSecret{Name: "db-password", Sealed: sealed2})
	sec, err := s.Secret("db-password")
	if err != nil || sec.Version != 2 || sec.CreatedAt.IsZero() || sec.UpdatedAt.Before(sec.CreatedAt) || sec.CreateIndex >= sec.ModifyIndex {
		t.Fatalf("secret after replace = %+v, %v", sec, err)
	}
	if !bytes.Equal(sec.Previous, sealed) {
		t.Error("a replace does not keep the previous sealed value")
	}
	if got, err := k.Open("db-password", sec.Sealed); err != nil || string(got) != plain {
		t.Fatalf("stored value opens to %q, %v", got, err)
	}
	_, err = s.Apply(t.Context(), DeleteSecret{Name: "db-password"})
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "web") {
		t.Errorf("delete of a referenced secret: %v, want conflict naming web", err)
	}
	if _, err := s.Apply(t.Context(), DeleteSecret{Name: "nope"}); !errdefs.IsNotFound(err) {
		t.Errorf("delete missing: %v", err)
	}
	if _, err := s.Apply(t.Context(), PutSecret{Name: "Bad/Name", Sealed: sealed}); !errdefs.IsInvalid(err) {
		t.Errorf("bad name: %v", err)
	}
	if _, err := s.Apply(t.Context(), PutSecret{Name: "short", Sealed: []byte("x")}); !errdefs.IsInvalid(err) {
		t.Errorf("not sealed: %v", err)
	}
	list, users := s.Secrets()
	if len(list) != 1 || !slices.Equal(users["db-password"], []string{"web"}) {
		t.Errorf("Secrets = %v, users %v", list, users)
	}

	// Snapshot, reopen from it: the secret is back, still sealed.
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	apply(t, s, AppendEvent{Event: Event{Type: "X"}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir)
	sec2, err := s2.Secret("db-password")
	if err != nil || !bytes.Equal(sec2.Sealed, sealed2) || sec2.Version != 2 {
		t.Fatalf("secret after restore = %+v, %v", sec2, err)
	}
	apply(t, s2, DeleteService{Name: "web"})
	apply(t, s2, DeleteSecret{Name: "db-password"})
	if _, err := s2.Secret("db-password"); !errdefs.IsNotFound(err) {
		t.Errorf("after delete: %v", err)
	}
	if len(finishedSnapshots(t, dir)) == 0 {
		t.Fatal("no snapshot was written; the test did not look at one")
	}
	// Neither the log nor the snapshots hold the plaintext.
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(plain)) {
			t.Errorf("%s contains the secret's plaintext", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSecretKeyDerive(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadSecretKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadSecretKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadSecretKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, b := k.Derive("approvals"), k.Derive("other purpose")
	if len(a) != 32 || bytes.Equal(a, b) {
		t.Fatalf("labels must give different 32-byte keys: %x %x", a, b)
	}
	if !bytes.Equal(a, again.Derive("approvals")) {
		t.Fatal("the same key file must derive the same key after a restart")
	}
	if bytes.Equal(a, other.Derive("approvals")) {
		t.Fatal("another key file derived the same key")
	}
	raw, err := os.ReadFile(filepath.Join(dir, SecretKeyFile))
	if err != nil || bytes.Contains(a, raw) || bytes.Equal(a, raw) {
		t.Fatal("a derived key must not be the key itself")
	}
}

// Several processes starting on a fresh data dir at once: each gets the
// same complete key, never a partial one (the key used to be created in
// place, so a reader could see it empty, as a crash mid-write left it for
// good), and no temporary file stays behind.
func TestSecretKeyCreatedAtomically(t *testing.T) {
	for range 50 {
		dir := t.TempDir()
		keys := make([]*SecretKey, 4)
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				keys[i], errs[i] = LoadSecretKey(dir)
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("concurrent LoadSecretKey %d: %v", i, err)
			}
		}
		sealed, err := keys[0].Seal("s", []byte("value"))
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys[1:] {
			if _, err := k.Open("s", sealed); err != nil {
				t.Fatalf("LoadSecretKey %d got another key: %v", i+1, err)
			}
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 || entries[0].Name() != SecretKeyFile {
			t.Fatalf("data dir holds %v, want only %s", entries, SecretKeyFile)
		}
		if st, err := os.Stat(filepath.Join(dir, SecretKeyFile)); err != nil || st.Mode().Perm() != 0o600 || st.Size() != 32 {
			t.Fatalf("key file: %v, %v", st, err)
		}
	}
}
