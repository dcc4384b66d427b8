package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"atende/controlplane"
)

// TenancyRequest is the body of PUT /api/tenants/{idOrKey}/tenancy.
type TenancyRequest struct {
	// Tenancy is "strict" (the default of every tenant) or "compat" (controlplane.TenancyCompat).
	Tenancy string `json:"tenancy" validate:"required,oneof=strict compat"`
}

// setTenancy answers PUT /api/tenants/{idOrKey}/tenancy with 202 and the tenant, or not_found
// when the service cannot change tenancy modes.
func (h *handlers) setTenancy(c *fiber.Ctx) error {
	ts, ok := h.svc.(controlplane.TenancySetter)
	if !ok {
		return controlplane.Errorf(controlplane.ENotFound, "this control plane cannot change tenancy modes")
	}
	var req TenancyRequest
	if err := h.bind(c, &req); err != nil {
		return err
	}
	return accepted(c)(ts.SetTenancy(c.UserContext(), c.Params("id"), req.Tenancy))
}

// webhookDeliveries answers GET /api/webhooks/deliveries[?tenant=idOrKey&limit=N] with the
// controlplane.WebhookLog: the lifecycle webhook attempts, newest first (limit 1 to
// controlplane.MaxDeliveriesPage, default 100), and the tenants waiting for a retry. An unknown
// tenant is not_found, a bad limit invalid.
func (h *handlers) webhookDeliveries(c *fiber.Ctx) error {
	if h.webhooks == nil {
		return controlplane.Errorf(controlplane.ENotFound, "this control plane keeps no lifecycle webhook log")
	}
	var f controlplane.DeliveryFilter
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > controlplane.MaxDeliveriesPage {
			return controlplane.Errorf(controlplane.EInvalid, "limit must be a number from 1 to %d", controlplane.MaxDeliveriesPage)
		}
		f.Limit = n
	}
	if key := c.Query("tenant"); key != "" {
		t, err := h.svc.Tenant(c.UserContext(), key)
		if err != nil {
			return err
		}
		f.TenantID = t.ID
	}
	log, err := h.webhooks.WebhookLog(c.UserContext(), f)
	if err != nil {
		return err
	}
	return c.JSON(log)
}

// SetTenancy calls PUT /api/tenants/{idOrKey}/tenancy with mode ("strict" or "compat"). The
// answer carries the new Tenancy and Generation; the cell runs with the mode once
// Cell.Generation equals Generation.
func (c *Client) SetTenancy(ctx context.Context, idOrKey, mode string) (*controlplane.Tenant, error) {
	var out controlplane.Tenant
	if err := c.do(ctx, http.MethodPut, tenantPath(idOrKey)+"/tenancy", TenancyRequest{Tenancy: mode}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WebhookDeliveries calls GET /api/webhooks/deliveries: the lifecycle webhook attempts, newest
// first, of the tenant idOrKey (all tenants when empty), at most limit (0: the API's default).
func (c *Client) WebhookDeliveries(ctx context.Context, idOrKey string, limit int) (*controlplane.WebhookLog, error) {
	q := url.Values{}
	if idOrKey != "" {
		q.Set("tenant", idOrKey)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out controlplane.WebhookLog
	if err := c.do(ctx, http.MethodGet, "/api/webhooks/deliveries?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
