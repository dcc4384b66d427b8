package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// ErrBlockedAddress is returned (wrapped) for an attempt whose host is, or resolves to, an address
// the SSRF guard refuses (see PublicAddr).
var ErrBlockedAddress = errors.New("address not allowed for webhooks")

// nonPublic lists the special-purpose ranges (IANA special-purpose address registries, RFC 6890)
// that net/netip's predicates do not already cover and a webhook must not reach.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network" (RFC 791)
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space, CGNAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments (RFC 6890)
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1 (RFC 5737)
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking (RFC 2544)
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2 (RFC 5737)
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3 (RFC 5737)
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and 255.255.255.255 broadcast (RFC 1112)
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64, embeds any IPv4 address (RFC 6052)
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64 (RFC 8215)
	netip.MustParsePrefix("100::/64"),        // discard-only (RFC 6666)
	netip.MustParsePrefix("2001::/32"),       // Teredo, embeds an IPv4 address (RFC 4380)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation (RFC 3849)
	netip.MustParsePrefix("2002::/16"),       // 6to4, embeds an IPv4 address (RFC 3056)
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local (RFC 3879)
}

// PublicAddr reports whether a webhook may connect to a: false for unspecified, loopback,
// private (RFC 1918, fc00::/7), link-local (169.254.0.0/16 with cloud metadata endpoints,
// fe80::/10), multicast and the special-purpose ranges above; an IPv4-mapped IPv6 address is
// judged as its IPv4 address.
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsPrivate() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// guard dials webhook endpoints: it resolves the host itself, refuses the dial if any address is
// not public (unless allowPrivate), and connects to the checked addresses only.
type guard struct {
	allowPrivate bool
	resolver     *net.Resolver
	dialer       *net.Dialer
}

func newGuard(allowPrivate bool, timeout time.Duration) *guard {
	g := &guard{allowPrivate: allowPrivate, resolver: net.DefaultResolver}
	g.dialer = &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second,
		// Defence in depth: whatever address the dialer ends up connecting to is checked again.
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("webhook dial %s: %w", address, ErrBlockedAddress)
			}
			return g.check(ap.Addr())
		}}
	return g
}

func (g *guard) check(a netip.Addr) error {
	if g.allowPrivate || PublicAddr(a) {
		return nil
	}
	return fmt.Errorf("%s: %w", a.Unmap(), ErrBlockedAddress)
}

// DialContext resolves addr's host, checks every address and dials the first that connects.
func (g *guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("webhook: port %q: %w", portStr, err)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		if err := g.check(a); err != nil {
			return nil, err
		}
		addrs = []netip.Addr{a}
	} else {
		addrs, err = g.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		// Every address must pass, so a name cannot mix a public and an internal address and
		// hope the dial falls through to the internal one.
		for _, a := range addrs {
			if err := g.check(a); err != nil {
				return nil, fmt.Errorf("%s resolves to %w", host, err)
			}
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("webhook: %s has no address", host)
	}
	var firstErr error
	for _, a := range addrs {
		conn, err := g.dialer.DialContext(ctx, network, netip.AddrPortFrom(a.Unmap(), uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// newHTTPClient returns the client of every attempt: guarded dials, no proxy from the
// environment (it would dial for us, unchecked), no redirects (a 3xx is a failed attempt, and a
// redirect could point inside), and timeout as the limit of a whole attempt.
func newHTTPClient(allowPrivate bool, timeout time.Duration) *http.Client {
	g := newGuard(allowPrivate, timeout)
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         g.DialContext,
			ForceAttemptHTTP2:   true,
			TLSHandshakeTimeout: timeout,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
