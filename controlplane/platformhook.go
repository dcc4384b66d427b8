package controlplane

import (
	"context"
	"time"
)

// Lifecycle webhooks (issue 5): every tenant lifecycle event (Event) is offered to one platform
// URL as a signed HTTP POST, in order per tenant, at least once. The events themselves are the
// outbox (they are kept in the registry for good); what delivery needs on top is a cursor per
// tenant and a log of attempts, kept by a PlatformWebhookStore. The deliverer lives in the
// platformhook package.

// Outcomes of a lifecycle webhook delivery attempt (LifecycleDelivery.Outcome).
const (
	// DeliveryDelivered: the platform URL answered 2xx.
	DeliveryDelivered = "delivered"
	// DeliveryRetrying: the attempt failed and another one is due at NextAttemptAt.
	DeliveryRetrying = "retrying"
	// DeliveryFailed: the last allowed attempt failed; the tenant's next events go on.
	DeliveryFailed = "failed"
)

// LifecycleDelivery is one attempt to deliver a tenant lifecycle event to the platform URL, as
// listed by GET /api/webhooks/deliveries.
type LifecycleDelivery struct {
	// ID is "<eventId>#<attempt>": an attempt repeated after a crash replaces its record.
	ID string `json:"id"`
	// EventID is the event's stored id, "<tenantId>:<seq>" (the body's and the header's id).
	EventID string `json:"eventId"`
	// Type is the event's webhook type, e.g. "tenant.live" (platformhook.TypeOf).
	Type string `json:"type"`
	// TenantID and TenantKey name the tenant; Seq is the event's sequence number.
	TenantID  string `json:"tenantId"`
	TenantKey string `json:"tenantKey"`
	Seq       int64  `json:"seq"`
	// URL is the platform URL without any user:password part.
	URL string `json:"url"`
	// Attempt counts the attempts at this event, from 1.
	Attempt int `json:"attempt"`
	// At is when the attempt started (UTC).
	At time.Time `json:"at"`
	// StatusCode is the HTTP status answered, 0 when none came (see Error).
	StatusCode int `json:"statusCode,omitempty"`
	// Error says why no 2xx came: a timeout, a refused connection, a redirect (never followed).
	Error string `json:"error,omitempty"`
	// DurationMS is how long the attempt took, in milliseconds.
	DurationMS int64 `json:"durationMs"`
	// Outcome is DeliveryDelivered, DeliveryRetrying or DeliveryFailed.
	Outcome string `json:"outcome"`
	// NextAttemptAt is when the next attempt is due, set only when Outcome is DeliveryRetrying.
	NextAttemptAt *time.Time `json:"nextAttemptAt,omitempty"`
}

// WebhookCursor is where the delivery of one tenant's lifecycle events stands.
type WebhookCursor struct {
	// TenantID is the tenant.
	TenantID string `json:"tenantId"`
	// Seq is the sequence number of the tenant's last event that is finished (delivered, or
	// failed after the last allowed attempt); its later events are still to deliver, in order.
	Seq int64 `json:"seq"`
	// Checked is the tenant Version up to which events were looked for: a tenant whose Version is
	// not above max(Seq, Checked) has nothing new (saves without an event also raise Version).
	Checked int64 `json:"checked"`
	// PendingSeq is the event the failed Attempts were made at (the one after Seq), 0 if none.
	PendingSeq int64 `json:"pendingSeq,omitempty"`
	// Attempts counts the failed attempts at PendingSeq.
	Attempts int `json:"attempts,omitempty"`
	// NextAt is when the next attempt at PendingSeq is due (zero: at once).
	NextAt time.Time `json:"nextAt,omitzero"`
}

// DeliveryFilter selects entries of the lifecycle webhook delivery log.
type DeliveryFilter struct {
	// TenantID, when set, selects the attempts about that tenant's events only.
	TenantID string
	// Limit is the most entries returned, newest first (1 to MaxDeliveriesPage).
	Limit int
}

// MaxDeliveriesPage is the most delivery log entries one request returns.
const MaxDeliveriesPage = 500

// PlatformWebhookStore keeps the lifecycle webhook cursors and delivery log in the registry.
// Only the holder of the delivery lease (platformhook) writes them.
type PlatformWebhookStore interface {
	// WebhookCursors returns every tenant's cursor by tenant id (tenants never looked at have none).
	WebhookCursors(ctx context.Context) (map[string]WebhookCursor, error)
	// SaveWebhookCursor stores c, replacing the tenant's previous cursor.
	SaveWebhookCursor(ctx context.Context, c WebhookCursor) error
	// RecordWebhookDelivery stores d under d.ID, replacing a record of the same attempt.
	RecordWebhookDelivery(ctx context.Context, d LifecycleDelivery) error
	// WebhookDeliveries returns the log entries matching f, newest first.
	WebhookDeliveries(ctx context.Context, f DeliveryFilter) ([]LifecycleDelivery, error)
	// PruneWebhookDeliveries deletes the log entries of attempts made before before.
	PruneWebhookDeliveries(ctx context.Context, before time.Time) error
}

// WebhookLog is the lifecycle webhooks' state as the API shows it (GET /api/webhooks/deliveries).
type WebhookLog struct {
	// Enabled reports whether this control plane delivers (ATENDE_PLATFORM_WEBHOOK_URL is set).
	Enabled bool `json:"enabled"`
	// URL is the platform URL without any user:password part; empty when not enabled.
	URL string `json:"url"`
	// Deliveries are the attempts, newest first.
	Deliveries []LifecycleDelivery `json:"deliveries"`
	// Pending are the cursors of tenants whose next event has failed attempts and waits for a
	// retry, oldest first.
	Pending []WebhookCursor `json:"pending"`
}

// PlatformWebhooks reads the lifecycle webhooks' state for the API.
type PlatformWebhooks interface {
	// WebhookLog returns the delivery log entries matching f and the pending retries (of
	// f.TenantID only, when set). Errors: invalid for a Limit outside 1..MaxDeliveriesPage.
	WebhookLog(ctx context.Context, f DeliveryFilter) (*WebhookLog, error)
}
