package webhook

import (
	"context"
	"encoding/json"
	"time"

	"atende/cell/service"
)

// Wire connects d to the cell's service: chat events the service emits are published to d (the
// service already filters by the tenant's subscribed types and never emits private notes), and
// the tenant-admins' delivery log (GET /api/webhooks/deliveries) reads d.
func Wire(svc *service.Service, d *Dispatcher) {
	svc.SetEventSink(sink{d: d})
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
			ds = []Delivery{}
		}
		return map[string]any{"deliveries": ds, "pending": pending}, nil
	})
}

// SettingsEndpoints returns an EndpointsFunc reading the tenant's webhook from its settings
// (none while the URL is empty). Empty events in the settings mean every event type.
func SettingsEndpoints(svc *service.Service) EndpointsFunc {
	return func(ctx context.Context) ([]Endpoint, error) {
		w := svc.CurrentSettings(ctx).Webhook
		if w.URL == "" {
			return nil, nil
		}
		events := make([]EventType, 0, len(w.Events))
		for _, e := range w.Events {
			events = append(events, EventType(e))
		}
		if len(events) == 0 {
			events = EventTypes()
		}
		return []Endpoint{{URL: w.URL, Secret: w.Secret, Events: events}}, nil
	}
}

// sink adapts a Dispatcher to service.EventSink.
type sink struct{ d *Dispatcher }

// Publish marshals payload and stores the event in the outbox.
func (s sink) Publish(ctx context.Context, id, typ string, at time.Time, payload any) error {
	data, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	return s.d.Publish(ctx, Event{ID: id, Type: EventType(typ), TenantID: s.d.tenantID, OccurredAt: at, Payload: data})
}
