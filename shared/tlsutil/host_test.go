package tlsutil

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckHost(t *testing.T) {
	dir := t.TempDir()
	caDir, out := filepath.Join(dir, "ca"), filepath.Join(dir, "n1")
	if err := CreateCA(caDir); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateNode(caDir, out, "host1", []string{"10.0.0.5", "host1.example", "fd00::5"}, 0); err != nil {
		t.Fatal(err)
	}
	tc, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"10.0.0.5", true},
		{"host1.example", true},
		{"fd00::5", true},
		{ServerName, true},
		{"10.0.0.6", false},
		{"host2.example", false},
		{"127.0.0.1", false},
	} {
		err := CheckHost(tc, tt.host)
		if (err == nil) != tt.ok {
			t.Errorf("CheckHost(%q) = %v; want ok=%v", tt.host, err, tt.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "10.0.0.5") || !strings.Contains(err.Error(), "create-node --hosts "+tt.host)) {
			t.Errorf("CheckHost(%q) error %q lacks the certificate's hosts or the remedy", tt.host, err)
		}
	}
	if err := CheckHost(&tls.Config{}, "x"); err == nil {
		t.Error("CheckHost without a certificate: no error")
	}
}
