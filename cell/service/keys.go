package service

// JWKS returns the cell's JWK Set as JSON (see auth.Authority.JWKS): the public keys that verify
// the tenant's tokens, the active signing key first. It holds no secret.
func (s *Service) JWKS() []byte { return s.auth.JWKS() }
