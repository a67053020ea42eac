package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// The on-disk layout follows Kubernetes' AtomicWriter:
//
//	<dir>/..2026_11_25_20_00_00.123456789/{svid.pem,svid_key.pem,bundle.pem}
//	<dir>/..data -> ..2026_11_25_20_00_00.123456789
//	<dir>/svid.pem -> ..data/svid.pem   (same for svid_key.pem, bundle.pem)
//
// A new set is written into "..<timestamp>.tmp", fsynced and renamed to
// "..<timestamp>"; then "..data_tmp" is created pointing at it and renamed over
// "..data". The switch from one complete set to the next is a single rename(2),
// so a path resolved through "..data" always belongs to one set.
const (
	dataLink    = "..data"
	dataLinkTmp = "..data_tmp"
	tsLayout    = "2006_01_02_15_04_05.000000000"
)

// tsDirRE matches the timestamped set directories (and interrupted ".tmp" ones)
// that this writer creates; only such directories are ever removed.
var tsDirRE = regexp.MustCompile(`^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{9}(_\d+)?(\.tmp)?$`)

// File is one file of the set.
type File struct {
	Name string
	Data []byte
	Mode os.FileMode
}

// AtomicWriter writes a set of files into Dir atomically as a set.
type AtomicWriter struct {
	Dir string
	UID int // -1: do not chown
	GID int // -1: do not chown
	Now func() time.Time
}

// WriteResult tells where the set went. CleanupErr reports a failure to remove
// older set directories; the new set is in place regardless.
type WriteResult struct {
	DataDir    string // base name of the new "..<timestamp>" directory
	CleanupErr error
}

func (w *AtomicWriter) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *AtomicWriter) chown() bool { return w.UID >= 0 || w.GID >= 0 }

// Write publishes files as a new set and removes the previous sets.
func (w *AtomicWriter) Write(files []File) (res WriteResult, err error) {
	if len(files) == 0 {
		return res, errors.New("no files to write")
	}
	for _, f := range files {
		if f.Name == "" || f.Name != filepath.Base(f.Name) || f.Name[0] == '.' {
			return res, fmt.Errorf("invalid file name %q", f.Name)
		}
	}
	if err := os.MkdirAll(w.Dir, 0o755); err != nil {
		return res, err
	}

	final, tmp, err := w.makeTmpDir()
	if err != nil {
		return res, err
	}
	published := false
	defer func() {
		if !published {
			_ = os.RemoveAll(filepath.Join(w.Dir, tmp))
			_ = os.RemoveAll(filepath.Join(w.Dir, final))
		}
	}()

	tmpPath := filepath.Join(w.Dir, tmp)
	for _, f := range files {
		if err := w.writeFile(filepath.Join(tmpPath, f.Name), f.Data, f.Mode); err != nil {
			return res, err
		}
	}
	if err := syncDir(tmpPath); err != nil {
		return res, err
	}
	if err := os.Rename(tmpPath, filepath.Join(w.Dir, final)); err != nil {
		return res, err
	}
	if err := syncDir(w.Dir); err != nil {
		return res, err
	}

	// Swap ..data to the new set in one rename.
	linkTmp := filepath.Join(w.Dir, dataLinkTmp)
	if err := os.Remove(linkTmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, err
	}
	if err := os.Symlink(final, linkTmp); err != nil {
		return res, err
	}
	if err := os.Rename(linkTmp, filepath.Join(w.Dir, dataLink)); err != nil {
		_ = os.Remove(linkTmp)
		return res, fmt.Errorf("swap %s: %w", dataLink, err)
	}
	published = true
	res.DataDir = final

	// User-visible names: symlinks through ..data, created or fixed once.
	for _, f := range files {
		if err := w.ensureLink(f.Name); err != nil {
			return res, err
		}
	}
	if err := syncDir(w.Dir); err != nil {
		return res, err
	}

	res.CleanupErr = w.removeOldSets(final)
	return res, nil
}

// makeTmpDir creates "..<timestamp>.tmp" for a timestamp whose final name is unused.
func (w *AtomicWriter) makeTmpDir() (final, tmp string, err error) {
	base := ".." + w.now().UTC().Format(tsLayout)
	for i := 0; i < 1000; i++ {
		final = base
		if i > 0 {
			final = fmt.Sprintf("%s_%d", base, i)
		}
		if _, err := os.Lstat(filepath.Join(w.Dir, final)); err == nil {
			continue
		}
		tmp = final + ".tmp"
		err = os.Mkdir(filepath.Join(w.Dir, tmp), 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", "", err
		}
		p := filepath.Join(w.Dir, tmp)
		if err := os.Chmod(p, 0o755); err != nil { // independent of umask
			return "", "", err
		}
		if w.chown() {
			if err := os.Lchown(p, w.UID, w.GID); err != nil {
				_ = os.Remove(p)
				return "", "", err
			}
		}
		return final, tmp, nil
	}
	return "", "", fmt.Errorf("cannot find a free directory name for %s in %s", base, w.Dir)
}

func (w *AtomicWriter) writeFile(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if w.chown() {
		if err := f.Chown(w.UID, w.GID); err != nil {
			return err
		}
	}
	if err := f.Chmod(mode.Perm()); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// ensureLink makes <dir>/<name> a symlink to ..data/<name>. Anything else in the
// way (a regular file, a wrong symlink) is replaced by renaming a new symlink over it.
func (w *AtomicWriter) ensureLink(name string) error {
	target := filepath.Join(dataLink, name)
	path := filepath.Join(w.Dir, name)
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		if cur, err := os.Readlink(path); err == nil && cur == target {
			return nil
		}
	case err == nil && fi.IsDir():
		return fmt.Errorf("%s is a directory, expected a symlink to %s", path, target)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	tmp := filepath.Join(w.Dir, ".."+name+"_tmp")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// removeOldSets deletes every timestamped set directory except keep.
func (w *AtomicWriter) removeOldSets(keep string) error {
	entries, err := os.ReadDir(w.Dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if name == keep || !e.IsDir() || !tsDirRE.MatchString(name) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(w.Dir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
