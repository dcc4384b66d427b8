package api

import (
	"context"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"atende/controlplane"
)

// cancelDeletion answers POST /api/tenants/{idOrKey}/cancel-delete.
func (h *handlers) cancelDeletion(c *fiber.Ctx) error {
	return accepted(c)(h.svc.CancelDeletion(c.UserContext(), c.Params("id")))
}

// sweep answers GET /api/sweep with the service's controlplane.SweepReport, or not_found if the
// service cannot sweep (it does not implement controlplane.Sweeper).
func (h *handlers) sweep(c *fiber.Ctx) error {
	sw, ok := h.svc.(controlplane.Sweeper)
	if !ok {
		return controlplane.Errorf(controlplane.ENotFound, "this control plane cannot sweep")
	}
	report, err := sw.Sweep(c.UserContext())
	if err != nil {
		return err
	}
	return c.Status(http.StatusOK).JSON(report)
}

// CancelDeletion calls POST /api/tenants/{idOrKey}/cancel-delete: within the grace period, the
// deletion-pending tenant goes back to the state it had (live or suspended).
func (c *Client) CancelDeletion(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	return c.tenant(ctx, http.MethodPost, tenantPath(idOrKey)+"/cancel-delete")
}

// Sweep calls GET /api/sweep: the resources managed by Atende that belong to no tenant of the
// registry or to a deleted one. Nothing is deleted.
func (c *Client) Sweep(ctx context.Context) (*controlplane.SweepReport, error) {
	var out controlplane.SweepReport
	if err := c.do(ctx, http.MethodGet, "/api/sweep", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
