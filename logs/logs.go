// Package logs manages per-instance log files: size-based rotation and
// reading the last lines.
//
// Containers write straight into their log file (the worker hands it to the
// runtime as stdout and stderr, opened with O_APPEND), and the file stays
// open in the container for its whole life. Rotation therefore copies and
// truncates: the live file is copied to path.1 (older copies shift to
// path.2 ... path.keep) and then truncated in place. Because the writer uses
// O_APPEND, its next write lands at the new end (offset 0), not past a hole.
//
// The copy-truncate window: bytes written after the copy has read the end of
// the file and before the truncate are lost, and a write cut by the truncate
// may leave a partial last line in path.1. Rotate keeps the window short (the
// copy reads up to the file's current end and the truncate follows at once),
// but cannot close it without the writer's cooperation.
package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gantry-dev/gantry/errdefs"
)

// DefaultTailBytes bounds Tail's output when maxBytes is not positive.
const DefaultTailBytes = 1 << 20

// Rotate rotates path when it is at least maxBytes long: path.(keep-1) is
// renamed to path.keep (the oldest copy is dropped), ..., path.1 to path.2,
// then path is copied to path.1 and truncated. With keep 0 the file is only
// truncated. A rotated copy holds at most max(2*maxBytes, 16 MiB): of a
// file larger than that only the newest part is kept, however fast its
// writer. A missing file is not rotated and is not an error. Calls for
// the same path must not overlap (the worker rotates each log from one
// goroutine).
func Rotate(path string, maxBytes int64, keep int) (rotated bool, err error) {
	if maxBytes <= 0 || keep < 0 {
		return false, fmt.Errorf("rotate %s: maxBytes must be positive and keep not negative (got %d, %d): %w", path, maxBytes, keep, errdefs.ErrInvalid)
	}
	src, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("rotate %s: %w", path, err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return false, fmt.Errorf("rotate %s: %w", path, err)
	}
	if st.Size() < maxBytes {
		return false, nil
	}
	if keep == 0 {
		if err := src.Truncate(0); err != nil {
			return false, fmt.Errorf("rotate %s: truncate: %w", path, err)
		}
		return true, nil
	}

	// Copy into a temporary file beside the target, catch up with writes
	// made meanwhile, truncate, and only then shift the older copies and
	// move the copy into place (so the loss window is copy-end..truncate).
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".rotate-*")
	if err != nil {
		return false, fmt.Errorf("rotate %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if err := copyAndTruncate(src, tmp, st.Size(), copyLimit(maxBytes)); err != nil {
		tmp.Close()
		return false, fmt.Errorf("rotate %s: %w", path, err)
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		tmp.Close()
		return false, fmt.Errorf("rotate %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("rotate %s: %w", path, err)
	}
	for i := keep - 1; i >= 1; i-- {
		err := os.Rename(numbered(path, i), numbered(path, i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return true, fmt.Errorf("rotate %s: %w", path, err)
		}
	}
	if err := os.Rename(tmp.Name(), numbered(path, 1)); err != nil {
		return true, fmt.Errorf("rotate %s: %w", path, err)
	}
	return true, nil
}

// minCopyLimit is the least a rotated copy may hold, so that small maxBytes
// values still keep everything an ordinary writer produced.
const minCopyLimit = 16 << 20

// copyLimit bounds one rotated copy: max(2*maxBytes, minCopyLimit).
func copyLimit(maxBytes int64) int64 {
	if maxBytes > (1<<62)/2 {
		return 1 << 62
	}
	return max(2*maxBytes, minCopyLimit)
}

// copyAndTruncate copies src to dst up to src's current end, then
// truncates src at once: the copy reads until read(2) returns 0, so data
// appended during the copy is copied too, and only what lands between that
// last read and the truncate is lost.
//
// The copy is bounded by limit bytes, or a writer faster than the copy (a
// container printing in a loop) would be chased forever, filling the disk
// with an ever-growing copy while the live file grows too. When the file
// (size bytes at the check) is larger than limit, only its last limit/2
// bytes, from a line start, are kept; the older part is dropped.
func copyAndTruncate(src, dst *os.File, size, limit int64) error {
	start := int64(0)
	if size > limit {
		start = lineStart(src, size-limit/2)
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, start, limit)); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if err := src.Truncate(0); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	return nil
}

// lineStart returns the offset just past the first newline at or after off
// (within 64 KiB), so a copy that skips the head of a log starts with a
// whole line; off itself when there is none.
func lineStart(f *os.File, off int64) int64 {
	buf := make([]byte, 64<<10)
	n, _ := f.ReadAt(buf, off)
	if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
		return off + int64(i) + 1
	}
	return off
}

