package workflowd

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// DefaultHTTPDeny returns the networks built-in HTTP steps may not reach by
// default: the host itself (loopback, unspecified), where the daemons'
// admin endpoints and every local service listen, and link-local
// addresses, where cloud metadata services answer. A workflow document is
// defined by whoever may call Define; without this, it could read them.
func DefaultHTTPDeny() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("::/128"),
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("fe80::/10"),
	}
}

// ParseNets parses a comma-separated list of CIDR prefixes or addresses
// (an address is its own /32 or /128); "" and "none" give none.
func ParseNets(s string) ([]netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR prefix nor an IP address", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// egressClient is the HTTP client of built-in HTTP steps: every
// connection (redirects included) is checked, once the name is resolved,
// against deny, so a name that resolves to a denied address is refused
// too. No proxy is used (a proxy would make the check judge the proxy's
// address, not the target's).
func egressClient(deny []netip.Prefix, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("workflowd: HTTP step to %s: %w", address, err)
		}
		ip := ap.Addr().Unmap()
		for _, p := range deny {
			if p.Contains(ip) {
				return fmt.Errorf("workflowd: HTTP step to %s refused: %s is in denied network %s (workflowd --http-deny)", address, ip, p)
			}
		}
		return nil
	}}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         d.DialContext,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}
