package service

import (
	"context"
	"encoding/json"
	"time"

	"atende/cell/webhook"
)

// WireWebhooks connects d to the service: chat events the service emits are published to d (the
// service already filters by the tenant's subscribed types and never emits private notes), and
// the tenant-admins' delivery log (GET /api/webhooks/deliveries) reads d. It lives here, not in
// package webhook, so that the webhook package depends on nothing of the cell but its types
// (the control plane's platform webhooks reuse its signing without pulling in the cell).
func WireWebhooks(svc *Service, d *webhook.Dispatcher) {
	svc.SetEventSink(webhookSink{d: d})
	svc.SetDeliveryLog(func(ctx context.Context, limit int) (any, error) {
		ds, err := d.Deliveries(ctx, limit, 0)
		if err != nil {
			return nil, err
		}
		pending, err := d.Pending(ctx)
		if err != nil {
			return nil, err
		}
		if ds == nil {
			ds = []webhook.Delivery{}
		}
		return map[string]any{"deliveries": ds, "pending": pending}, nil
	})
}

// WebhookEndpoints returns a webhook.EndpointsFunc reading the tenant's webhook from its settings
// (none while the URL is empty). Empty events in the settings mean every event type.
func WebhookEndpoints(svc *Service) webhook.EndpointsFunc {
	return func(ctx context.Context) ([]webhook.Endpoint, error) {
		w := svc.CurrentSettings(ctx).Webhook
		if w.URL == "" {
			return nil, nil
		}
		events := make([]webhook.EventType, 0, len(w.Events))
		for _, e := range w.Events {
			events = append(events, webhook.EventType(e))
		}
		if len(events) == 0 {
			events = webhook.EventTypes()
		}
		return []webhook.Endpoint{{URL: w.URL, Secret: w.Secret, Events: events}}, nil
	}
}

// webhookSink adapts a webhook.Dispatcher to EventSink.
type webhookSink struct{ d *webhook.Dispatcher }

// Publish marshals payload and stores the event in the outbox.
func (s webhookSink) Publish(ctx context.Context, id, typ string, at time.Time, payload any) error {
	data, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	return s.d.Publish(ctx, webhook.Event{ID: id, Type: webhook.EventType(typ), TenantID: s.d.TenantID(), OccurredAt: at, Payload: data})
}
