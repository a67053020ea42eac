package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// CheckResult describes a healthy certs directory.
type CheckResult struct {
	SpiffeID string
	NotAfter time.Time
	Age      time.Duration // since the current set was written
}

// checkDir is the -check logic: healthy iff svid.pem is there, its leaf has not
// expired, and the current set (the ..data target directory) was written less
// than 2*interval ago. The error says why not, in one line.
func checkDir(dir string, interval time.Duration, now time.Time) (CheckResult, error) {
	var res CheckResult
	path := filepath.Join(dir, svidFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("%s does not exist", path)
	}
	if err != nil {
		return res, fmt.Errorf("cannot read %s: %v", path, err)
	}
	leaf, err := firstCertificate(data)
	if err != nil {
		return res, fmt.Errorf("%s: %v", path, err)
	}
	res.NotAfter = leaf.NotAfter.UTC()
	if len(leaf.URIs) > 0 {
		res.SpiffeID = leaf.URIs[0].String()
	}
	if !now.Before(leaf.NotAfter) {
		return res, fmt.Errorf("SVID in %s expired at %s (serial=%s)",
			path, res.NotAfter.Format(time.RFC3339), leaf.SerialNumber.Text(16))
	}
	link := filepath.Join(dir, dataLink)
	fi, err := os.Stat(link) // the target set directory
	if err != nil {
		return res, fmt.Errorf("cannot stat %s: %v", link, err)
	}
	res.Age = now.Sub(fi.ModTime())
	if res.Age < 0 {
		res.Age = 0 // clock went backwards: not stale
	}
	if res.Age >= 2*interval {
		return res, fmt.Errorf("stale: current set in %s written %s ago at %s, limit is 2x interval = %s",
			dir, res.Age.Truncate(time.Second), fi.ModTime().UTC().Format(time.RFC3339), 2*interval)
	}
	return res, nil
}

func firstCertificate(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM certificate found")
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("cannot parse certificate: %v", err)
			}
			return c, nil
		}
	}
}
