package cell

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Settings are a tenant's chat settings, edited by tenant-admins (GET|PUT /api/settings) and
// stored as one document. The zero value of each field means its default (see Normalize).
type Settings struct {
	TenantID string `json:"-" bson:"tenantId"`
	// Key is always SettingsKey (DESIGN §5 index {tenantId, key} unique).
	Key string `json:"-" bson:"key"`
	// Routing is RoutingManual (default) or RoutingAuto; a department may override it.
	Routing string `json:"routing" bson:"routing"`
	// DefaultCapacity is an agent's maximum number of concurrent active chats when the agent has
	// none of its own (default 5, at most MaxCapacity).
	DefaultCapacity int `json:"defaultCapacity" bson:"defaultCapacity"`
	// ReopenWindowMinutes: a visitor writing within this many minutes after their chat closed
	// reopens it; later, a new chat starts (default 30; 0 after Normalize never happens, use -1
	// in the request to disable reopening).
	ReopenWindowMinutes int `json:"reopenWindowMinutes" bson:"reopenWindowMinutes"`
	// AutoResolveMinutes resolves an active chat without messages for this long (default 60;
	// -1 disables).
	AutoResolveMinutes int `json:"autoResolveMinutes" bson:"autoResolveMinutes"`
	// AbandonMinutes abandons a queued chat nobody accepted for this long (default 30; -1
	// disables).
	AbandonMinutes int `json:"abandonMinutes" bson:"abandonMinutes"`
	// RequireOnlineAgent refuses new chats (503 unavailable: the widget shows the offline form)
	// while no agent is online. Off by default: chats then wait in the queue, and the widget still
	// offers the offline form (GET /api/availability says no agent is online).
	RequireOnlineAgent bool `json:"requireOnlineAgent" bson:"requireOnlineAgent"`
	// BusinessHours, when enabled, limits when chats may start; outside them the widget shows the
	// offline form.
	BusinessHours BusinessHours `json:"businessHours" bson:"businessHours"`
	// SLA thresholds, counted as hit or miss in reports.
	SLA SLA `json:"sla" bson:"sla"`
	// Webhook is where chat events are delivered (see package webhook); empty URL disables.
	Webhook WebhookSettings `json:"webhook" bson:"webhook"`
	// Branding is shown by the widget and console (also in GET /api/settings/public).
	Branding Branding `json:"branding" bson:"branding"`
	// UpdatedAt is the time of the last change.
	UpdatedAt time.Time `json:"updatedAt" bson:"updatedAt"`
}

// SettingsKey is the key of the settings document.
const SettingsKey = "chat"

// MaxCapacity bounds an agent's capacity.
const MaxCapacity = 50

// MaxLabels bounds the labels of one chat.
const MaxLabels = 20

// LabelPattern is what a label looks like: lowercase letters, digits, '-' and '_', 1–32 long.
var LabelPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// BusinessHours is a weekly schedule in a time zone. Days maps a weekday ("mon" … "sun") to
// the open intervals of that day as "HH:MM-HH:MM" in the zone's local time; a missing day is
// closed. An interval may not cross midnight (split it in two days).
type BusinessHours struct {
	Enabled  bool                `json:"enabled" bson:"enabled"`
	TimeZone string              `json:"timeZone" bson:"timeZone"`
	Days     map[string][]string `json:"days" bson:"days"`
}

// SLA holds a tenant's service-level targets in seconds (0 disables a target).
type SLA struct {
	// FirstResponseSeconds: the first agent message must come within this many seconds of the
	// chat's creation.
	FirstResponseSeconds int `json:"firstResponseSeconds" bson:"firstResponseSeconds"`
	// ResolutionSeconds: the chat must be resolved within this many seconds of its creation.
	ResolutionSeconds int `json:"resolutionSeconds" bson:"resolutionSeconds"`
}

// WebhookSettings configure the tenant's webhook: the receiver URL (https, or http for
// loopback in development), the HMAC secret (write-only: GET returns it masked) and the event
// types to send (empty: all).
type WebhookSettings struct {
	URL    string   `json:"url" bson:"url"`
	Secret string   `json:"secret,omitempty" bson:"secret"`
	Events []string `json:"events" bson:"events"`
}

// Branding is the tenant's look in the widget.
type Branding struct {
	Title        string `json:"title" bson:"title"`
	PrimaryColor string `json:"primaryColor" bson:"primaryColor"`
	WelcomeText  string `json:"welcomeText" bson:"welcomeText"`
}

// WebhookEventTypes are the events a tenant may subscribe to.
var WebhookEventTypes = []string{"chat.created", "chat.accepted", "chat.transferred", "chat.resolved", "message.created"}

var weekdays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

var colorPattern = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

