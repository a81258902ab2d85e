package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gantry-dev/gantry/errdefs"
)

// pullJobs is how many layers of one image are fetched at once.
const pullJobs = 3

// Pull fetches ref from its registry, unpacks the layers it does not have
// yet, and records the image under ref and under its digest. A multi-arch
// index resolves to the store's platform; a ref by digest is verified.
// progress, if not nil, is called (never concurrently) as layers arrive.
func (s *Store) Pull(ctx context.Context, ref string, progress func(Progress)) (*Image, error) {
	r, err := s.parseRef(ref)
	if err != nil {
		return nil, err
	}
	norm := r.Name()
	log := s.log.With("ref", norm)
	start := time.Now()
	opts := s.remoteOptions(ctx)

	img, dgst, err := s.resolve(r, opts)
	if err != nil {
		return nil, err
	}

	refs := []string{norm, r.Context().Digest(dgst.String()).Name()}
	if rec := s.lookupDigest(dgst.String()); rec != nil && s.haveLayers(rec.Layers) {
		// Already complete: record the ref (a tag may have moved here) and
		// skip fetching the config and layers.
		if err := s.record(rec, refs...); err != nil {
			return nil, err
		}
		if progress != nil {
			progress(Progress{Ref: norm, Complete: true})
		}
		log.Info("image up to date", "digest", dgst.String())
		return rec.image(norm), nil
	}

	rec, err := s.ingest(ctx, img, norm, progress)
	if err != nil {
		return nil, registryError(r, err)
	}
	if err := s.record(rec, refs...); err != nil {
		return nil, err
	}
	log.Info("pulled image", "digest", rec.Digest, "layers", len(rec.Layers), "bytes", rec.Size, "took", time.Since(start).Round(time.Millisecond))
	return rec.image(norm), nil
}

// resolve fetches ref's manifest (picking the store's platform from an
// index) and returns the image, whose config and layers are fetched only
// when read, and its manifest digest.
func (s *Store) resolve(r name.Reference, opts []remote.Option) (v1.Image, v1.Hash, error) {
	norm := r.Name()
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return nil, v1.Hash{}, registryError(r, err)
	}
	var img v1.Image
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, v1.Hash{}, registryError(r, err)
		}
		img, err = s.pickPlatform(idx, norm)
		if err != nil {
			return nil, v1.Hash{}, registryError(r, err)
		}
	case desc.MediaType == types.DockerManifestSchema1 || desc.MediaType == types.DockerManifestSchema1Signed:
		return nil, v1.Hash{}, errdefs.WithHint(fmt.Errorf("image %s: docker schema 1 manifests are not supported: %w", norm, errdefs.ErrInvalid),
			"rebuild and push the image with a current docker or buildkit")
	default:
		img, err = desc.Image()
		if err != nil {
			return nil, v1.Hash{}, registryError(r, err)
		}
	}
	dgst, err := img.Digest()
	if err != nil {
		return nil, v1.Hash{}, registryError(r, err)
	}
	if d, ok := r.(name.Digest); ok && !desc.MediaType.IsIndex() && d.DigestStr() != dgst.String() {
		return nil, v1.Hash{}, fmt.Errorf("image %s: registry sent manifest %s, not the digest asked for: %w", norm, dgst, errdefs.ErrInvalid)
	}

	return img, dgst, nil
}

// parseRef parses and normalises ref, marking the registry insecure when it
// is in Options.Insecure.
func (s *Store) parseRef(ref string) (name.Reference, error) {
	ref = strings.TrimSpace(ref)
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, errdefs.WithHint(fmt.Errorf("image reference %q: %v: %w", ref, err, errdefs.ErrInvalid),
			"use [registry/]repository[:tag] or repository@sha256:<digest>, e.g. 127.0.0.1:5000/demo/web:1")
	}
	if s.insecure[strings.ToLower(r.Context().RegistryStr())] {
		r, err = name.ParseReference(ref, name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("image reference %q: %v: %w", ref, err, errdefs.ErrInvalid)
		}
	}
	return r, nil
}

