package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakeWorkloadAPI answers FetchX509SVID like a SPIRE agent: it requires the
// security header, sends the current response and keeps the stream open.
// (go-spiffe's own fake lives in an internal package and cannot be imported.)
type fakeWorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	mu   sync.Mutex
	resp *workload.X509SVIDResponse
}

func (f *fakeWorkloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	f.mu.Lock()
	resp := f.resp
	f.mu.Unlock()
	if resp == nil {
		return status.Error(codes.PermissionDenied, "no identity issued")
	}
	if err := stream.Send(resp); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (f *fakeWorkloadAPI) set(resp *workload.X509SVIDResponse) {
	f.mu.Lock()
	f.resp = resp
	f.mu.Unlock()
}

// startFakeAgent serves the fake on a unix socket and returns its address.
func startFakeAgent(t *testing.T, resp *workload.X509SVIDResponse) (*fakeWorkloadAPI, string) {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "cw") // short path: unix socket names are limited
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, "agent.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeWorkloadAPI{resp: resp}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		_ = os.RemoveAll(sockDir)
	})
	return fake, "unix://" + sock
}

func svidResponse(t *testing.T, pki *testPKI, svids ...*x509svid.SVID) *workload.X509SVIDResponse {
	t.Helper()
	resp := &workload.X509SVIDResponse{}
	for _, s := range svids {
		var chain []byte
		for _, c := range s.Certificates {
			chain = append(chain, c.Raw...)
		}
		key, err := x509.MarshalPKCS8PrivateKey(s.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		resp.Svids = append(resp.Svids, &workload.X509SVID{
			SpiffeId:    s.ID.String(),
			X509Svid:    chain,
			X509SvidKey: key,
			Bundle:      pki.root.Raw,
		})
	}
	return resp
}

var fetchedLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ cert-writer: fetched SVID spiffe_id=(\S+) serial=([0-9a-f]+) not_after=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ bundle_cas=1 dir=(\S+)$`)

func TestOnceAgainstFakeWorkloadAPI(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	now := time.Now()
	other := pki.issue(t, "spiffe://example.com/service/other", now.Add(-time.Minute), now.Add(time.Hour))
	mine := pki.issue(t, testID, now.Add(-time.Minute), now.Add(time.Hour))
	_, addr := startFakeAgent(t, svidResponse(t, pki, other, mine))

	dir := t.TempDir()
	env := map[string]string{"SPIFFE_ENDPOINT_SOCKET": addr, "CERT_WRITER_DIR": dir, "CERT_WRITER_KEY_MODE": "0600"}

	// Default: the first SVID.
	var out, errOut bytes.Buffer
	if code := run([]string{"-once", "-timeout", "10s"}, envFunc(env), &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	m := fetchedLine.FindStringSubmatch(strings.TrimSuffix(out.String(), "\n"))
	if m == nil || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("log %q does not match the expected single line", out.String())
	}
	if m[1] != "spiffe://example.com/service/other" || m[3] != dir {
		t.Fatalf("log %q", out.String())
	}

	// Pick by SPIFFE ID.
	env["CERT_WRITER_SPIFFE_ID"] = testID
	out.Reset()
	if code := run([]string{"-once"}, envFunc(env), &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stdout %q", code, out.String())
	}
	m = fetchedLine.FindStringSubmatch(strings.TrimSuffix(out.String(), "\n"))
	if m == nil || m[1] != testID || m[2] != mine.Certificates[0].SerialNumber.Text(16) {
		t.Fatalf("log %q", out.String())
	}
	if strings.Contains(out.String(), "PRIVATE") || strings.Contains(errOut.String(), "PRIVATE") {
		t.Fatal("key material in the logs")
	}
	leaf := readPair(t, dir)
	if leaf.URIs[0].String() != testID {
		t.Fatalf("svid.pem holds %s", leaf.URIs[0])
	}
	if fi, _ := os.Stat(filepath.Join(dir, keyFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %o", fi.Mode().Perm())
	}
	if got := setDirs(t, dir); len(got) != 1 {
		t.Fatalf("set dirs %v", got)
	}
	out.Reset()
	if code := run([]string{"-check"}, envFunc(env), &out, &errOut); code != 0 {
		t.Fatalf("-check after -once: exit %d, %q", code, out.String())
	}

	// An ID the agent did not issue: clear failure, nothing replaced.
	env["CERT_WRITER_SPIFFE_ID"] = "spiffe://example.com/service/absent"
	out.Reset()
	if code := run([]string{"-once"}, envFunc(env), &out, &errOut); code != 1 {
		t.Fatalf("absent ID: exit %d", code)
	}
	if !strings.Contains(out.String(), "cert-writer: fetch failed: no SVID with SPIFFE ID spiffe://example.com/service/absent") {
		t.Fatalf("absent ID: log %q", out.String())
	}
	if leaf := readPair(t, dir); leaf.URIs[0].String() != testID {
		t.Fatal("failed fetch replaced the files")
	}
}

func TestOnceFailsWithoutAgent(t *testing.T) {
	dir := t.TempDir()
	env := envFunc(map[string]string{"SPIFFE_ENDPOINT_SOCKET": "unix://" + filepath.Join(dir, "none.sock"), "CERT_WRITER_DIR": dir})
	var out, errOut bytes.Buffer
	start := time.Now()
	code := run([]string{"-once", "-timeout", "5s"}, env, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	if time.Since(start) > 6*time.Second {
		t.Fatal("-timeout not honoured")
	}
	if !regexp.MustCompile(`^\S+ cert-writer: fetch failed: [^\n]+\n$`).MatchString(out.String()) {
		t.Fatalf("log %q", out.String())
	}
}

func TestLoopKeepsWritingAndRetries(t *testing.T) {
	pki := newTestPKI(t, "example.com")
	fake, addr := startFakeAgent(t, nil) // no identity yet: PermissionDenied
	client, err := workloadapi.New(context.Background(), workloadapi.WithAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	dir := t.TempDir()
	out := &syncBuffer{}
	w := &writerLoop{
		cfg:     Config{Socket: addr, Dir: dir, Interval: time.Second, UID: -1, GID: -1, KeyMode: 0o640},
		src:     client,
		writer:  newWriter(dir),
		log:     &logger{w: out, now: time.Now},
		timeout: 5 * time.Second,
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	stopped := make(chan struct{})
	go func() { w.loop(ctx); close(stopped) }()

	waitFor(t, out, "fetch failed:", 1)
	now := time.Now()
	fake.set(svidResponse(t, pki, pki.issue(t, testID, now.Add(-time.Minute), now.Add(time.Hour))))
	waitFor(t, out, "fetched SVID", 2) // retried after the failure, then again after the interval
	cancel(errors.New("terminated"))
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("loop did not stop")
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.HasSuffix(last, "cert-writer: stopping: terminated") {
		t.Fatalf("last line %q", last)
	}
	for _, l := range lines {
		if strings.Contains(l, "fetched SVID") && !fetchedLine.MatchString(l) {
			t.Fatalf("bad line %q", l)
		}
	}
	if got := setDirs(t, dir); len(got) != 1 {
		t.Fatalf("set dirs %v", got)
	}
	readPair(t, dir)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, out *syncBuffer, substr string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(out.String(), substr) < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d x %q; log:\n%s", n, substr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
