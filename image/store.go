// Package image pulls and imports OCI and Docker images, keeps their layers
// unpacked in a content-addressed cache shared by every image and instance,
// and mounts an image as an overlayfs root for a container.
//
// On disk, under the store root:
//
//	blobs/sha256/<hex>       manifests and configs, by digest
//	layers/sha256/<diffid>/  one unpacked layer, in overlayfs format
//	l/<short>                short symlinks to layer dirs, used in mount options
//	empty/                   the lower dir of an image with no layers
//	tmp/                     unpacks and downloads in progress
//	index.json               refs -> manifest digest, config, layers
//
// Compressed layers are not kept: a layer is verified against its diffID while
// it is unpacked, and the unpacked tree is what instances use.
package image

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/gantry-dev/gantry/errdefs"
)

// DefaultPlatform is the platform picked from multi-arch indexes when
// Options.Platform is empty.
const DefaultPlatform = "linux/amd64"

// Options configure a Store.
type Options struct {
	// Insecure lists registry hosts (host[:port]) that may be reached over
	// plain http. Loopback registries (127.0.0.0/8, localhost, [::1]) always may.
	Insecure []string
	// Platform is picked from multi-arch indexes; default "linux/amd64".
	Platform string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Image is an image recorded in the store.
type Image struct {
	// Ref is the reference as asked, normalised (e.g. 127.0.0.1:5000/demo/web:1).
	Ref string
	// Digest is the manifest digest (sha256:...).
	Digest string
	// Config is the runtime configuration of the image.
	Config v1.Config
	// Layers are the diffIDs of the layers, bottom first.
	Layers []string
	// Size is the sum of the compressed layer sizes in bytes.
	Size int64
}

// Progress reports the download and unpack of one layer.
type Progress struct {
	Ref      string
	Layer    string // compressed layer digest
	Done     int64  // compressed bytes read so far
	Total    int64  // compressed size
	Complete bool   // the layer is unpacked (or was already cached)
}

// Store is an image store rooted in a directory. It is safe for concurrent
// use by multiple goroutines of one process.
type Store struct {
	root     string
	platform v1.Platform
	insecure map[string]bool
	log      *slog.Logger
	locks    keyedMutex

	mu  sync.Mutex // guards idx and index.json
	idx indexFile
}

// indexFile is the JSON document kept in index.json.
type indexFile struct {
	Version int                     `json:"version"`
	Refs    map[string]string       `json:"refs"`   // normalised ref -> manifest digest
	Images  map[string]*imageRecord `json:"images"` // manifest digest -> record
}

type imageRecord struct {
	Digest       string    `json:"digest"`
	ConfigDigest string    `json:"configDigest"`
	Config       v1.Config `json:"config"`
	OS           string    `json:"os,omitempty"`
	Architecture string    `json:"architecture,omitempty"`
	Layers       []string  `json:"layers"`
	Size         int64     `json:"size"`
	Recorded     time.Time `json:"recorded"`
}

const indexVersion = 1

// Open opens (creating if needed) the store rooted at root.
func Open(root string, opts Options) (*Store, error) {
	if root == "" {
		return nil, fmt.Errorf("image store: empty root directory: %w", errdefs.ErrInvalid)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("image store %q: %w", root, err)
	}
	plat := opts.Platform
	if plat == "" {
		plat = DefaultPlatform
	}
	p, err := v1.ParsePlatform(plat)
	if err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("image store: platform %q: %v: %w", plat, err, errdefs.ErrInvalid),
			`use os/arch[/variant], e.g. "linux/amd64" or "linux/arm64"`)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		root:     abs,
		platform: *p,
		insecure: make(map[string]bool),
		log:      logger.With("component", "image"),
	}
	for _, h := range opts.Insecure {
		s.insecure[strings.ToLower(strings.TrimSpace(h))] = true
	}
	for _, d := range []string{"blobs/sha256", "layers/sha256", "l", "empty", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	// Leftovers of unpacks interrupted by a crash: never renamed into place,
	// so nothing refers to them.
	if ents, err := os.ReadDir(filepath.Join(abs, "tmp")); err == nil {
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(abs, "tmp", e.Name())); err != nil {
				s.log.Warn("removing stale temp entry", "path", e.Name(), "err", err)
			}
		}
	}
	if err := s.loadIndex(); err != nil {
		return nil, err
	}
	return s, nil
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

func (s *Store) indexPath() string { return filepath.Join(s.root, "index.json") }