func numbered(path string, i int) string { return path + "." + strconv.Itoa(i) }

// Tail returns the last n lines of the log at path, reading the rotated
// copies (path.1, path.2, ...) too when the live file has fewer than n lines.
// The lines returned, each counted with its newline, add up to at most
// maxBytes: older lines are left out, and when even the newest line does
// not fit, only its end is returned. truncated tells that the bound left
// something out that n would have included. n <= 0 means as many lines as maxBytes allows;
// maxBytes <= 0 means DefaultTailBytes. Lines do not include their "\n". A
// log that does not exist at all is errdefs.ErrNotFound.
func Tail(path string, n int, maxBytes int) (lines []string, truncated bool, err error) {
	if maxBytes <= 0 {
		maxBytes = DefaultTailBytes
	}
	// Read backwards through path, path.1, ... until there are more than n
	// line ends, or more than maxBytes, or no more files.
	budget := maxBytes + 1 // one byte more tells that the bound was hit
	var (
		chunks    [][]byte // newest first
		total     int
		newlines  int
		stopped   bool // stopped before the start of the oldest data
		found     bool
		byteBound bool
	)
files:
	for i := 0; ; i++ {
		name := path
		if i > 0 {
			name = numbered(path, i)
		}
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			if i == 0 {
				continue // the live file may be missing mid-rotation
			}
			break
		}
		if err != nil {
			return nil, false, fmt.Errorf("tail %s: %w", name, err)
		}
		found = true
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, false, fmt.Errorf("tail %s: %w", name, err)
		}
		off := st.Size()
		for off > 0 {
			if (n > 0 && newlines > n) || total >= budget {
				byteBound = total >= budget
				stopped = true
				f.Close()
				break files
			}
			size := min(int64(64<<10), off, int64(budget-total))
			off -= size
			buf := make([]byte, size)
			if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
				f.Close()
				return nil, false, fmt.Errorf("tail %s: %w", name, err)
			}
			chunks = append(chunks, buf)
			total += len(buf)
			newlines += bytes.Count(buf, []byte{'\n'})
		}
		f.Close()
	}
	if !found {
		return nil, false, fmt.Errorf("log %s: %w", path, errdefs.ErrNotFound)
	}
	if total == 0 {
		return []string{}, false, nil
	}
	data := make([]byte, 0, total)
	for i := len(chunks) - 1; i >= 0; i-- {
		data = append(data, chunks[i]...)
	}
	parts := bytes.Split(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'})
	if stopped {
		if len(parts) == 1 {
			// One line longer than everything read: return its end.
			return cutLine(parts[0], maxBytes), true, nil
		}
		parts = parts[1:] // the first may have begun before what was read
	}
	if n > 0 && len(parts) > n {
		parts = parts[len(parts)-n:]
	}
	// Keep the newest whole lines that fit, each counted with its newline.
	size, first := 0, len(parts)
	for first > 0 && size+len(parts[first-1])+1 <= maxBytes {
		size += len(parts[first-1]) + 1
		first--
	}
	switch {
	case first == len(parts):
		return cutLine(parts[len(parts)-1], maxBytes), true, nil
	case first > 0:
		truncated = true
		parts = parts[first:]
	}
	if byteBound && (n <= 0 || len(parts) < n) {
		truncated = true
	}
	lines = make([]string, len(parts))
	for i, p := range parts {
		lines[i] = string(p)
	}
	return lines, truncated, nil
}

// cutLine returns the end of line that fits in maxBytes with its newline.
func cutLine(line []byte, maxBytes int) []string {
	return []string{string(line[max(0, len(line)-(maxBytes-1)):])}
}
