package fileserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Errors the service returns; the transport maps them to gRPC codes.
var (
	ErrInvalidPath = errors.New("invalid path")
	ErrNotFound    = errors.New("not found")
	ErrTooLarge    = errors.New("file too large")
	ErrMismatch    = errors.New("content does not match the declared size or checksum")
	// ErrNoSpace is a full disk or an exhausted quota (ENOSPC, EDQUOT) met
	// while storing an upload; the errno is wrapped too.
	ErrNoSpace = errors.New("server out of space")
)

// tmpPrefix marks uploads in progress: hidden from List, never served.
const tmpPrefix = ".upload-"

// StaleUploadAge is how long ago an upload's temporary file must have been
// last written for NewDirService to remove it as left by a crash. An upload
// in progress writes its file as chunks arrive, so on a root shared by
// several instances only an upload stalled for this long loses its file
// (and fails with NotFound at the rename).
const StaleUploadAge = time.Hour

// FileInfo describes a stored file or directory.
type FileInfo struct {
	Path    string
	Size    int64
	Dir     bool
	ModTime time.Time
}

// Service is FileSrv's business logic, independent of any transport.
type Service interface {
	// Upload stores size bytes from r at p, if they hash to sum (SHA-256,
	// hex). The file appears only once complete and verified.
	Upload(ctx context.Context, p string, size int64, sum string, r io.Reader) (FileInfo, error)
	// Open returns the file at p, its info and SHA-256.
	Open(ctx context.Context, p string) (io.ReadSeekCloser, FileInfo, string, error)
	// List lists the directory dir ("" is the root).
	List(ctx context.Context, dir string) ([]FileInfo, error)
	// Stat describes the file at p and returns its SHA-256.
	Stat(ctx context.Context, p string) (FileInfo, string, error)
	// Delete removes the file at p.
	Delete(ctx context.Context, p string) error
}

// DirService stores files under one directory, confined with os.Root:
// relative paths only, no "..", no absolute paths, no NUL, and no symlink
// that leads out. Several instances may share one directory.
type DirService struct {
	root    *os.Root
	maxSize int64
	sums    sumCache

	// afterRename, if set, runs in Upload just after the rename: tests use
	// it to interleave another upload of the same path there.
	afterRename func(p string)
}

// sumCache remembers the SHA-256 of files, so that Stat and Download do not
// hash an unchanged file again. An entry is found by path but belongs to one
// file: its identity (device and inode, os.SameFile), size and modification
// time, all from a Stat of the open file, must match the file being
// described. A path that now names another file (another instance on the
// shared root renamed an upload over it) misses and is hashed again. The
// cache is per instance; another instance sharing the root hashes once
// itself.
type sumCache struct {
	mu sync.Mutex
	m  map[string]cachedSum
}

type cachedSum struct {
	fi  fs.FileInfo // from a Stat of the open file the sum is of
	sum string
}

// maxCachedSums bounds the cache; past it, the cache starts again empty.
const maxCachedSums = 10_000

func (c *sumCache) get(p string, fi fs.FileInfo) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[p]
	if !ok || !os.SameFile(e.fi, fi) || e.fi.Size() != fi.Size() || !e.fi.ModTime().Equal(fi.ModTime()) {
		return "", false
	}
	return e.sum, true
}

func (c *sumCache) put(p string, fi fs.FileInfo, sum string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedSums {
		c.m = make(map[string]cachedSum)
	}
	c.m[p] = cachedSum{fi: fi, sum: sum}
}

var _ Service = (*DirService)(nil)

// NewDirService serves the directory dir, refusing files over maxSize
// bytes. It first removes, anywhere under dir, the temporary files of
// uploads last written more than StaleUploadAge ago, which a crashed
// instance leaves; younger ones may be uploads in progress on another
// instance and stay. That walks the whole tree once. Close it when done.
func NewDirService(dir string, maxSize int64) (*DirService, error) {
	if maxSize <= 0 {
		return nil, fmt.Errorf("fileserver: max file size %d must be positive", maxSize)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("fileserver: root %s: %w", dir, err)
	}
	s := &DirService{root: r, maxSize: maxSize}
	s.removeStaleUploads(time.Now().Add(-StaleUploadAge))
	return s, nil
}

// removeStaleUploads removes the temporary files of uploads last written
// before cutoff. It does its best: a directory it cannot read, or a file
// gone meanwhile (another instance removed it first), is skipped.
func (s *DirService) removeStaleUploads(cutoff time.Time) {
	_ = fs.WalkDir(s.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(cutoff) {
			_ = s.root.Remove(p)
		}
		return nil
	})
}

