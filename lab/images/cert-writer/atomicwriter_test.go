package main

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newWriter(dir string) *AtomicWriter { return &AtomicWriter{Dir: dir, UID: -1, GID: -1} }

func dataTarget(t *testing.T, dir string) string {
	t.Helper()
	target, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil {
		t.Fatal(err)
	}
	return target
}

func setDirs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && tsDirRE.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestWriteFilesReadableThroughSymlinks(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	m := pki.freshMaterial(t)
	dir := filepath.Join(t.TempDir(), "certs") // created by the writer
	res, err := newWriter(dir).Write(m.files(0o640))
	if err != nil {
		t.Fatal(err)
	}
	if !tsDirRE.MatchString(res.DataDir) || strings.HasSuffix(res.DataDir, ".tmp") {
		t.Fatalf("unexpected set dir name %q", res.DataDir)
	}
	if got := dataTarget(t, dir); got != res.DataDir {
		t.Fatalf("..data -> %q, want %q", got, res.DataDir)
	}
	for _, name := range []string{svidFile, keyFile, bundleFile} {
		target, err := os.Readlink(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s is not a symlink: %v", name, err)
		}
		if target != "..data/"+name {
			t.Fatalf("%s -> %q", name, target)
		}
	}
	leaf := readPair(t, dir)
	if leaf.URIs[0].String() != testID || leaf.SerialNumber.Text(16) != m.Serial {
		t.Fatalf("unexpected leaf %s serial %s", leaf.URIs[0], leaf.SerialNumber.Text(16))
	}
	wantModes := map[string]os.FileMode{svidFile: 0o644, keyFile: 0o640, bundleFile: 0o644}
	for name, want := range wantModes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %o, want %o", name, fi.Mode().Perm(), want)
		}
	}
	key, _ := os.ReadFile(filepath.Join(dir, keyFile))
	if !strings.HasPrefix(string(key), "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("svid_key.pem is not PKCS#8 PEM")
	}
	if m.BundleCAs != 1 {
		t.Errorf("bundle_cas=%d", m.BundleCAs)
	}
	// Nothing temporary left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 5 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("dir holds %v, want the set dir, ..data and three links", names)
	}
}

func TestKeyModeIsApplied(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	dir := t.TempDir()
	if _, err := newWriter(dir).Write(pki.freshMaterial(t).files(0o600)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %o, want 600", fi.Mode().Perm())
	}
}

func TestSecondWriteSwapsAndRemovesOldDir(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	dir := t.TempDir()
	w := newWriter(dir)
	m1 := pki.freshMaterial(t)
	r1, err := w.Write(m1.files(0o640))
	if err != nil {
		t.Fatal(err)
	}
	// Leftovers of an interrupted earlier run must go too.
	leftover := filepath.Join(dir, "..2001_01_01_00_00_00.000000000.tmp")
	if err := os.Mkdir(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("nowhere", filepath.Join(dir, dataLinkTmp)); err != nil {
		t.Fatal(err)
	}
	unrelated := filepath.Join(dir, "..keep-me")
	if err := os.Mkdir(unrelated, 0o755); err != nil {
		t.Fatal(err)
	}

	m2 := pki.freshMaterial(t)
	r2, err := w.Write(m2.files(0o640))
	if err != nil {
		t.Fatal(err)
	}
	if r2.CleanupErr != nil {
		t.Fatal(r2.CleanupErr)
	}
	if r1.DataDir == r2.DataDir {
		t.Fatal("second write reused the set dir")
	}
	if got := dataTarget(t, dir); got != r2.DataDir {
		t.Fatalf("..data -> %q, want %q", got, r2.DataDir)
	}
	if got := setDirs(t, dir); len(got) != 1 || got[0] != r2.DataDir {
		t.Fatalf("set dirs after swap: %v, want only %s", got, r2.DataDir)
	}
	if _, err := os.Lstat(filepath.Join(dir, dataLinkTmp)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("..data_tmp still there: %v", err)
	}
	if _, err := os.Stat(unrelated); err != nil {
		t.Fatalf("unrelated dir removed: %v", err)
	}
	if leaf := readPair(t, dir); leaf.SerialNumber.Text(16) != m2.Serial {
		t.Fatalf("serial %s, want %s", leaf.SerialNumber.Text(16), m2.Serial)
	}
}

func TestSameTimestampGetsDistinctDirs(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	dir := t.TempDir()
	fixed := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	w := &AtomicWriter{Dir: dir, UID: -1, GID: -1, Now: func() time.Time { return fixed }}
	r1, err := w.Write(pki.freshMaterial(t).files(0o640))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := w.Write(pki.freshMaterial(t).files(0o640))
	if err != nil {
		t.Fatal(err)
	}
	if r1.DataDir != "..2026_11_25_20_00_00.000000000" || r2.DataDir != "..2026_11_25_20_00_00.000000000_1" {
		t.Fatalf("dirs %q, %q", r1.DataDir, r2.DataDir)
	}
	if got := setDirs(t, dir); len(got) != 1 {
		t.Fatalf("set dirs %v", got)
	}
}

func TestRegularFileInTheWayIsReplaced(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	dir := t.TempDir()
	// A previous, non-atomic writer left plain files (and a wrong link).
	for _, name := range []string{svidFile, keyFile} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("old\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/elsewhere/bundle.pem", filepath.Join(dir, bundleFile)); err != nil {
		t.Fatal(err)
	}
	m := pki.freshMaterial(t)
	if _, err := newWriter(dir).Write(m.files(0o640)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{svidFile, keyFile, bundleFile} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			t.Fatalf("%s is still a %v", name, fi.Mode())
		}
	}
	readPair(t, dir)
}

func TestDirectoryInTheWayFails(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, svidFile), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := newWriter(dir).Write(pki.freshMaterial(t).files(0o640))
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("err = %v, want 'is a directory'", err)
	}
}

// A reader that resolves ..data once and reads both files from that set never
// gets a mismatched certificate and key, while sets are swapped underneath it.
func TestConcurrentReaderNeverSeesMismatch(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	dir := t.TempDir()
	w := newWriter(dir)
	mats := []*Material{pki.freshMaterial(t), pki.freshMaterial(t), pki.freshMaterial(t)}
	if _, err := w.Write(mats[0].files(0o640)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var reads, mismatches int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			set, err := os.Readlink(filepath.Join(dir, dataLink))
			if err != nil {
				continue
			}
			c, err1 := os.ReadFile(filepath.Join(dir, set, svidFile))
			k, err2 := os.ReadFile(filepath.Join(dir, set, keyFile))
			if err1 != nil || err2 != nil {
				continue // set removed meanwhile: re-resolve
			}
			reads++
			if _, err := tls.X509KeyPair(c, k); err != nil {
				mismatches++
			}
		}
	}()
	for i := 0; i < 300; i++ {
		if _, err := w.Write(mats[i%len(mats)].files(0o640)); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if mismatches != 0 {
		t.Fatalf("%d of %d reads saw a mismatched pair", mismatches, reads)
	}
	t.Logf("%d consistent reads during 300 swaps", reads)
	readPair(t, dir)
}

func TestWriteChown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	pki := newTestPKI(t, "example.com")
	dir := t.TempDir()
	w := &AtomicWriter{Dir: dir, UID: 4242, GID: 4343}
	if _, err := w.Write(pki.freshMaterial(t).files(0o640)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{svidFile, keyFile, bundleFile, dataLink} {
		uid, gid := ownerOf(t, filepath.Join(dir, name))
		if uid != 4242 || gid != 4343 {
			t.Errorf("%s owned by %d:%d", name, uid, gid)
		}
	}
}
