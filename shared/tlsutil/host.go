package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// Hosts returns the IP addresses and DNS names the node certificate of tc
// is valid for (ServerName included).
func Hosts(tc *tls.Config) ([]string, error) {
	leaf, err := leafOf(tc)
	if err != nil {
		return nil, err
	}
	out := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		out = append(out, ip.String())
	}
	return out, nil
}

// CheckHost reports whether the node certificate of tc is valid for host,
// an IP address or a DNS name, with an error that lists the names it
// carries and says how to issue a matching one.
func CheckHost(tc *tls.Config, host string) error {
	leaf, err := leafOf(tc)
	if err != nil {
		return err
	}
	if err := leaf.VerifyHostname(host); err != nil {
		hosts, _ := Hosts(tc)
		return fmt.Errorf("tlsutil: the node certificate (%s) is valid for %s, not for %q: "+
			"issue one with `pleiades cert create-node --hosts %s ...`", leaf.Subject.CommonName, strings.Join(hosts, ", "), host, host)
	}
	return nil
}

// Leaf returns the certificate tc presents (its first).
func Leaf(tc *tls.Config) (*x509.Certificate, error) { return leafOf(tc) }

func leafOf(tc *tls.Config) (*x509.Certificate, error) {
	if tc == nil || len(tc.Certificates) == 0 || len(tc.Certificates[0].Certificate) == 0 {
		return nil, errors.New("tlsutil: no node certificate")
	}
	c := tc.Certificates[0]
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("tlsutil: parse the node certificate: %w", err)
	}
	return leaf, nil
}