// Close releases the root directory.
func (s *DirService) Close() error { return s.root.Close() }

// CleanPath checks a client's path and returns it in canonical form:
// slash-separated, relative, without "." or ".." elements, NUL, or a
// component that names an upload in progress. "" is the root, allowed only
// where allowRoot.
func CleanPath(p string, allowRoot bool) (string, error) {
	if strings.ContainsRune(p, 0) || strings.Contains(p, "\\") {
		return "", fmt.Errorf("%w: %q", ErrInvalidPath, p)
	}
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%w: %q is absolute", ErrInvalidPath, p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: %q leaves the root", ErrInvalidPath, p)
		}
		if strings.HasPrefix(el, tmpPrefix) {
			return "", fmt.Errorf("%w: %q is reserved", ErrInvalidPath, p)
		}
	}
	c := path.Clean(p)
	if c == "." {
		if !allowRoot {
			return "", fmt.Errorf("%w: empty path", ErrInvalidPath)
		}
		return "", nil
	}
	return c, nil
}

// native turns a clean slash path into one for os.Root ("." for the root).
func native(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// rootErr maps the errors of os.Root and of files in it to the service's.
func rootErr(p string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s", ErrNotFound, p)
	case strings.Contains(err.Error(), "path escapes from parent"):
		return fmt.Errorf("%w: %s escapes the root", ErrInvalidPath, p)
	case errors.Is(err, syscall.ENOSPC):
		// Only the errno: the *fs.PathError names the server's directory.
		return fmt.Errorf("%w: %s: %w", ErrNoSpace, p, syscall.ENOSPC)
	case errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: %s: %w", ErrNoSpace, p, syscall.EDQUOT)
	}
	return fmt.Errorf("fileserver: %s: %w", p, err)
}

func (s *DirService) Upload(ctx context.Context, p string, size int64, sum string, r io.Reader) (FileInfo, error) {
	p, err := CleanPath(p, false)
	if err != nil {
		return FileInfo{}, err
	}
	if size < 0 || size > s.maxSize {
		return FileInfo{}, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, size, s.maxSize)
	}
	want, err := hex.DecodeString(sum)
	if err != nil || len(want) != sha256.Size {
		return FileInfo{}, fmt.Errorf("%w: checksum %q is not SHA-256 hex", ErrMismatch, sum)
	}
	dir := path.Dir(p)
	if dir != "." {
		if err := s.root.MkdirAll(dir, 0o755); err != nil {
			return FileInfo{}, rootErr(p, err)
		}
	}
	tmp := path.Join(dir, tmpPrefix+rand.Text()+".tmp")
	f, err := s.root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return FileInfo{}, rootErr(p, err)
	}
	// Whatever goes wrong below, nothing partial stays visible.
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = s.root.Remove(tmp)
		}
	}()
	n, got, err := writeHashed(f, io.LimitReader(ctxReader{ctx, r}, size+1))
	if err != nil {
		return FileInfo{}, rootErr(p, fmt.Errorf("upload: %w", err))
	}
	if n != size || !bytes.Equal(got, want) {
		return FileInfo{}, fmt.Errorf("%w: %s: got %d bytes", ErrMismatch, p, n)
	}
	if err := f.Sync(); err != nil {
		return FileInfo{}, rootErr(p, fmt.Errorf("sync: %w", err))
	}
	// The file's identity, taken from the open file before the rename: the
	// path may name another instance's upload as soon as the rename is done.
	fi, err := f.Stat()
	if err != nil {
		return FileInfo{}, rootErr(p, fmt.Errorf("stat: %w", err))
	}
	if err := f.Close(); err != nil {
		return FileInfo{}, rootErr(p, fmt.Errorf("close: %w", err))
	}
	if err := s.root.Rename(tmp, p); err != nil {
		return FileInfo{}, rootErr(p, err)
	}
	done = true
	if s.afterRename != nil {
		s.afterRename(p)
	}
	s.sums.put(p, fi, sum)
	return FileInfo{Path: p, Size: sizeOf(fi), ModTime: fi.ModTime()}, nil
}

func (s *DirService) Open(ctx context.Context, p string) (io.ReadSeekCloser, FileInfo, string, error) {
	p, err := CleanPath(p, false)
	if err != nil {
		return nil, FileInfo{}, "", err
	}
	f, err := s.root.Open(p)
	if err != nil {
		return nil, FileInfo{}, "", rootErr(p, err)
	}
	info, sum, err := s.describe(ctx, p, f)
	if err != nil {
		_ = f.Close()
		return nil, FileInfo{}, "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, FileInfo{}, "", fmt.Errorf("fileserver: %s: %w", p, err)
	}
	return f, info, sum, nil
}

