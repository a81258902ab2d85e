package membership

import (
	"fmt"

	"github.com/gantry-dev/gantry/errdefs"
)

// Gossip key rotation. Every node decrypts with any installed key and
// encrypts with the primary one, so a cluster rotates its key without a
// partition in three rounds, each one finished on every node before the
// next starts:
//
//  1. InstallKey(new) on every node: all can now read the new key.
//  2. UseKey(new) on every node: all now write with it.
//  3. RemoveKey(old) on every node: the old key is no longer accepted.
//
// These methods change this node's keyring only; the caller (an operator
// command going through the servers) drives the rounds across the cluster.

// InstallKey adds key to this node's keyring for decryption. It does not
// change the key this node encrypts with.
func (m *Membership) InstallKey(key []byte) error {
	if err := ValidateKey(key); err != nil {
		return fmt.Errorf("membership: install key: %w", err)
	}
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	if err := m.keyring.AddKey(key); err != nil {
		return fmt.Errorf("membership: install key: %v: %w", err, errdefs.ErrInvalid)
	}
	return nil
}

// UseKey makes an installed key the primary one this node encrypts with.
func (m *Membership) UseKey(key []byte) error {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	if err := m.keyring.UseKey(key); err != nil {
		return errdefs.WithHint(fmt.Errorf("membership: use key: %v: %w", err, errdefs.ErrNotFound),
			"install the key on every node (InstallKey) before using it")
	}
	return nil
}

// RemoveKey drops a key from this node's keyring. The primary key cannot be
// removed.
//
// memberlist's Keyring removes in place in the slice its decrypting
// goroutines read; removing the last key (the old one in a two-key
// rotation, where UseKey(new) put the new key first) writes nothing
// shared.
func (m *Membership) RemoveKey(key []byte) error {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	if err := m.keyring.RemoveKey(key); err != nil {
		return errdefs.WithHint(fmt.Errorf("membership: remove key: %v: %w", err, errdefs.ErrConflict),
			"switch every node to the new key (UseKey) before removing the old one")
	}
	return nil
}

// Keys returns copies of the installed keys, the primary one first.
func (m *Membership) Keys() [][]byte {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	keys := m.keyring.GetKeys()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = append([]byte(nil), k...)
	}
	return out
}
