package service

import (
	"context"

	"atende/cell"
	"atende/cell/auth"
)

// clientIPKey is the context key of the caller's address.
type clientIPKey struct{}

// WithClientIP returns ctx carrying the caller's IP address, recorded in audit entries.
func WithClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, clientIPKey{}, ip)
}

func clientIP(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey{}).(string)
	return ip
}

// Audit records an entry (its ID, time and IP are filled in here). Auditing never fails the
// action it records: a failed write is logged.
func (s *Service) Audit(ctx context.Context, e cell.AuditEntry) {
	e.ID, e.At, e.IP = auth.RandomID(), s.now(), clientIP(ctx)
	if err := s.store.InsertAudit(context.WithoutCancel(ctx), &e); err != nil {
		s.log.Error("audit entry not stored", "action", e.Action, "error", err)
	}
}

// MaxAuditPage is the most audit entries one read returns.
const MaxAuditPage = 500

// AuditLog returns the tenant's newest audit entries (tenant-admin only).
func (s *Service) AuditLog(ctx context.Context, p cell.Principal) ([]cell.AuditEntry, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	return s.store.AuditLog(ctx, MaxAuditPage)
}