func (s *DirService) List(ctx context.Context, dir string) ([]FileInfo, error) {
	dir, err := CleanPath(dir, true)
	if err != nil {
		return nil, err
	}
	f, err := s.root.Open(native(dir))
	if err != nil {
		return nil, rootErr(dir, err)
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, rootErr(dir, err)
	}
	out := make([]FileInfo, 0, len(ents))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, FileInfo{Path: path.Join(dir, e.Name()), Size: sizeOf(fi), Dir: fi.IsDir(), ModTime: fi.ModTime()})
	}
	slices.SortFunc(out, func(a, b FileInfo) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

func (s *DirService) Stat(ctx context.Context, p string) (FileInfo, string, error) {
	p, err := CleanPath(p, false)
	if err != nil {
		return FileInfo{}, "", err
	}
	f, err := s.root.Open(p)
	if err != nil {
		return FileInfo{}, "", rootErr(p, err)
	}
	defer f.Close()
	return s.describe(ctx, p, f)
}

func (s *DirService) Delete(ctx context.Context, p string) error {
	p, err := CleanPath(p, false)
	if err != nil {
		return err
	}
	fi, err := s.root.Lstat(p)
	if err != nil {
		return rootErr(p, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: %s is a directory", ErrInvalidPath, p)
	}
	if err := s.root.Remove(p); err != nil {
		return rootErr(p, err)
	}
	return nil
}

// describe returns the info and SHA-256 of the open file f.
func (s *DirService) describe(ctx context.Context, p string, f *os.File) (FileInfo, string, error) {
	fi, err := f.Stat()
	if err != nil {
		return FileInfo{}, "", rootErr(p, err)
	}
	info := FileInfo{Path: p, Size: sizeOf(fi), Dir: fi.IsDir(), ModTime: fi.ModTime()}
	if fi.IsDir() {
		return info, "", nil
	}
	if sum, ok := s.sums.get(p, fi); ok {
		return info, sum, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return FileInfo{}, "", fmt.Errorf("fileserver: hash %s: %w", p, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	s.sums.put(p, fi, sum)
	return info, sum, nil
}

func sizeOf(fi fs.FileInfo) int64 {
	if fi.IsDir() {
		return 0
	}
	return fi.Size()
}

// writeHashed copies r to f and returns the number of bytes and their
// SHA-256. Three things overlap rather than take turns:
//   - writes are chunk-sized (io.Copy's 32 KiB buffer made eight times the
//     write calls);
//   - the hash runs in a goroutine of its own, one chunk behind the writes;
//   - every syncEvery bytes, a Sync in the background starts writing what
//     is written so far to disk, so that the caller's final Sync has little
//     left to do. An error of those Syncs is returned: Linux reports a
//     failed writeback to one fsync only.
func writeHashed(f *os.File, r io.Reader) (int64, []byte, error) {
	const (
		bufs      = 3 // one being read, one being hashed, one spare
		syncEvery = 32 << 20
	)
	free := make(chan []byte, bufs)
	for range bufs {
		free <- make([]byte, 1<<20)
	}
	full := make(chan []byte, bufs)
	sum := make(chan []byte)
	go func() {
		h := sha256.New()
		for b := range full {
			h.Write(b)
			free <- b[:cap(b)]
		}
		sum <- h.Sum(nil)
	}()
	syncing := make(chan error, 1) // holds the result of the Sync running, if any
	running := false
	var syncErr error
	var n, synced int64
	var err error
	for err == nil {
		b := <-free
		var k int
		k, err = io.ReadFull(r, b)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		if k == 0 {
			free <- b
			continue
		}
		if _, werr := f.Write(b[:k]); werr != nil {
			err = werr
			break
		}
		n += int64(k)
		full <- b[:k]
		if n-synced < syncEvery {
			continue
		}
		if running {
			select {
			case e := <-syncing:
				syncErr, running = errors.Join(syncErr, e), false
			default:
				continue // the last one is still at work
			}
		}
		synced, running = n, true
		go func() { syncing <- f.Sync() }()
	}
	close(full)
	h := <-sum
	if running {
		syncErr = errors.Join(syncErr, <-syncing)
	}
	if !errors.Is(err, io.EOF) {
		return n, nil, err
	}
	if syncErr != nil {
		return n, nil, fmt.Errorf("sync: %w", syncErr)
	}
	return n, h, nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
