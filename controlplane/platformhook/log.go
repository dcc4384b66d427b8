package platformhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"slices"

	"atende/controlplane"
)

// DefaultLogPage is how many delivery log entries WebhookLog returns when no limit is given.
const DefaultLogPage = 100

// Log reads the lifecycle webhooks' state for the API (controlplane.PlatformWebhooks), whether
// or not this control plane delivers: the delivery log stays readable after the URL is unset.
type Log struct {
	// Store keeps the cursors and the delivery log. Required.
	Store controlplane.PlatformWebhookStore
	// URL is the configured platform URL; empty when webhooks are not enabled.
	URL string
}

var _ controlplane.PlatformWebhooks = Log{}

// WebhookLog implements controlplane.PlatformWebhooks: f.Limit 0 means DefaultLogPage; a limit
// below 0 or above controlplane.MaxDeliveriesPage is an invalid *controlplane.Error.
func (l Log) WebhookLog(ctx context.Context, f controlplane.DeliveryFilter) (*controlplane.WebhookLog, error) {
	if f.Limit == 0 {
		f.Limit = DefaultLogPage
	}
	if f.Limit < 1 || f.Limit > controlplane.MaxDeliveriesPage {
		return nil, controlplane.Errorf(controlplane.EInvalid, "limit must be a number from 1 to %d", controlplane.MaxDeliveriesPage)
	}
	dels, err := l.Store.WebhookDeliveries(ctx, f)
	if err != nil {
		return nil, err
	}
	cursors, err := l.Store.WebhookCursors(ctx)
	if err != nil {
		return nil, err
	}
	out := &controlplane.WebhookLog{Enabled: l.URL != "", Deliveries: dels, Pending: []controlplane.WebhookCursor{}}
	if out.Enabled {
		out.URL = redact(l.URL)
	}
	for _, c := range cursors {
		if c.Attempts > 0 && (f.TenantID == "" || c.TenantID == f.TenantID) {
			out.Pending = append(out.Pending, c)
		}
	}
	slices.SortFunc(out.Pending, func(a, b controlplane.WebhookCursor) int { return a.NextAt.Compare(b.NextAt) })
	return out, nil
}

// redact returns raw without its user:password part (safe to log and to show).
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	u.User = nil
	return u.String()
}

// defaultOwner returns "<hostname>-<pid>-<8 random hex digits>": unique per deliverer.
func defaultOwner() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms.
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}
