package web

import "github.com/gofiber/fiber/v2"

// JWKSPath is where a cell publishes its JWK Set (RFC 8615 well-known URI; RFC 7517 §5).
const JWKSPath = "/.well-known/jwks.json"

// jwks serves the cell's public verification keys, without authentication, on the tenant's
// hosts only (it is registered after the Host check). Caches may keep it for 5 minutes: a key
// rotation restarts the cell, and the retired key stays listed long after that.
func (s *Server) jwks(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, "application/jwk-set+json")
	c.Set(fiber.HeaderCacheControl, "public, max-age=300")
	return c.Send(s.svc.JWKS())
}
