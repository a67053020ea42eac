package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func writeSet(t *testing.T, dir string, m *Material) string {
	t.Helper()
	res, err := newWriter(dir).Write(m.files(0o640))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, res.DataDir)
}

func TestCheckFresh(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	dir := t.TempDir()
	writeSet(t, dir, pki.freshMaterial(t))
	res, err := checkDir(dir, 300*time.Second, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.SpiffeID != testID || res.Age > time.Minute {
		t.Fatalf("unexpected result %+v", res)
	}
	// Just under the limit is still healthy.
	if _, err := checkDir(dir, 300*time.Second, time.Now().Add(599*time.Second)); err != nil {
		t.Fatalf("at 599s: %v", err)
	}
}

func TestCheckStale(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	dir := t.TempDir()
	set := writeSet(t, dir, pki.freshMaterial(t))
	old := time.Now().Add(-11 * time.Minute)
	if err := os.Chtimes(set, old, old); err != nil {
		t.Fatal(err)
	}
	_, err := checkDir(dir, 300*time.Second, time.Now())
	if err == nil || !strings.Contains(err.Error(), "stale") {
		t.Fatalf("err = %v, want stale", err)
	}
	// With a longer interval the same set is fresh.
	if _, err := checkDir(dir, 600*time.Second, time.Now()); err != nil {
		t.Fatalf("interval 600s: %v", err)
	}
}

func TestCheckExpired(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	dir := t.TempDir()
	now := time.Now()
	m, err := materialFromContext(pki.context(pki.issue(t, testID, now.Add(-2*time.Hour), now.Add(-time.Minute))), "")
	if err != nil {
		t.Fatal(err)
	}
	writeSet(t, dir, m) // freshly written, but the leaf has expired
	_, err = checkDir(dir, 300*time.Second, now)
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err = %v, want expired", err)
	}
}

func TestCheckMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := checkDir(dir, 300*time.Second, time.Now())
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("err = %v", err)
	}
	// Plain svid.pem without the ..data layout is not healthy either.
	pki := newTestPKI(t, "example.com")
	if err := os.WriteFile(filepath.Join(dir, svidFile), pki.freshMaterial(t).CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := checkDir(dir, 300*time.Second, time.Now()); err == nil || !strings.Contains(err.Error(), dataLink) {
		t.Fatalf("err = %v, want ..data missing", err)
	}
}

func TestRunCheckExitCodes(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	dir := t.TempDir()
	env := envFunc(map[string]string{"CERT_WRITER_DIR": dir, "CERT_WRITER_INTERVAL": "60"})
	line := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ cert-writer: check (ok|failed): [^\n]+\n$`)

	var out, errOut bytes.Buffer
	if code := run([]string{"-check"}, env, &out, &errOut); code != 1 || !line.MatchString(out.String()) {
		t.Fatalf("empty dir: exit %d, out %q", code, out.String())
	}
	set := writeSet(t, dir, pki.freshMaterial(t))
	out.Reset()
	if code := run([]string{"-check"}, env, &out, &errOut); code != 0 || !line.MatchString(out.String()) {
		t.Fatalf("fresh: exit %d, out %q", code, out.String())
	}
	old := time.Now().Add(-3 * time.Minute)
	if err := os.Chtimes(set, old, old); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"-check"}, env, &out, &errOut); code != 1 || !strings.Contains(out.String(), "stale") {
		t.Fatalf("stale: exit %d, out %q", code, out.String())
	}
}