func (s *Store) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(s.platform),
		remote.WithTransport(&httpGuard{base: remote.DefaultTransport, allow: s.allowHTTP}),
	}
}

// allowHTTP reports whether host (host[:port]) may be reached over plain
// http: loopback hosts always, others only when listed in Options.Insecure.
func (s *Store) allowHTTP(host string) bool {
	if s.insecure[strings.ToLower(host)] {
		return true
	}
	return isLoopback(host)
}

func isLoopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// errHTTPNotAllowed is returned by httpGuard for plain-http requests to a
// registry that is neither loopback nor listed as insecure. (go-containerregistry
// on its own also falls back to http for private-range addresses.)
var errHTTPNotAllowed = errors.New("plain http to this registry is not allowed")

type httpGuard struct {
	base  http.RoundTripper
	allow func(host string) bool
}

func (g *httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.allow(req.URL.Host) {
		return nil, fmt.Errorf("%s: %w", req.URL.Host, errHTTPNotAllowed)
	}
	return g.base.RoundTrip(req)
}

// pickPlatform returns the image for the store's platform from an index.
func (s *Store) pickPlatform(idx v1.ImageIndex, what string) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var seen []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			continue
		}
		seen = append(seen, d.Platform.String())
		if !platformMatches(s.platform, *d.Platform) {
			continue
		}
		if d.MediaType.IsIndex() {
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			return s.pickPlatform(child, what)
		}
		return idx.Image(d.Digest)
	}
	return nil, errdefs.WithHint(fmt.Errorf("image %s has no variant for platform %s (it has: %s): %w",
		what, s.platform.String(), strings.Join(seen, ", "), errdefs.ErrNotFound),
		"use an image built for this platform, or start gantry with a matching platform")
}

func platformMatches(want, have v1.Platform) bool {
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return false
	}
	return want.Variant == "" || want.Variant == have.Variant
}

// haveLayers reports whether every diffID is unpacked in the store.
func (s *Store) haveLayers(diffIDs []string) bool {
	for _, d := range diffIDs {
		if _, err := os.Stat(s.layerDir(d)); err != nil {
			return false
		}
	}
	return true
}

func (s *Store) layerDir(diffID string) string {
	return filepath.Join(s.root, "layers", "sha256", strings.TrimPrefix(diffID, "sha256:"))
}