func (s *Store) loadIndex() error {
	s.idx = indexFile{Version: indexVersion, Refs: map[string]string{}, Images: map[string]*imageRecord{}}
	b, err := os.ReadFile(s.indexPath())
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("image store: reading index: %w", err)
	}
	if err := json.Unmarshal(b, &s.idx); err != nil {
		return errdefs.WithHint(fmt.Errorf("image store: index %s is corrupt: %v: %w", s.indexPath(), err, errdefs.ErrInvalid),
			"move the file away; images will need to be pulled again")
	}
	if s.idx.Refs == nil {
		s.idx.Refs = map[string]string{}
	}
	if s.idx.Images == nil {
		s.idx.Images = map[string]*imageRecord{}
	}
	return nil
}

// saveIndexLocked writes index.json atomically: a temp file in the same
// directory, fsynced, then renamed over the old one. s.mu must be held.
func (s *Store) saveIndexLocked() error {
	b, err := json.MarshalIndent(&s.idx, "", "  ")
	if err != nil {
		return fmt.Errorf("image store: encoding index: %w", err)
	}
	return writeFileAtomic(s.indexPath(), b, 0o600)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// record stores rec and points every ref in refs at it.
func (s *Store) record(rec *imageRecord, refs ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.idx.Images[rec.Digest]; ok {
		rec.Recorded = old.Recorded
	}
	s.idx.Images[rec.Digest] = rec
	for _, r := range refs {
		if r != "" {
			s.idx.Refs[r] = rec.Digest
		}
	}
	return s.saveIndexLocked()
}

func (s *Store) lookupDigest(dgst string) *imageRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idx.Images[dgst]
}

func (rec *imageRecord) image(ref string) *Image {
	return &Image{
		Ref:    ref,
		Digest: rec.Digest,
		Config: rec.Config,
		Layers: slices.Clone(rec.Layers),
		Size:   rec.Size,
	}
}

// Resolve finds an image in the store without contacting any registry. ref
// may be a tag reference, a digest reference (repo@sha256:...) or a bare
// manifest digest (sha256:...). The error wraps errdefs.ErrNotFound when the
// image is not in the store.
func (s *Store) Resolve(ctx context.Context, ref string) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ref = strings.TrimSpace(ref)
	if strings.HasPrefix(ref, "sha256:") {
		if _, err := v1.NewHash(ref); err != nil {
			return nil, fmt.Errorf("image %q: %v: %w", ref, err, errdefs.ErrInvalid)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if rec, ok := s.idx.Images[ref]; ok {
			return rec.image(ref), nil
		}
		// A digest of an index pulled by digest maps to the image picked from it.
		for r, d := range s.idx.Refs {
			if strings.HasSuffix(r, "@"+ref) {
				if rec, ok := s.idx.Images[d]; ok {
					return rec.image(ref), nil
				}
			}
		}
		return nil, errdefs.WithHint(fmt.Errorf("image %s: %w", ref, errdefs.ErrNotFound), "pull or import the image first")
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("image reference %q: %v: %w", ref, err, errdefs.ErrInvalid),
			"use [registry/]repository[:tag] or repository@sha256:<digest>")
	}
	norm := r.Name()
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.idx.Refs[norm]; ok {
		if rec, ok := s.idx.Images[d]; ok {
			return rec.image(norm), nil
		}
	}
	if d, ok := r.(name.Digest); ok {
		if rec, ok := s.idx.Images[d.DigestStr()]; ok {
			return rec.image(norm), nil
		}
	}
	return nil, errdefs.WithHint(fmt.Errorf("image %s: %w", norm, errdefs.ErrNotFound),
		"pull it first (gantry pulls images named in a service spec), or import it from a tarball")
}

// List returns the images in the store: one entry per tag, and one per image
// known only by digest. Entries are sorted by Ref.
func (s *Store) List(ctx context.Context) ([]*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Image
	named := map[string]string{} // digest -> a digest ref naming it
	tagged := map[string]bool{}
	for r, d := range s.idx.Refs {
		rec, ok := s.idx.Images[d]
		if !ok {
			continue
		}
		if strings.Contains(r, "@") {
			if cur, ok := named[d]; !ok || r < cur {
				named[d] = r
			}
			continue
		}
		tagged[d] = true
		out = append(out, rec.image(r))
	}
	for d, rec := range s.idx.Images {
		if tagged[d] {
			continue
		}
		ref := named[d]
		if ref == "" {
			ref = d
		}
		out = append(out, rec.image(ref))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// keyedMutex is a set of mutexes by key (a digest), created on demand and
// dropped when nobody holds or waits for them. Lock honours ctx.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

func (k *keyedMutex) Lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*keyedEntry)
	}
	e, ok := k.m[key]
	if !ok {
		e = &keyedEntry{ch: make(chan struct{}, 1)}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()

	release := func() {
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-e.ch
			release()
		})
	}, nil
}
