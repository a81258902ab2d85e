package state

import (
	"cmp"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
	memdb "github.com/hashicorp/go-memdb"
)

// Secrets.
//
// A secret is a named value that services receive as an environment variable
// (spec.Service.Secrets). The value is sealed with AES-256-GCM under the
// node's SecretKey before it is put in a Raft command, so the log, the
// snapshots and every read of the state hold only ciphertext; only code that
// holds the key (the API backend and the worker) can open it.

const tableSecrets = "secrets"

// Secret limits and the key file.
const (
	// MaxSecretSize is the largest secret value, in bytes.
	MaxSecretSize = 64 << 10
	// SecretKeyFile is the key's file name in the data dir.
	SecretKeyFile = "secrets.key"
	secretKeySize = 32 // AES-256
	gcmNonceSize  = 12
	gcmTagSize    = 16
)

// Secret is a stored secret: its sealed value and bookkeeping. Version
// counts the values it has had (1 on create).
type Secret struct {
	Name string `json:"name"`
	// Sealed is nonce || AES-256-GCM ciphertext and tag, with the name as
	// additional data: a value copied under another name does not open.
	Sealed []byte `json:"sealed"`
	// Previous is the value before the last replace, sealed the same way,
	// kept so that output written with it can still be scrubbed.
	Previous  []byte    `json:"previous,omitempty"`
	Version   uint64    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// PutSecret creates a secret or replaces its value. The FSM stamps the
// times, indexes and Version.
type PutSecret struct {
	Name   string `json:"name"`
	Sealed []byte `json:"sealed"`
}

// DeleteSecret removes a secret. It fails with errdefs.ErrConflict while a
// service's spec references it, and with errdefs.ErrNotFound when missing.
type DeleteSecret struct {
	Name string `json:"name"`
}

func (o PutSecret) wrap() wireOp    { return wireOp{PutSecret: &o} }
func (o DeleteSecret) wrap() wireOp { return wireOp{DeleteSecret: &o} }

func (o PutSecret) validate() error {
	if msg := spec.SecretNameProblem(o.Name); msg != "" {
		return invalid("put secret %q: name %s", o.Name, msg)
	}
	if n := len(o.Sealed); n < gcmNonceSize+gcmTagSize || n > gcmNonceSize+gcmTagSize+MaxSecretSize {
		return invalid("put secret %q: sealed value is %d bytes, not a sealed value of at most %d bytes", o.Name, n, MaxSecretSize)
	}
	return nil
}

func (o DeleteSecret) validate() error {
	if o.Name == "" {
		return invalid("delete secret: name is empty")
	}
	return nil
}

func secretsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableSecrets,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
		},
	}
}

func (a *applier) putSecret(op PutSecret) error {
	s := Secret{Name: op.Name, Sealed: op.Sealed, Version: 1, CreatedAt: a.now, UpdatedAt: a.now, CreateIndex: a.index, ModifyIndex: a.index}
	if old, _ := must(a.txn.First(tableSecrets, indexID, op.Name)).(*Secret); old != nil {
		s.Version, s.CreatedAt, s.CreateIndex, s.Previous = old.Version+1, old.CreatedAt, old.CreateIndex, old.Sealed
	}
	a.insert(tableSecrets, &s)
	return nil
}

func (a *applier) deleteSecret(op DeleteSecret) error {
	old := must(a.txn.First(tableSecrets, indexID, op.Name))
	if old == nil {
		return errdefs.WithHint(fmt.Errorf("secret %q: %w", op.Name, errdefs.ErrNotFound), "list secrets with gantry secret ls")
	}
	if users := secretUsers(collect[Service](must(a.txn.Get(tableServices, indexID)), nil))[op.Name]; len(users) > 0 {
		return errdefs.WithHint(fmt.Errorf("secret %q is used by service(s) %v: %w", op.Name, users, errdefs.ErrConflict),
			"remove it from their specs' secrets (or remove the services) first, then delete it")
	}
	check(a.txn.Delete(tableSecrets, old))
	return nil
}

// checkSecretRefs fails when sp references a secret that does not exist, so
// that no service is stored that its instances could not start with.
func (a *applier) checkSecretRefs(sp *spec.Service) error {
	for _, env := range sortedMapKeys(sp.Secrets) {
		name := sp.Secrets[env]
		if must(a.txn.First(tableSecrets, indexID, name)) == nil {
			return MissingSecretError(env, name)
		}
	}
	return nil
}

// MissingSecretError is the error for a spec whose secrets.<env> names a
// secret that does not exist.
func MissingSecretError(env, name string) error {
	return errdefs.WithHint(fmt.Errorf("secrets.%s: secret %q does not exist: %w", env, name, errdefs.ErrInvalid),
		fmt.Sprintf("create it first: gantry secret set %s (the value is read from stdin), or the set_secret tool", name))
}

// secretUsers maps each secret name to the sorted names of the services whose
// spec references it.
func secretUsers(services []*Service) map[string][]string {
	out := map[string][]string{}
	for _, svc := range services {
		seen := map[string]bool{}
		for _, name := range svc.Spec.Secrets {
			if !seen[name] {
				seen[name] = true
				out[name] = append(out[name], svc.Name)
			}
		}
	}
	for _, users := range out {
		sort.Strings(users)
	}
	return out
}

func sortedMapKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Secret returns the secret with the given name, or an errdefs.ErrNotFound
// error.
func (s *Store) Secret(name string) (*Secret, error) {
	sec, _ := must(s.txn().First(tableSecrets, indexID, name)).(*Secret)
	if sec == nil {
		return nil, errdefs.WithHint(fmt.Errorf("secret %q: %w", name, errdefs.ErrNotFound), "list secrets with gantry secret ls")
	}
	return clone(sec), nil
}

// Secrets returns every secret sorted by name, and the services that
// reference each (by secret name), read in one transaction.
func (s *Store) Secrets() ([]*Secret, map[string][]string) {
	txn := s.txn()
	out := collect[Secret](must(txn.Get(tableSecrets, indexID)), nil)
	slices.SortFunc(out, func(a, b *Secret) int { return cmp.Compare(a.Name, b.Name) })
	return cloneAll(out), secretUsers(collect[Service](must(txn.Get(tableServices, indexID)), nil))
}

// SecretKey seals and opens secret values. It is safe for concurrent use.
type SecretKey struct {
	path string
	aead cipher.AEAD
	mac  []byte // HMAC key for Derive, itself derived from the key
}

// LoadSecretKey reads <dataDir>/secrets.key, creating it (32 random bytes,
// mode 0600) when it does not exist. A key of the wrong size, or one that
// the group or others may read, is refused.
func LoadSecretKey(dataDir string) (*SecretKey, error) {
	path := filepath.Join(dataDir, SecretKeyFile)
	if err := createSecretKey(path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("secrets key %s is not a regular file: %w", path, errdefs.ErrInvalid)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, errdefs.WithHint(fmt.Errorf("secrets key %s has mode %04o: the group or others can read it: %w", path, perm, errdefs.ErrPermission),
			fmt.Sprintf("chmod 600 %s (and check who may have read it; if anyone did, the stored secrets should be set again under a new key)", path))
	}
	key := make([]byte, secretKeySize+1)
	n, err := io.ReadFull(f, key)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("secrets key %s: %w", path, err)
	}
	if n != secretKeySize {
		return nil, errdefs.WithHint(fmt.Errorf("secrets key %s is not %d bytes: %w", path, secretKeySize, errdefs.ErrInvalid),
			"restore the key this data dir was created with; without it the stored secrets cannot be opened")
	}
	return newSecretKey(path, key[:secretKeySize])
}

// createSecretKey writes a new random key at path unless a file is there.
// The key is written and synced in a temporary file first and then linked
// into place, which fails if path exists: path never holds a partial key,
// neither for a concurrent reader (another process starting on the same
// data dir) nor after a crash mid-write, which used to leave an empty key
// that refused every later start.
func createSecretKey(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return nil
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+SecretKeyFile+".new-*")
	if err != nil {
		return errdefs.WithHint(fmt.Errorf("create secrets key: %w", err), "--data-dir must be a writable directory")
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	key := make([]byte, secretKeySize)
	if _, err := rand.Read(key); err != nil {
		f.Close()
		return fmt.Errorf("create secrets key: %w", err)
	}
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(key)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create secrets key: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // another process made it first: use that one
		}
		return fmt.Errorf("create secrets key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the new name survives a crash
		d.Close()
	}
	return nil
}

func newSecretKey(path string, key []byte) (*SecretKey, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("gantry derive v1"))
	return &SecretKey{path: path, aead: aead, mac: m.Sum(nil)}, nil
}

// Derive returns a 32-byte key for another purpose, named by label: the
// HMAC-SHA256 of label under a key derived from the secrets key. Keys for
// different labels are independent, and none reveals the secrets key.
func (k *SecretKey) Derive(label string) []byte {
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// Seal encrypts value for the secret name: a random nonce followed by the
// ciphertext, with name as additional data.
func (k *SecretKey) Seal(name string, value []byte) ([]byte, error) {
	if len(value) > MaxSecretSize {
		return nil, errdefs.WithHint(fmt.Errorf("secret %q: value is %d bytes, more than %d: %w", name, len(value), MaxSecretSize, errdefs.ErrInvalid),
			"store large material (certificates bundles, files) elsewhere and keep only a credential in the secret")
	}
	out := make([]byte, gcmNonceSize, gcmNonceSize+len(value)+gcmTagSize)
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("seal secret %q: %w", name, err)
	}
	return k.aead.Seal(out, out, value, []byte(name)), nil
}

// Open decrypts what Seal returned for the same name.
func (k *SecretKey) Open(name string, sealed []byte) ([]byte, error) {
	if len(sealed) < gcmNonceSize+gcmTagSize {
		return nil, fmt.Errorf("secret %q: stored value is too short to be sealed: %w", name, errdefs.ErrInvalid)
	}
	out, err := k.aead.Open(nil, sealed[:gcmNonceSize], sealed[gcmNonceSize:], []byte(name))
	if err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("secret %q cannot be decrypted with the key in %s (a different key, or a damaged value): %w", name, k.path, errdefs.ErrInvalid),
			"restore the secrets.key this cluster's secrets were sealed with, or set the secret again")
	}
	return out, nil
}