// ingest stores img's manifest and config, unpacks its missing layers, and
// returns its record (not yet in the index).
func (s *Store) ingest(ctx context.Context, img v1.Image, ref string, progress func(Progress)) (*imageRecord, error) {
	dgst, err := img.Digest()
	if err != nil {
		return nil, err
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("reading config digest: %w", err)
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if got := sha256Hex(rawCfg); got != cfgName.Hex {
		return nil, fmt.Errorf("config blob has digest sha256:%s, manifest says %s: %w", got, cfgName, errdefs.ErrInvalid)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("parsing config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("reading layers: %w", err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("manifest has %d layers but config lists %d diffIDs: %w", len(layers), len(cfg.RootFS.DiffIDs), errdefs.ErrInvalid)
	}
	if cfg.OS != "" && (cfg.OS != s.platform.OS || cfg.Architecture != s.platform.Architecture) {
		s.log.Warn("image platform differs from the store's", "ref", ref, "image_platform", cfg.OS+"/"+cfg.Architecture, "platform", s.platform.String())
	}
	for _, b := range []struct {
		hex  string
		data []byte
	}{{dgst.Hex, manifest}, {cfgName.Hex, rawCfg}} {
		if err := s.writeBlob(b.hex, b.data); err != nil {
			return nil, err
		}
	}

	rec := &imageRecord{
		Digest:       dgst.String(),
		ConfigDigest: cfgName.String(),
		Config:       cfg.Config,
		OS:           cfg.OS,
		Architecture: cfg.Architecture,
		Recorded:     time.Now().UTC(),
	}
	for _, d := range cfg.RootFS.DiffIDs {
		rec.Layers = append(rec.Layers, d.String())
	}
	// Digests and sizes come from the manifest once: asking each remote
	// layer re-parses the whole manifest.
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("parsing manifest: %w", err)
	}
	if len(m.Layers) != len(layers) {
		return nil, fmt.Errorf("manifest lists %d layers but the image has %d: %w", len(m.Layers), len(layers), errdefs.ErrInvalid)
	}
	for _, d := range m.Layers {
		rec.Size += d.Size
	}

	var (
		pmu      sync.Mutex
		report   func(Progress)
		wg       sync.WaitGroup
		sem      = make(chan struct{}, pullJobs)
		errMu    sync.Mutex
		firstErr error
	)
	if progress != nil {
		report = func(p Progress) {
			pmu.Lock()
			defer pmu.Unlock()
			progress(p)
		}
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, l := range layers {
		diffID := cfg.RootFS.DiffIDs[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-lctx.Done():
				return
			}
			defer func() { <-sem }()
			if err := s.fetchLayer(lctx, ref, l, m.Layers[i], diffID, report); err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return rec, nil
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func (s *Store) writeBlob(hexDigest string, data []byte) error {
	p := filepath.Join(s.root, "blobs", "sha256", hexDigest)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return writeFileAtomic(p, data, 0o600)
}

// fetchLayer makes sure layer diffID is unpacked in the store. Concurrent
// callers for one diffID are serialised; the loser finds it done.
func (s *Store) fetchLayer(ctx context.Context, ref string, l v1.Layer, desc v1.Descriptor, diffID v1.Hash, report func(Progress)) error {
	dst := s.layerDir(diffID.String())
	digest, size := desc.Digest, desc.Size
	done := func() {
		if report != nil {
			report(Progress{Ref: ref, Layer: digest.String(), Done: size, Total: size, Complete: true})
		}
	}
	if _, err := os.Stat(dst); err == nil {
		done()
		return s.ensureLink(diffID.Hex)
	}
	unlock, err := s.locks.Lock(ctx, "layer:"+diffID.String())
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(dst); err == nil {
		done()
		return s.ensureLink(diffID.Hex)
	}

	log := s.log.With("ref", ref, "layer", digest.String(), "diff_id", diffID.String())
	log.Debug("fetching layer", "bytes", size)
	counted, err := partial.CompressedToLayer(&countingLayer{Layer: l, onRead: func(n int64) {
		if report != nil {
			report(Progress{Ref: ref, Layer: digest.String(), Done: n, Total: size})
		}
	}})
	if err != nil {
		return err
	}
	rc, err := counted.Uncompressed()
	if err != nil {
		return fmt.Errorf("layer %s: %w", digest, err)
	}
	defer rc.Close()

	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), diffID.Hex[:12]+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	// The layer root's mode, unless the tar has a "./" entry.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	h := sha256.New()
	tee := io.TeeReader(rc, h)
	if err := unpackLayer(ctx, tee, tmp, log); err != nil {
		return fmt.Errorf("layer %s: %w", digest, err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // tar padding after the end marker
		return fmt.Errorf("layer %s: %w", digest, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != diffID.Hex {
		return fmt.Errorf("layer %s: content has diffID sha256:%s, config says %s: %w", digest, got, diffID, errdefs.ErrInvalid)
	}
	if err := os.Rename(tmp, dst); err != nil {
		if _, serr := os.Stat(dst); serr != nil { // another process may have won
			return fmt.Errorf("layer %s: %w", digest, err)
		}
	}
	done()
	log.Debug("unpacked layer")
	return s.ensureLink(diffID.Hex)
}

// countingLayer wraps a layer so that reads of its compressed stream are
// reported; partial.CompressedToLayer derives the uncompressed stream from it.
type countingLayer struct {
	v1.Layer
	onRead func(done int64)
}

func (c *countingLayer) Compressed() (io.ReadCloser, error) {
	rc, err := c.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, onRead: c.onRead}, nil
}

// progressEvery throttles progress reports to one per this many bytes.
const progressEvery = 256 << 10

type countingReader struct {
	io.ReadCloser
	n, last int64
	onRead  func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	if c.n-c.last >= progressEvery || (err == io.EOF && c.n != c.last) {
		c.last = c.n
		c.onRead(c.n)
	}
	return n, err
}

// registryError turns an error from talking to a registry into one that
// says what to do about it.
func registryError(r name.Reference, err error) error {
	if err == nil {
		return nil
	}
	host := r.Context().RegistryStr()
	var hint error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, errdefs.ErrInvalid), errors.Is(err, errdefs.ErrNotFound), errors.Is(err, errdefs.ErrPermission):
		return fmt.Errorf("image %s: %w", r.Name(), err)
	}
	var terr *transport.Error
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden || hasCode(terr, transport.UnauthorizedErrorCode, transport.DeniedErrorCode)):
		hint = errdefs.WithHint(fmt.Errorf("image %s: registry %s refused access (%v): %w", r.Name(), host, err, errdefs.ErrPermission),
			fmt.Sprintf("check the registry credentials: run `docker login %s` (gantry reads ~/.docker/config.json) and check that the repository exists and you may read it", host))
	case errors.As(err, &terr) && (hasCode(terr, transport.ManifestUnknownErrorCode) || (terr.StatusCode == http.StatusNotFound && !hasCode(terr, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode))):
		what := "tag " + tagOf(r)
		if d, ok := r.(name.Digest); ok {
			what = "digest " + d.DigestStr()
		}
		hint = errdefs.WithHint(fmt.Errorf("image %s: the %s does not exist in repository %s: %w", r.Name(), what, r.Context().Name(), errdefs.ErrNotFound),
			"check the tag (list the repository's tags with your registry's tools) or push the image first")
	case errors.As(err, &terr) && hasCode(terr, transport.NameUnknownErrorCode):
		hint = errdefs.WithHint(fmt.Errorf("image %s: the tag %s does not exist: repository %s does not exist on %s: %w", r.Name(), tagOf(r), r.Context().RepositoryStr(), host, errdefs.ErrNotFound),
			"check the repository name, or push the image first")
	case errors.Is(err, errHTTPNotAllowed):
		hint = errdefs.WithHint(fmt.Errorf("image %s: registry %s would need plain http, which is not allowed for it: %w", r.Name(), host, errdefs.ErrPermission),
			fmt.Sprintf("if the registry really has no TLS, allow it: start the gantry that pulls (dev, server, or the worker) with --insecure-registry %s", host))
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http has no exported error for this case.
		hint = errdefs.WithHint(fmt.Errorf("image %s: registry %s speaks plain http, not https: %w", r.Name(), host, errdefs.ErrUnavailable),
			fmt.Sprintf("allow plain http to it: start the gantry that pulls (dev, server, or the worker) with --insecure-registry %s", host))
	case errors.As(err, &dnsErr):
		hint = errdefs.WithHint(fmt.Errorf("image %s: registry host %q is unknown (%v): %w", r.Name(), host, dnsErr, errdefs.ErrUnavailable),
			"check the registry name in the image reference (an image without a registry name comes from Docker Hub) and this machine's DNS")
	case errors.Is(err, syscall.ECONNREFUSED):
		hint = errdefs.WithHint(fmt.Errorf("image %s: registry %s refused the connection: %w", r.Name(), host, errdefs.ErrUnavailable),
			"check that the registry is running and listening on that address and port")
	case strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:"):
		hint = errdefs.WithHint(fmt.Errorf("image %s: TLS to registry %s failed (%v): %w", r.Name(), host, err, errdefs.ErrUnavailable),
			fmt.Sprintf("install the registry's CA certificate on this machine, or, for a registry without TLS, use --insecure-registry %s", host))
	default:
		// Unreachable hosts, timeouts, dropped connections: without a hint
		// of its own, the API edge would blame the cluster instead.
		hint = errdefs.WithHint(fmt.Errorf("image %s: registry %s: %v: %w", r.Name(), host, err, errdefs.ErrUnavailable),
			fmt.Sprintf("check that %s is reachable from the gantry host (address, routes, firewall, proxy) and retry", host))
	}
	return hint
}

func hasCode(e *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range e.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}

func tagOf(r name.Reference) string {
	if t, ok := r.(name.Tag); ok {
		return t.TagStr()
	}
	return r.Identifier()
}
