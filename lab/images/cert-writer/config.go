package main

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// Defaults, overridable through the environment.
const (
	defaultSocket   = "unix:///run/spire/sockets/agent.sock"
	defaultDir      = "/certs"
	defaultInterval = 300 * time.Second
	defaultKeyMode  = os.FileMode(0o640)
	certFileMode    = os.FileMode(0o644)
	maxRetryBackoff = 5 * time.Second
)

// maxIntervalSeconds keeps interval and 2*interval (used by -check) inside time.Duration.
const maxIntervalSeconds = math.MaxInt64 / int64(2*time.Second)

var digitsRE = regexp.MustCompile(`^[0-9]+$`)

// Config is the runtime configuration read from the environment.
type Config struct {
	Socket   string
	Dir      string
	Interval time.Duration
	SpiffeID string // empty: the default (first) SVID
	KeyMode  os.FileMode
	UID      int // -1: leave unchanged
	GID      int // -1: leave unchanged
}

// loadConfig reads the configuration through getenv (os.Getenv in production).
// Empty variables count as unset. Errors are one line, suitable for stderr.
func loadConfig(getenv func(string) string) (Config, error) {
	cfg := Config{
		Socket:   defaultSocket,
		Dir:      defaultDir,
		Interval: defaultInterval,
		KeyMode:  defaultKeyMode,
		UID:      -1,
		GID:      -1,
	}
	if v := getenv("SPIFFE_ENDPOINT_SOCKET"); v != "" {
		cfg.Socket = v
	}
	if err := workloadapi.ValidateAddress(cfg.Socket); err != nil {
		return cfg, fmt.Errorf("invalid SPIFFE_ENDPOINT_SOCKET %q: %v", cfg.Socket, err)
	}
	if v := getenv("CERT_WRITER_DIR"); v != "" {
		cfg.Dir = v
	}
	if v := getenv("CERT_WRITER_INTERVAL"); v != "" {
		d, err := parseInterval(v)
		if err != nil {
			return cfg, err
		}
		cfg.Interval = d
	}
	if v := getenv("CERT_WRITER_SPIFFE_ID"); v != "" {
		id, err := spiffeid.FromString(v)
		if err != nil {
			return cfg, fmt.Errorf("invalid CERT_WRITER_SPIFFE_ID %q: %v", v, err)
		}
		cfg.SpiffeID = id.String()
	}
	if v := getenv("CERT_WRITER_KEY_MODE"); v != "" {
		m, err := parseMode(v)
		if err != nil {
			return cfg, err
		}
		cfg.KeyMode = m
	}
	var err error
	if cfg.UID, err = parseID("CERT_WRITER_UID", getenv("CERT_WRITER_UID")); err != nil {
		return cfg, err
	}
	if cfg.GID, err = parseID("CERT_WRITER_GID", getenv("CERT_WRITER_GID")); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// parseInterval parses CERT_WRITER_INTERVAL: a positive whole number of seconds.
func parseInterval(v string) (time.Duration, error) {
	bad := fmt.Errorf("invalid CERT_WRITER_INTERVAL %q: must be a positive integer (seconds)", v)
	if !digitsRE.MatchString(v) {
		return 0, bad
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, bad
	}
	if n > maxIntervalSeconds {
		return 0, fmt.Errorf("invalid CERT_WRITER_INTERVAL %q: must be at most %d seconds", v, maxIntervalSeconds)
	}
	return time.Duration(n) * time.Second, nil
}

// parseMode parses CERT_WRITER_KEY_MODE as octal permission bits (0640, 640, 0o640).
func parseMode(v string) (os.FileMode, error) {
	s := strings.TrimPrefix(strings.TrimPrefix(v, "0o"), "0O")
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || s == "" || n > 0o777 {
		return 0, fmt.Errorf("invalid CERT_WRITER_KEY_MODE %q: must be octal permission bits between 0000 and 0777", v)
	}
	return os.FileMode(n), nil
}

// parseID parses an optional numeric uid/gid; -1 means unset.
func parseID(name, v string) (int, error) {
	if v == "" {
		return -1, nil
	}
	if !digitsRE.MatchString(v) {
		return 0, fmt.Errorf("invalid %s %q: must be a non-negative integer", name, v)
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q: out of range", name, v)
	}
	return int(n), nil
}
