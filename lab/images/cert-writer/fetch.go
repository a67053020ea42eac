package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// File names in the certs directory.
const (
	svidFile   = "svid.pem"
	keyFile    = "svid_key.pem"
	bundleFile = "bundle.pem"
)

// X509ContextFetcher is the part of *workloadapi.Client that cert-writer uses.
type X509ContextFetcher interface {
	FetchX509Context(ctx context.Context) (*workloadapi.X509Context, error)
}

// Material is one SVID, its key and its trust domain's bundle, PEM encoded,
// plus the facts that get logged (never the key).
type Material struct {
	SpiffeID  string
	Serial    string // lowercase hex
	NotAfter  time.Time
	BundleCAs int

	CertPEM   []byte // leaf followed by intermediates
	KeyPEM    []byte // PKCS#8
	BundlePEM []byte // X.509 authorities of the SVID's trust domain
}

// selectSVID picks the SVID with the wanted SPIFFE ID, or the default (first) one.
func selectSVID(xc *workloadapi.X509Context, want string) (*x509svid.SVID, error) {
	if xc == nil || len(xc.SVIDs) == 0 {
		return nil, errors.New("workload API returned no X.509 SVIDs")
	}
	if want == "" {
		return xc.DefaultSVID(), nil
	}
	ids := make([]string, 0, len(xc.SVIDs))
	for _, s := range xc.SVIDs {
		if s.ID.String() == want {
			return s, nil
		}
		ids = append(ids, s.ID.String())
	}
	return nil, fmt.Errorf("no SVID with SPIFFE ID %s among the %d issued to this workload (%s)",
		want, len(ids), strings.Join(ids, ", "))
}

// materialFromContext turns an X.509 context into the files to write.
func materialFromContext(xc *workloadapi.X509Context, want string) (*Material, error) {
	svid, err := selectSVID(xc, want)
	if err != nil {
		return nil, err
	}
	if len(svid.Certificates) == 0 || svid.PrivateKey == nil {
		return nil, fmt.Errorf("SVID %s has no certificate or key", svid.ID)
	}
	td := svid.ID.TrustDomain()
	var cas []*x509.Certificate
	if xc.Bundles != nil {
		if b, ok := xc.Bundles.Get(td); ok {
			cas = b.X509Authorities()
		}
	}
	if len(cas) == 0 {
		return nil, fmt.Errorf("no X.509 authorities for trust domain %s in the workload API response", td)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("encode private key of %s: %v", svid.ID, err)
	}
	leaf := svid.Certificates[0]
	return &Material{
		SpiffeID:  svid.ID.String(),
		Serial:    leaf.SerialNumber.Text(16),
		NotAfter:  leaf.NotAfter.UTC(),
		BundleCAs: len(cas),
		CertPEM:   encodeCerts(svid.Certificates),
		KeyPEM:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		BundlePEM: encodeCerts(cas),
	}, nil
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// files lists the set to write for m.
func (m *Material) files(keyMode os.FileMode) []File {
	return []File{
		{Name: svidFile, Data: m.CertPEM, Mode: certFileMode},
		{Name: keyFile, Data: m.KeyPEM, Mode: keyMode},
		{Name: bundleFile, Data: m.BundlePEM, Mode: certFileMode},
	}
}
