package daemon

import (
	"crypto/tls"
	"net"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// AdvertiseAddr is the bus address other hosts reach this daemon at:
// --advertise-addr, else the bound bus address unless it listens on a
// wildcard (0.0.0.0, ::), which no one can dial; "" then, and before
// Start when the bus address has port 0.
func (rt *Runtime) AdvertiseAddr() string {
	if rt.common.AdvertiseAddr != "" {
		return rt.common.AdvertiseAddr
	}
	a, ok := rt.Bus.Addr().(*net.UDPAddr)
	if !ok || a == nil || a.IP.IsUnspecified() {
		return ""
	}
	return a.String()
}

// advertisedHost is the host other hosts will dial this daemon at, when
// it is known before start and is not a loopback or wildcard one (a
// daemon bound to loopback serves its own host only): the host of
// --advertise-addr, else of --bus-addr.
func advertisedHost(c config.Common) string {
	addr := c.AdvertiseAddr
	if addr == "" {
		addr = c.BusAddr
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" || host == "localhost" {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		return ""
	}
	return host
}

// checkCertificate refuses a node certificate that is not valid for the
// host this daemon is advertised at.
func checkCertificate(c config.Common, tc *tls.Config) error {
	if host := advertisedHost(c); host != "" {
		return tlsutil.CheckHost(tc, host)
	}
	return nil
}
