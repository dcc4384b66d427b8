package mongodb

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"atende/controlplane"
)

// Lifecycle webhook state (controlplane.PlatformWebhookStore) in two collections of the
// registry, written only by the holder of the delivery lease, every write by _id (the only
// filter FerretDB v1 pushes down) and idempotent, so no transaction and no compare-and-set is
// needed:
//
//   - webhook_cursors: "cursor:<tenantId>" {tenantId, seq, checked, pendingSeq, attempts, nextAt},
//     one per tenant, replaced (upsert) after every attempt.
//   - webhook_deliveries: "<eventId>#<attempt>" {…controlplane.LifecycleDelivery}, one per attempt,
//     replaced (upsert) when an attempt is made again after a crash; pruned by age.
const (
	webhookCursorsCollection    = "webhook_cursors"
	webhookDeliveriesCollection = "webhook_deliveries"
)

var _ controlplane.PlatformWebhookStore = (*Store)(nil)

type webhookCursorDoc struct {
	ID         string    `bson:"_id"`
	TenantID   string    `bson:"tenantId"`
	Seq        int64     `bson:"seq"`
	Checked    int64     `bson:"checked"`
	PendingSeq int64     `bson:"pendingSeq"`
	Attempts   int       `bson:"attempts"`
	NextAt     time.Time `bson:"nextAt"`
}

type webhookDeliveryDoc struct {
	ID            string     `bson:"_id"`
	EventID       string     `bson:"eventId"`
	Type          string     `bson:"type"`
	TenantID      string     `bson:"tenantId"`
	TenantKey     string     `bson:"tenantKey"`
	Seq           int64      `bson:"seq"`
	URL           string     `bson:"url"`
	Attempt       int        `bson:"attempt"`
	At            time.Time  `bson:"at"`
	StatusCode    int        `bson:"statusCode,omitempty"`
	Error         string     `bson:"error,omitempty"`
	DurationMS    int64      `bson:"durationMs"`
	Outcome       string     `bson:"outcome"`
	NextAttemptAt *time.Time `bson:"nextAttemptAt,omitempty"`
}

func webhookCursorID(tenantID string) string { return "cursor:" + tenantID }

// WebhookCursors implements controlplane.PlatformWebhookStore.
func (s *Store) WebhookCursors(ctx context.Context) (map[string]controlplane.WebhookCursor, error) {
	cur, err := s.tenants.Database().Collection(webhookCursorsCollection).Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("mongodb: find webhook cursors: %w", err)
	}
	var docs []webhookCursorDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: read webhook cursors: %w", err)
	}
	out := make(map[string]controlplane.WebhookCursor, len(docs))
	for _, d := range docs {
		c := controlplane.WebhookCursor{TenantID: d.TenantID, Seq: d.Seq, Checked: d.Checked, PendingSeq: d.PendingSeq, Attempts: d.Attempts}
		if !d.NextAt.IsZero() && d.NextAt.Unix() > 0 {
			c.NextAt = d.NextAt.UTC()
		}
		out[d.TenantID] = c
	}
	return out, nil
}

// SaveWebhookCursor implements controlplane.PlatformWebhookStore.
func (s *Store) SaveWebhookCursor(ctx context.Context, c controlplane.WebhookCursor) error {
	if c.TenantID == "" {
		return controlplane.Errorf(controlplane.EInvalid, "a webhook cursor needs a tenant id")
	}
	d := webhookCursorDoc{ID: webhookCursorID(c.TenantID), TenantID: c.TenantID, Seq: c.Seq, Checked: c.Checked,
		PendingSeq: c.PendingSeq, Attempts: c.Attempts, NextAt: c.NextAt.UTC()}
	_, err := s.tenants.Database().Collection(webhookCursorsCollection).ReplaceOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, d, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("mongodb: save webhook cursor: %w", err)
	}
	return nil
}

// RecordWebhookDelivery implements controlplane.PlatformWebhookStore.
func (s *Store) RecordWebhookDelivery(ctx context.Context, d controlplane.LifecycleDelivery) error {
	if d.ID == "" {
		return controlplane.Errorf(controlplane.EInvalid, "a webhook delivery needs an id")
	}
	doc := webhookDeliveryDoc{ID: d.ID, EventID: d.EventID, Type: d.Type, TenantID: d.TenantID, TenantKey: d.TenantKey,
		Seq: d.Seq, URL: d.URL, Attempt: d.Attempt, At: d.At.UTC(), StatusCode: d.StatusCode, Error: d.Error,
		DurationMS: d.DurationMS, Outcome: d.Outcome, NextAttemptAt: utcPtr(d.NextAttemptAt)}
	_, err := s.tenants.Database().Collection(webhookDeliveriesCollection).ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}, doc, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("mongodb: record webhook delivery: %w", err)
	}
	return nil
}

// WebhookDeliveries implements controlplane.PlatformWebhookStore: sorted by attempt time, newest
// first (then by id), at most f.Limit (default and cap controlplane.MaxDeliveriesPage).
func (s *Store) WebhookDeliveries(ctx context.Context, f controlplane.DeliveryFilter) ([]controlplane.LifecycleDelivery, error) {
	limit := f.Limit
	if limit <= 0 || limit > controlplane.MaxDeliveriesPage {
		limit = controlplane.MaxDeliveriesPage
	}
	filter := bson.D{}
	if f.TenantID != "" {
		filter = bson.D{{Key: "tenantId", Value: f.TenantID}}
	}
	opts := options.Find().SetSort(bson.D{{Key: "at", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(int64(limit))
	cur, err := s.tenants.Database().Collection(webhookDeliveriesCollection).Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("mongodb: find webhook deliveries: %w", err)
	}
	var docs []webhookDeliveryDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongodb: read webhook deliveries: %w", err)
	}
	out := make([]controlplane.LifecycleDelivery, 0, len(docs))
	for _, d := range docs {
		out = append(out, controlplane.LifecycleDelivery{ID: d.ID, EventID: d.EventID, Type: d.Type, TenantID: d.TenantID,
			TenantKey: d.TenantKey, Seq: d.Seq, URL: d.URL, Attempt: d.Attempt, At: d.At.UTC(), StatusCode: d.StatusCode,
			Error: d.Error, DurationMS: d.DurationMS, Outcome: d.Outcome, NextAttemptAt: utcPtr(d.NextAttemptAt)})
	}
	return out, nil
}

// PruneWebhookDeliveries implements controlplane.PlatformWebhookStore.
func (s *Store) PruneWebhookDeliveries(ctx context.Context, before time.Time) error {
	_, err := s.tenants.Database().Collection(webhookDeliveriesCollection).DeleteMany(ctx,
		bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: before.UTC()}}}})
	if err != nil {
		return fmt.Errorf("mongodb: prune webhook deliveries: %w", err)
	}
	return nil
}
