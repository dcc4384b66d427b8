package web

import (
	"net/url"
	"strings"

	"atende/cell"
	"atende/cell/auth"

	"github.com/gofiber/fiber/v2"
)

// Compat tenancy (cell.TenancyCompat): what a cell accepts without the tenant context while the
// clients of a tenant migrated from the single-tenant app switch over, and how each acceptance is
// made visible. Checks named in atende_cell_compat_accepted_total{check}:
const (
	// compatCheckHost: a request whose Host is not one of the tenant's hosts was served.
	compatCheckHost = "host"
	// compatCheckToken: a token of this cell without a tenantId claim was accepted.
	compatCheckToken = "token"
	// compatCheckOrigin: a WebSocket was opened from a page of the legacy host it was served on
	// (its Origin is the request's own Host, which compat mode served).
	compatCheckOrigin = "origin"
)

// parentDomains returns the parent domain of each tenant host ("acme.localhost" → "localhost"):
// in compat mode a Host under one of them that is not the tenant's own is another tenant's
// subdomain and stays refused.
func parentDomains(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		if _, parent, ok := strings.Cut(strings.ToLower(h), "."); ok && parent != "" {
			out = append(out, parent)
		}
	}
	return out
}

// compatHost reports whether compat mode serves host, which is not one of the tenant's hosts: a
// non-empty Host that is not a subdomain of the platform domain (the old bare domain, an IP
// address, the legacy app's own domain).
func (s *Server) compatHost(host string) bool {
	if !s.compat || host == "" {
		return false
	}
	for _, d := range s.domains {
		if strings.HasSuffix(host, "."+d) {
			return false
		}
	}
	return true
}

// acceptCompatHost counts and logs a request served in compat mode although its Host is not the
// tenant's.
func (s *Server) acceptCompatHost(c *fiber.Ctx, host string) {
	s.metrics.compatAccepted.WithLabelValues(compatCheckHost).Inc()
	rid, _ := c.Locals("requestid").(string)
	s.log.Info("compat tenancy: request served without the tenant's host", "check", compatCheckHost,
		"host", host, "method", c.Method(), "path", c.Path(), "requestId", rid)
}

// compatOrigin reports whether compat mode lets a WebSocket open from origin although it is not
// one of the tenant's origins: only a same-origin page of a Host compat mode serves (the Origin's
// host and port are exactly the request's Host, which is not the tenant's), so a page served on
// the old domain keeps its socket. The acceptance is counted and logged.
func (s *Server) compatOrigin(c *fiber.Ctx, origin string) bool {
	if !s.compat {
		return false
	}
	u, err := url.Parse(origin)
	reqHost := strings.ToLower(string(c.Request().Host()))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || strings.ToLower(u.Host) != reqHost {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if s.hosts[host] || !s.compatHost(host) {
		return false
	}
	s.metrics.compatAccepted.WithLabelValues(compatCheckOrigin).Inc()
	rid, _ := c.Locals("requestid").(string)
	s.log.Info("compat tenancy: socket opened from the legacy host's own page", "check", compatCheckOrigin,
		"origin", origin, "requestId", rid)
	return true
}

// ObserveImpliedTenant is the observer to pass to auth.Authority.AcceptImpliedTenant when the
// cell runs in compat tenancy (cell.TenancyCompat): it counts the token accepted without a
// tenantId claim in atende_cell_compat_accepted_total{check="token"} and logs its subject and
// type (never the token).
func (s *Server) ObserveImpliedTenant(c *auth.Claims) {
	s.metrics.compatAccepted.WithLabelValues(compatCheckToken).Inc()
	s.log.Info("compat tenancy: token accepted without a tenantId claim", "check", compatCheckToken,
		"subject", c.Subject, "tokenType", c.Type)
}

// compatMode reports whether cfg asks for compat tenancy.
func compatMode(cfg cell.Config) bool { return cfg.Tenancy == cell.TenancyCompat }
