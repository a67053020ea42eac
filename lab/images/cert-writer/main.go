// Command cert-writer fetches the workload's X.509 SVID, private key and trust
// bundle from the SPIRE agent's Workload API and writes them, atomically as a
// set, into a directory shared with other containers (nginx, the registry).
//
// Environment:
//
//	SPIFFE_ENDPOINT_SOCKET  Workload API address (default unix:///run/spire/sockets/agent.sock)
//	CERT_WRITER_DIR         output directory (default /certs)
//	CERT_WRITER_INTERVAL    seconds between fetches, positive integer (default 300)
//	CERT_WRITER_SPIFFE_ID   pick the SVID with this SPIFFE ID (default: the first SVID)
//	CERT_WRITER_KEY_MODE    octal mode of svid_key.pem (default 0640)
//	CERT_WRITER_UID/GID     owner of the written files (default: unchanged)
//
// Exit codes: 0 ok, 1 fetch/check failed, 2 usage or configuration error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cert-writer", flag.ContinueOnError)
	fl.SetOutput(stderr)
	once := fl.Bool("once", false, "fetch and write once, then exit (non-zero on failure)")
	check := fl.Bool("check", false, "health check: exit 0 iff the written SVID is present, unexpired and fresh (< 2x interval)")
	timeout := fl.Duration("timeout", 30*time.Second, "timeout of one Workload API fetch")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "cert-writer: %s\n", msg)
		return 2
	}
	switch {
	case fl.NArg() > 0:
		return usageErr(fmt.Sprintf("unexpected arguments: %s", strings.Join(fl.Args(), " ")))
	case *once && *check:
		return usageErr("-once and -check are mutually exclusive")
	case *timeout <= 0:
		return usageErr("-timeout must be positive")
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return usageErr(err.Error())
	}
	log := &logger{w: stdout, now: time.Now}

	if *check {
		res, err := checkDir(cfg.Dir, cfg.Interval, time.Now())
		if err != nil {
			log.printf("check failed: %v", err)
			return 1
		}
		log.printf("check ok: spiffe_id=%s not_after=%s age=%s dir=%s",
			res.SpiffeID, res.NotAfter.Format(time.RFC3339), res.Age.Truncate(time.Second), cfg.Dir)
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(cfg.Socket))
	if err != nil {
		log.printf("fetch failed: workload API client: %v", err)
		return 1
	}
	defer client.Close()

	w := &writerLoop{
		cfg:     cfg,
		src:     client,
		writer:  &AtomicWriter{Dir: cfg.Dir, UID: cfg.UID, GID: cfg.GID},
		log:     log,
		timeout: *timeout,
	}
	if *once {
		if err := w.fetchAndWrite(ctx); err != nil {
			log.printf("fetch failed: %v", err)
			return 1
		}
		return 0
	}
	w.loop(ctx)
	return 0
}

// writerLoop fetches and writes every interval until its context ends.
type writerLoop struct {
	cfg     Config
	src     X509ContextFetcher
	writer  *AtomicWriter
	log     *logger
	timeout time.Duration
}

func (w *writerLoop) loop(ctx context.Context) {
	for {
		err := w.fetchAndWrite(ctx)
		if err != nil && ctx.Err() != nil {
			break // interrupted by a signal: not a fetch failure
		}
		wait := w.cfg.Interval
		if err != nil {
			w.log.printf("fetch failed: %v", err)
			wait = min(w.cfg.Interval, maxRetryBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	w.log.printf("stopping: %v", context.Cause(ctx))
}

// fetchAndWrite does one fetch and one atomic write, and logs the success line.
func (w *writerLoop) fetchAndWrite(ctx context.Context) error {
	fctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	xc, err := w.src.FetchX509Context(fctx)
	if err != nil {
		if ctx.Err() == nil && errors.Is(fctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("no answer from %s within %s: %v", w.cfg.Socket, w.timeout, err)
		}
		return fmt.Errorf("%s: %v", w.cfg.Socket, err)
	}
	m, err := materialFromContext(xc, w.cfg.SpiffeID)
	if err != nil {
		return err
	}
	res, err := w.writer.Write(m.files(w.cfg.KeyMode))
	if err != nil {
		return fmt.Errorf("write %s: %v", w.cfg.Dir, err)
	}
	w.log.printf("fetched SVID spiffe_id=%s serial=%s not_after=%s bundle_cas=%d dir=%s",
		m.SpiffeID, m.Serial, m.NotAfter.Format(time.RFC3339), m.BundleCAs, w.cfg.Dir)
	if res.CleanupErr != nil {
		w.log.printf("warning: removing older sets in %s: %v", w.cfg.Dir, res.CleanupErr)
	}
	return nil
}

// logger writes "<RFC3339 UTC> cert-writer: <message>" lines, one per call.
type logger struct {
	w   io.Writer
	now func() time.Time
}

var oneLine = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

func (l *logger) printf(format string, args ...any) {
	msg := oneLine.Replace(fmt.Sprintf(format, args...))
	fmt.Fprintf(l.w, "%s cert-writer: %s\n", l.now().UTC().Format(time.RFC3339), msg)
}
