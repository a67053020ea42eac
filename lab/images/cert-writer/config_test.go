package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseInterval(t *testing.T) {
	good := map[string]time.Duration{"1": time.Second, "300": 300 * time.Second, "0300": 300 * time.Second}
	for in, want := range good {
		got, err := parseInterval(in)
		if err != nil || got != want {
			t.Errorf("parseInterval(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "00", "-5", "+5", "abc", "1.5", " 300", "300 ", "300s", "5m", "1e3", "99999999999999999999", "9223372036"} {
		if d, err := parseInterval(in); err == nil {
			t.Errorf("parseInterval(%q) = %v, want an error", in, d)
		} else if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "CERT_WRITER_INTERVAL") {
			t.Errorf("parseInterval(%q) error %q is not one line naming the variable", in, err)
		}
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(envFunc(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Socket: "unix:///run/spire/sockets/agent.sock", Dir: "/certs", Interval: 300 * time.Second,
		KeyMode: 0o640, UID: -1, GID: -1}
	if cfg != want {
		t.Fatalf("defaults %+v, want %+v", cfg, want)
	}
}

func TestLoadConfigValues(t *testing.T) {
	cfg, err := loadConfig(envFunc(map[string]string{
		"SPIFFE_ENDPOINT_SOCKET": "unix:///tmp/agent.sock",
		"CERT_WRITER_DIR":        "/srv/certs",
		"CERT_WRITER_INTERVAL":   "60",
		"CERT_WRITER_SPIFFE_ID":  testID,
		"CERT_WRITER_KEY_MODE":   "600",
		"CERT_WRITER_UID":        "101",
		"CERT_WRITER_GID":        "0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Socket: "unix:///tmp/agent.sock", Dir: "/srv/certs", Interval: time.Minute,
		SpiffeID: testID, KeyMode: 0o600, UID: 101, GID: 0}
	if cfg != want {
		t.Fatalf("got %+v, want %+v", cfg, want)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	cases := map[string]map[string]string{
		"CERT_WRITER_INTERVAL":   {"CERT_WRITER_INTERVAL": "5m"},
		"CERT_WRITER_KEY_MODE":   {"CERT_WRITER_KEY_MODE": "0800"},
		"CERT_WRITER_UID":        {"CERT_WRITER_UID": "-1"},
		"CERT_WRITER_GID":        {"CERT_WRITER_GID": "www-data"},
		"CERT_WRITER_SPIFFE_ID":  {"CERT_WRITER_SPIFFE_ID": "https://example.com/x"},
		"SPIFFE_ENDPOINT_SOCKET": {"SPIFFE_ENDPOINT_SOCKET": "/run/spire/sockets/agent.sock"},
	}
	for name, env := range cases {
		_, err := loadConfig(envFunc(env))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v, want an error naming it", name, err)
		}
	}
	for _, bad := range []string{"abc", "1000", "", "0o", "9"} {
		if _, err := parseMode(bad); err == nil {
			t.Errorf("parseMode(%q) accepted", bad)
		}
	}
	for in, want := range map[string]os.FileMode{"0640": 0o640, "640": 0o640, "0o600": 0o600, "0": 0} {
		if got, err := parseMode(in); err != nil || got != want {
			t.Errorf("parseMode(%q) = %o, %v", in, got, err)
		}
	}
}

// A bad interval is a configuration error: exit 2 and exactly one line on stderr.
func TestRunBadIntervalExitsTwo(t *testing.T) {
	for _, v := range []string{"0", "-1", "abc", "2.5"} {
		var stdout, stderr bytes.Buffer
		code := run([]string{"-once"}, envFunc(map[string]string{"CERT_WRITER_INTERVAL": v, "CERT_WRITER_DIR": t.TempDir()}), &stdout, &stderr)
		if code != 2 {
			t.Errorf("interval %q: exit %d, want 2", v, code)
		}
		if n := strings.Count(stderr.String(), "\n"); n != 1 || !strings.Contains(stderr.String(), "CERT_WRITER_INTERVAL") {
			t.Errorf("interval %q: stderr %q, want one line naming CERT_WRITER_INTERVAL", v, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("interval %q: unexpected stdout %q", v, stdout.String())
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"-once", "-check"}, {"-timeout", "0s"}, {"extra"}, {"-nope"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, envFunc(nil), &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