// Normalize fills defaults into zero fields and validates s, returning an invalid *Error naming
// the first bad field.
func (s *Settings) Normalize() error {
	s.Key = SettingsKey
	switch s.Routing {
	case "":
		s.Routing = RoutingManual
	case RoutingManual, RoutingAuto:
	default:
		return Errorf(EInvalid, "routing must be manual or auto")
	}
	if s.DefaultCapacity == 0 {
		s.DefaultCapacity = 5
	}
	if s.DefaultCapacity < 1 || s.DefaultCapacity > MaxCapacity {
		return Errorf(EInvalid, "defaultCapacity must be between 1 and %d", MaxCapacity)
	}
	for _, m := range []struct {
		name string
		v    *int
		def  int
	}{{"reopenWindowMinutes", &s.ReopenWindowMinutes, 30}, {"autoResolveMinutes", &s.AutoResolveMinutes, 60}, {"abandonMinutes", &s.AbandonMinutes, 30}} {
		if *m.v == 0 {
			*m.v = m.def
		}
		if *m.v < -1 || *m.v > 7*24*60 {
			return Errorf(EInvalid, "%s must be -1 (off) or between 1 and %d", m.name, 7*24*60)
		}
	}
	if err := s.BusinessHours.validate(); err != nil {
		return err
	}
	if s.SLA.FirstResponseSeconds < 0 || s.SLA.ResolutionSeconds < 0 {
		return Errorf(EInvalid, "sla thresholds must be ≥ 0 seconds")
	}
	if s.Webhook.URL != "" {
		u, err := url.Parse(s.Webhook.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			return Errorf(EInvalid, "webhook.url must be an absolute http(s) URL without credentials")
		}
		if len(s.Webhook.Secret) < 16 || len(s.Webhook.Secret) > 256 {
			return Errorf(EInvalid, "webhook.secret must be 16 to 256 characters")
		}
	}
	for _, e := range s.Webhook.Events {
		if !contains(WebhookEventTypes, e) {
			return Errorf(EInvalid, "webhook.events: unknown event %q (known: %s)", e, strings.Join(WebhookEventTypes, ", "))
		}
	}
	if s.Webhook.Events == nil {
		s.Webhook.Events = []string{}
	}
	if len([]rune(s.Branding.Title)) > 80 || len([]rune(s.Branding.WelcomeText)) > 280 {
		return Errorf(EInvalid, "branding.title is at most 80 and branding.welcomeText at most 280 characters")
	}
	if s.Branding.PrimaryColor == "" {
		s.Branding.PrimaryColor = "#2563eb"
	}
	if s.Branding.WelcomeText == "" {
		s.Branding.WelcomeText = "Hi! How can we help you today?"
	}
	if !colorPattern.MatchString(s.Branding.PrimaryColor) {
		return Errorf(EInvalid, "branding.primaryColor must look like #1a2b3c")
	}
	return nil
}

func (b *BusinessHours) validate() error {
	if b.Days == nil {
		b.Days = map[string][]string{}
	}
	if b.TimeZone == "" {
		b.TimeZone = "UTC"
	}
	if _, err := time.LoadLocation(b.TimeZone); err != nil {
		return Errorf(EInvalid, "businessHours.timeZone %q is not an IANA time zone", b.TimeZone)
	}
	for day, spans := range b.Days {
		if !contains(weekdays, day) {
			return Errorf(EInvalid, "businessHours.days: %q is not one of %s", day, strings.Join(weekdays, ", "))
		}
		if len(spans) > 8 {
			return Errorf(EInvalid, "businessHours.days.%s: at most 8 intervals", day)
		}
		for _, span := range spans {
			if _, _, err := parseSpan(span); err != nil {
				return Errorf(EInvalid, "businessHours.days.%s: %v", day, err)
			}
		}
	}
	return nil
}

// parseSpan parses "HH:MM-HH:MM" into minutes after midnight, start < end.
func parseSpan(span string) (from, to int, err error) {
	var h1, m1, h2, m2 int
	if n, _ := fmt.Sscanf(span, "%d:%d-%d:%d", &h1, &m1, &h2, &m2); n != 4 || len(span) != 11 {
		return 0, 0, fmt.Errorf("%q is not HH:MM-HH:MM", span)
	}
	from, to = h1*60+m1, h2*60+m2
	if h1 > 23 || m1 > 59 || h2 > 24 || m2 > 59 || to > 24*60 || from >= to {
		return 0, 0, fmt.Errorf("%q is not an interval within one day", span)
	}
	return from, to, nil
}

// OpenAt reports whether t falls within the business hours (always true when not Enabled).
// The weekday and clock are taken in the schedule's time zone, so daylight-saving changes follow
// the zone's rules (IANA tz database via time.LoadLocation).
func (b BusinessHours) OpenAt(t time.Time) bool {
	if !b.Enabled {
		return true
	}
	loc, err := time.LoadLocation(b.TimeZone)
	if err != nil {
		return false
	}
	local := t.In(loc)
	minute := local.Hour()*60 + local.Minute()
	for _, span := range b.Days[weekdays[local.Weekday()]] {
		from, to, err := parseSpan(span)
		if err == nil && minute >= from && minute < to {
			return true
		}
	}
	return false
}

// Wants reports whether the webhook is configured and subscribed to event type typ.
func (w WebhookSettings) Wants(typ string) bool {
	return w.URL != "" && (len(w.Events) == 0 || contains(w.Events, typ))
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
